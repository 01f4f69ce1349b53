"""Hash3D: reuse diffusion U-Net features across nearby camera poses and timesteps during score distillation.

- :class:`GridHashTable` and :class:`GridCells`: the grid hash table (with the adaptive grid).
- :class:`UNetCut`: the partial U-Net forward around a cut point of a diffusers ``UNet2DConditionModel``.
- :class:`Hash3D`: the accelerator (stage ``denoiser``) that puts them together, declared once in
  :class:`Hash3DConfig` (:mod:`accel3d.caching.config`, torch-free).

Names load on first use, so that reading the config (``accel3d list``) does not import torch.

Example::

    from accel3d.caching import Hash3D
    hash3d = Hash3D(retrieve_prob=0.9)
"""

from accel3d.core.lazy import lazy_exports

_EXPORTS = {
    "Hash3DConfig": "config",
    "Hash3D": "accelerator",
    "PAPER_GRIDS": "hash_table",
    "GridCells": "hash_table",
    "GridHashTable": "hash_table",
    "Retrieval": "hash_table",
    "CutPoint": "unet_cut",
    "UNetCut": "unet_cut",
    "cut_points": "unet_cut",
    "resolve_cut_point": "unet_cut",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
