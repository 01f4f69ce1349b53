"""Hash3D: reuse diffusion U-Net features across nearby camera poses and timesteps during score distillation.

- :class:`GridHashTable` and :class:`GridCells`: the grid hash table (with the adaptive grid).
- :class:`UNetCut`: the partial U-Net forward around a cut point of a diffusers ``UNet2DConditionModel``.
- :class:`Hash3D`: the accelerator (stage ``denoiser``) that puts them together.
"""

from accel3d.caching.accelerator import Hash3D
from accel3d.caching.hash_table import PAPER_GRIDS, GridCells, GridHashTable, Retrieval
from accel3d.caching.unet_cut import CutPoint, UNetCut, cut_points, resolve_cut_point

__all__ = [
    "PAPER_GRIDS",
    "CutPoint",
    "GridCells",
    "GridHashTable",
    "Hash3D",
    "Retrieval",
    "UNetCut",
    "cut_points",
    "resolve_cut_point",
]
