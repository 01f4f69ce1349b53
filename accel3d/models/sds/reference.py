"""The reference view of an image-conditioned SDS run: a mesh rendered at a pose, an RGB image file, or a latent.

- a mesh file (``.ply``, ``.obj``, ``.glb``, ``.stl``, ``.off``; default: the bundled bunny) is
  placed upright in the scene (:func:`accel3d.models.sds.mesh_views.scene_mesh`) and rendered
  shaded at ``pose``; its renders at the turntable poses are the run's ground truth;
- an image file (``.png``, ``.jpg``) is read as RGB in ``[-1, 1]`` (transparent pixels become the
  mid-grey background; a 16-bit grey PNG keeps its levels, scaled by 65535); it must already be the
  model's size; there is no ground truth;
- a ``.pt`` file holds a ``(1, C, H, W)`` latent for latent-space (8-channel) U-Nets.

Example::

    ref = load_reference(None, pose=(0.0, 15.0, 1.6), fovy=50.0, size=32, channels=3)
    ref.image.shape          # (1, 3, 32, 32)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from accel3d.core.io import expand_path, load_torch_file, path_origin
from accel3d.core.validate import ArgumentError
from accel3d.models.sds.cameras import Cameras

MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl", ".off")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Reference:
    """The reference view (1, C, H, W), its camera, where it came from, and how to render the truth (meshes only)."""

    image: Tensor
    camera: Cameras
    source: str
    views: object | None = None  # a MeshViews of the reference mesh, for ground-truth renders


def reference_camera(pose: tuple[float, float, float], fovy: float) -> Cameras:
    azimuth, elevation, radius = (float(v) for v in pose)
    return Cameras([azimuth], [elevation], [radius], [float(fovy)])


def load_reference(
    path: str | None, pose: tuple[float, float, float], fovy: float, size: int, channels: int, color: tuple | None = None
) -> Reference:
    """The reference view for a model of ``size`` x ``size`` pixels and ``channels`` channels (see the module docstring)."""
    camera = reference_camera(pose, fovy)
    if path is None:
        from accel3d.geometry.meshes import BUNDLED_MESH

        path, original = str(BUNDLED_MESH), "the bundled bunny"
    else:
        original = path
    file = expand_path(path, "reference")
    if not file.is_file():
        raise FileNotFoundError(f"reference: no file at '{file}'{path_origin(original)}")
    suffix = file.suffix.lower()
    if suffix in MESH_SUFFIXES:
        if channels != 3:
            raise ArgumentError(f"reference: a mesh is rendered as RGB, but this backbone's images have {channels} channels")
        from accel3d.geometry.meshes import load_mesh
        from accel3d.models.sds.mesh_views import MeshViews, albedo_for, scene_mesh

        views = MeshViews(scene_mesh(load_mesh(file)), albedo=tuple(color) if color is not None else albedo_for(0))
        return Reference(views.render(camera, size), camera, f"{original} rendered at {tuple(pose)}", views)
    if suffix in IMAGE_SUFFIXES:
        image = _read_image(file)
        if channels != 3:
            raise ArgumentError(f"reference: an image file is RGB, but this backbone's images have {channels} channels")
        if image.shape[-2:] != (size, size):
            raise ArgumentError(f"reference: '{file}' is {image.shape[-1]}x{image.shape[-2]} pixels; the model takes {size}x{size}")
        return Reference(image, camera, f"{file} at {tuple(pose)}")
    if suffix == ".pt":
        latent = load_torch_file(file, "reference")
        expected = (1, channels, size, size)
        if not isinstance(latent, Tensor) or tuple(latent.shape) != expected:
            got = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
            raise ArgumentError(f"reference: expected a {expected} latent tensor in '{file}', got {got}")
        if not torch.isfinite(latent).all():
            raise ArgumentError(f"reference: '{file}' holds NaN or inf values")
        return Reference(latent.float(), camera, f"{file} (latent) at {tuple(pose)}")
    raise ArgumentError(
        f"reference: expected a mesh ({', '.join(MESH_SUFFIXES)}), an image ({', '.join(IMAGE_SUFFIXES)}) or a .pt latent, got '{file}'"
    )


def _read_image(path: Path) -> Tensor:
    """The image as ``(1, 3, H, W)`` in ``[-1, 1]``, each PIL mode scaled by its own depth (16-bit grey by 65535, ...:
    :func:`accel3d.models.image_to_3d.inputs.read_image`); non-finite or out-of-range pixels are refused naming ``reference``."""
    from accel3d.models.image_to_3d.inputs import read_image

    try:
        rgb, alpha = read_image(path, "reference")
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    rgb = rgb.astype(np.float32)  # float32 arithmetic, as before: an 8-bit image gives the same values bit for bit
    if alpha is not None:  # transparent pixels show the background (mid-grey, 0 in [-1, 1])
        a = alpha.astype(np.float32)[..., None]
        rgb = rgb * a + 0.5 * (1 - a)
    return torch.from_numpy(2.0 * rgb - 1.0).permute(2, 0, 1)[None].contiguous()
