"""Per-call information for denoisers: the camera pose of the views being denoised.

A score-distillation loop renders a view from some camera and asks a 2D denoiser
about it. Pose-aware accelerators (Hash3D) need that camera, which a U-Net call
does not carry. The loop states it with a context manager, the way diffusers'
``cache_context`` scopes a call::

    with camera_pose(azimuth=az, elevation=el, radius=r):
        eps = unet(latents, t, encoder_hidden_states=text).sample

Pipelines set it whether or not an accelerator is attached; without one it costs
nothing. Values are degrees, degrees and scene units, one per batch element (a
scalar applies to the whole batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CameraPose:
    """Camera of each batch element: azimuth (deg), elevation (deg), radius; each (B,) float64.

    Example::

        CameraPose.of(azimuth=[0, 90], elevation=15, radius=1.8).as_tensor()   # (2, 3)
    """

    azimuth: torch.Tensor
    elevation: torch.Tensor
    radius: torch.Tensor

    @classmethod
    def of(cls, azimuth: object, elevation: object, radius: object) -> CameraPose:
        """Build from scalars, sequences or tensors; scalars broadcast to the others' length.

        Raises ``ValueError`` for NaN/inf, an elevation outside [-90, 90] or a radius <= 0."""
        parts = {}
        for name, value in (("azimuth", azimuth), ("elevation", elevation), ("radius", radius)):
            if isinstance(value, bool | str | bytes) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
                raise ValueError(f"camera {name}: expected a number or a 1-D sequence of numbers, got {value!r}")
            try:
                tensor = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
            except (TypeError, ValueError, RuntimeError) as err:
                raise ValueError(f"camera {name}: expected a number or a 1-D sequence of numbers, got {value!r}") from err
            if tensor.ndim > 1:
                shape = tuple(tensor.shape)
                raise ValueError(f"camera {name}: expected a scalar or a 1-D tensor (one value per element), got shape {shape}")
            if tensor.numel() == 0:
                raise ValueError(f"camera {name}: expected at least one value, got an empty sequence")
            parts[name] = tensor.reshape(-1)
        sizes = {len(t) for t in parts.values()} - {1}
        if len(sizes) > 1:
            raise ValueError(f"camera: azimuth, elevation and radius have different lengths {[len(t) for t in parts.values()]}")
        for name, tensor in parts.items():
            if not torch.isfinite(tensor).all():
                raise ValueError(f"camera {name}: contains NaN or inf: {tensor.tolist()[:4]}")
        if (parts["elevation"].abs() > 90).any():
            raise ValueError(f"camera elevation: expected degrees in [-90, 90], got {parts['elevation'].tolist()[:4]}")
        if (parts["radius"] <= 0).any():
            raise ValueError(f"camera radius: expected a distance > 0, got {parts['radius'].tolist()[:4]}")
        size = sizes.pop() if sizes else 1
        return cls(**{k: t.expand(size).clone() for k, t in parts.items()})

    def __len__(self) -> int:
        return len(self.azimuth)

    def as_tensor(self) -> torch.Tensor:
        """(B, 3) float64: azimuth, elevation, radius."""
        return torch.stack([self.azimuth, self.elevation, self.radius], dim=1)


_CAMERA: ContextVar[CameraPose | None] = ContextVar("accel3d_camera_pose", default=None)


@contextlib.contextmanager
def camera_pose(azimuth: object, elevation: object, radius: object) -> Iterator[CameraPose]:
    """Declare the camera of the denoiser calls made inside the block."""
    token = _CAMERA.set(CameraPose.of(azimuth, elevation, radius))
    try:
        yield _CAMERA.get()
    finally:
        _CAMERA.reset(token)


def current_camera_pose() -> CameraPose | None:
    """The pose declared by the innermost enclosing :func:`camera_pose`, if any."""
    return _CAMERA.get()
