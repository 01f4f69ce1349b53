"""How Hash3D lays out a U-Net call: its camera, its elements and their keys, sub-batches of some elements.

With classifier-free guidance the batch is diffusers' ``[uncond; cond]`` layout: rows ``i`` and
``i + N/2`` are one *element*, looked up and stored together. These helpers find the call's camera,
build one ``(azimuth, elevation, radius, timestep)`` key per element, map elements to batch rows and
back, and restrict a call's arguments to the rows of some elements (the hits or the misses).
"""

from __future__ import annotations

from typing import Any

import torch

from accel3d.core.context import CameraPose, current_camera_pose


def call_pose(camera: Any, missing_pose: str) -> CameraPose | None:
    """The camera of a call: ``camera=`` (a pose, ``(az, el, r)`` or a (batch, 3) tensor), else the
    :func:`~accel3d.core.context.camera_pose` around it; None without one, unless ``missing_pose`` is ``error``."""
    pose = camera if isinstance(camera, CameraPose) else None
    if camera is not None and pose is None:
        tensor = torch.as_tensor(camera, dtype=torch.float64)
        if tensor.shape[-1:] != (3,) or tensor.ndim > 2:
            raise ValueError(f"camera: expected (azimuth, elevation, radius) or a (batch, 3) tensor, got shape {tuple(tensor.shape)}")
        tensor = tensor.reshape(-1, 3)
        pose = CameraPose.of(tensor[:, 0], tensor[:, 1], tensor[:, 2])
    pose = pose or current_camera_pose()
    if pose is None and missing_pose == "error":
        raise ValueError(
            "camera: Hash3D needs the camera pose of every U-Net call; wrap the call in "
            "`with accel3d.core.camera_pose(azimuth=..., elevation=..., radius=...)` or pass camera=(az, el, r) "
            "(or build Hash3D(missing_pose='full') to run pose-less calls in full)"
        )
    return pose


def element_rows(sample: torch.Tensor, guidance_pairs: bool) -> tuple[torch.Tensor, int]:
    """Row indices per element: (elements, 2) for CFG pairs, (elements,) otherwise."""
    rows = sample.shape[0]
    if not guidance_pairs:
        return torch.arange(rows), rows
    if rows % 2:
        raise ValueError(
            f"sample: with guidance_pairs=True the batch must be [uncond; cond] halves, got an odd batch of {rows}; "
            "build Hash3D(guidance_pairs=False) for calls without classifier-free guidance"
        )
    half = rows // 2
    return torch.stack([torch.arange(half), torch.arange(half, rows)], dim=1), half


def element_keys(pose: CameraPose, timestep: Any, elements: int, sample: torch.Tensor) -> torch.Tensor:
    """(elements, 4) keys ``(azimuth, elevation, radius, timestep)``: one pose or one per element; the
    timestep a scalar, one per element, or one per row (the CFG halves must then agree)."""
    if len(pose) not in (1, elements):
        raise ValueError(f"camera: expected 1 or {elements} poses (one per element of the batch), got {len(pose)}")
    t = torch.as_tensor(timestep, dtype=torch.float64).detach().cpu().reshape(-1)
    if len(t) not in (1, elements, sample.shape[0]):
        raise ValueError(f"timestep: expected a scalar or one value per batch row, got {len(t)} values for {sample.shape[0]} rows")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError(f"timestep: expected finite values >= 0, got {t.tolist()[:4]}")
    if len(t) == sample.shape[0] and len(t) != elements:
        if not torch.equal(t[:elements], t[elements:]):
            raise ValueError("timestep: the uncond and cond halves of a CFG batch must share their timesteps")
        t = t[:elements]
    cam = pose.as_tensor().expand(elements, 3)
    return torch.cat([cam, t.expand(elements)[:, None]], dim=1)


def rows_of(rows: torch.Tensor, subset: torch.Tensor) -> torch.Tensor:
    """Batch rows of some elements, in CFG layout: [uncond rows; cond rows]."""
    return rows[subset].T.reshape(-1) if rows.ndim == 2 else rows[subset]


def take_rows(arguments: dict, rows: torch.Tensor) -> dict:
    """The forward arguments restricted to batch ``rows`` (tensors with a batch dimension)."""
    batch = arguments["sample"].shape[0]

    def take(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
            return value[rows.to(value.device)]
        if isinstance(value, dict):
            return {k: take(v) for k, v in value.items()}
        return value

    return {k: (v if k == "cross_attention_kwargs" else take(v)) for k, v in arguments.items()}


def per_element(value: torch.Tensor, rows: torch.Tensor, count: int) -> torch.Tensor:
    """(rows of ``count`` elements, ...) in CFG layout -> (elements, groups, ...): uncond and cond halves together."""
    groups = rows.shape[1] if rows.ndim == 2 else 1
    return value.reshape(groups, count, *value.shape[1:]).transpose(0, 1).contiguous()


def per_row(values: torch.Tensor) -> torch.Tensor:
    """(elements, groups, ...) -> back to [uncond; cond] rows; the inverse of :func:`per_element`."""
    return values.transpose(0, 1).reshape(-1, *values.shape[2:])
