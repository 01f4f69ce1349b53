"""Model families, one folder each with its model code, checkpoints, stages and pipeline:

- :mod:`accel3d.models.vecset`: the vecset shape VAE (Hunyuan3D-2 ShapeVAE architecture), its weights
  entry point :func:`load_vae` and the ``vecset_shape`` pipeline;
- :mod:`accel3d.models.fields`: the ``field`` pipeline, any ``f(points) -> values`` decoded to a mesh;
- :mod:`accel3d.models.image_to_3d`: the two-stage flow models in the shape of SAM 3D Objects and the
  ``image_to_3d`` pipeline;
- :mod:`accel3d.models.sds`: score distillation on diffusion U-Nets (random-init text U-Nets, the trained
  novel-view U-Net) and the ``sds`` pipeline.

``weights/`` holds the shipped checkpoints of all of them. Real libraries' models are reached through
:mod:`accel3d.integrations`. Importing this package imports no family (nor torch).
"""

from accel3d.core.lazy import lazy_exports

_EXPORTS = {"load_vae": "vecset.checkpoint"}  # ``from accel3d.models import load_vae``, imported when asked for
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
