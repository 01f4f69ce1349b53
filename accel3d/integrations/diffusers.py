"""diffusers: the stages of diffusers objects, and a ``UNet2DConditionModel`` from a local folder.

:func:`stages` recognises a ``UNet2DConditionModel`` (and its subclasses), a ``DiffusionPipeline`` and any
object holding one as ``.unet`` (a threestudio-style guidance object), without importing diffusers, and names
the U-Net's stage ``denoiser``, so that ``accel3d.apply(pipe, "hash3d")`` works on each in one call.

A user with weights (Stable Diffusion 2.1-base, a Zero123-style image-conditioned U-Net, ...) points
``pipeline.backbone`` at the U-Net folder or at a pipeline folder holding ``unet/``; nothing is downloaded.
diffusers is imported when a folder is loaded. The random-init stand-ins (``tiny``, ``sd21_base``) are
built by :mod:`accel3d.models.sds.unets`.

Example::

    unet = load_unet("~/models/stable-diffusion-2-1-base")   # reads unet/config.json + its weights
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from accel3d.core.io import expand_path, path_origin

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel


def load_unet(path: str | Path) -> UNet2DConditionModel:
    """A diffusers U-Net from a local folder: the U-Net folder itself, or a pipeline folder with ``unet/``."""
    original, path = path, expand_path(path, "backbone")
    if not path.is_dir():
        raise FileNotFoundError(
            f"backbone: expected 'tiny', 'sd21_base' or a local diffusers U-Net folder, got '{path}'{path_origin(original)} (not a folder)"
        )
    folder = path / "unet" if (path / "unet" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"backbone: '{path}' has no config.json (nor unet/config.json); expected a diffusers U-Net folder")
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder, local_files_only=True).eval().requires_grad_(False)


def is_unet(obj: Any) -> bool:
    """Whether ``obj`` is a diffusers ``UNet2DConditionModel`` (or a subclass), read from its classes' names."""
    return any(c.__name__ == "UNet2DConditionModel" and c.__module__.startswith("diffusers.") for c in type(obj).__mro__)


def stages(obj: Any) -> dict[str, Any] | None:
    """``{"denoiser": unet}`` for a diffusers U-Net, a ``DiffusionPipeline`` or a guidance object with ``.unet``;
    None for anything else.

    Example::

        stages(StableDiffusionPipeline.from_pretrained(path))   # {"denoiser": pipe.unet}
    """
    if is_unet(obj):
        return {"denoiser": obj}
    unet = getattr(obj, "unet", None)  # a foreign object: whether it holds a U-Net is what is asked
    return {"denoiser": unet} if unet is not None and is_unet(unet) else None
