"""One entry point for vecset VAE weights: accel3d checkpoints and Hunyuan3D-2 ShapeVAE folders.

It sits above both formats (``vecset_vae`` and ``hunyuan`` never import each other
through it), so the model modules have no import cycle.

Example::

    from accel3d.models import load_vae

    vae = load_vae()                                                # the shipped reference VAE
    vae = load_vae("~/models/Hunyuan3D-2/hunyuan3d-vae-v2-0")      # config.yaml + model*.safetensors
"""

from __future__ import annotations

from pathlib import Path

from accel3d.core.io import expand_path, path_origin
from accel3d.models.checkpoints import is_hunyuan_checkpoint
from accel3d.models.hunyuan import load_hunyuan_vae
from accel3d.models.vecset_vae import VecsetVAE


def load_vae(path: str | Path | None = None, map_location: str = "cpu") -> VecsetVAE:
    """The shipped VAE (``None``), an accel3d ``.pt`` checkpoint (or a folder with ``model.pt``),
    or a Hunyuan3D-2 ShapeVAE folder, as a :class:`VecsetVAE` in eval mode.

    ``~`` and ``$VAR`` in ``path`` are expanded; a missing file is named by its expanded path."""
    if path is None or not isinstance(path, str | Path) or not str(path).strip():
        return VecsetVAE.from_pretrained(path, map_location)  # the shipped weights, or the argument error
    original, path = path, expand_path(path, "weights")
    try:
        if is_hunyuan_checkpoint(path):
            return load_hunyuan_vae(path).to(map_location)
        return VecsetVAE.from_pretrained(path, map_location)
    except FileNotFoundError as exc:
        if not path_origin(original):
            raise
        raise FileNotFoundError(f"{exc}{path_origin(original)}") from None
