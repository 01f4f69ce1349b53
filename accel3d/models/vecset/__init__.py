"""The vecset shape VAE family: a point cloud -> latent tokens -> a field ``f(points)`` -> a mesh.

- ``layers.py``: the config and building blocks (Hunyuan3D-2 ShapeVAE parameter names);
- ``vae.py``: :class:`VecsetVAE` and its own checkpoint files;
- ``checkpoint.py``: :func:`load_vae`, the one entry point for weights (accel3d checkpoints and
  Hunyuan3D-2 release folders, through :mod:`accel3d.integrations.hunyuan3d`);
- ``pipeline.py``: :class:`VecsetShapePipeline` (``pipeline=vecset_shape``).

The names below are imported when first asked for: importing one module of the family imports no
other (``accel3d.integrations.hunyuan3d`` imports ``vae.py`` and is imported by ``checkpoint.py``).
"""

from accel3d.core.lazy import lazy_exports

_EXPORTS = {
    "VecsetVAE": "vae",
    "VecsetVAEConfig": "layers",
    "load_vae": "checkpoint",
    "VecsetShapePipeline": "pipeline",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
