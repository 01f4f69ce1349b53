"""The one entry point for vecset VAE weights, whatever their format: the shipped reference weights,
accel3d checkpoints (read by :meth:`VecsetVAE.from_pretrained <accel3d.models.vecset.vae.VecsetVAE.from_pretrained>`)
and Hunyuan3D-2 ShapeVAE release folders (read by :mod:`accel3d.integrations.hunyuan3d`).

Example::

    from accel3d.models import load_vae

    vae = load_vae()                                                # the shipped reference VAE
    vae = load_vae("~/models/Hunyuan3D-2/hunyuan3d-vae-v2-0")      # config.yaml + model*.safetensors
"""

from __future__ import annotations

from pathlib import Path

from accel3d.core.io import expand_path, path_origin
from accel3d.integrations.hunyuan3d import is_hunyuan_checkpoint, load_hunyuan_vae
from accel3d.models.vecset.vae import VecsetVAE


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
