"""Fields of real meshes in the forms decoders meet: clamped and raw SDFs, occupancies, thin parts.

A mesh's signed distance is sampled once on a ``(R+1)^3`` grid (the Euclidean distance transform
of :func:`~accel3d.geometry.voxelize.inside_grid`, accurate to about half a grid cell) and
queried anywhere by trilinear interpolation, as a learned or baked field would be. The families
(:data:`FIELD_FAMILIES`) are the ones hierarchical decoding must stay exact on (docs/decoding.md).

Example::

    sdf = MeshSDF(normalize_mesh(load_mesh(BUNDLED_MESH)))      # positive inside
    field = FIELD_FAMILIES["clamped_0.03"](sdf)                 # clamp(sdf / 0.03, -1, 1)
    DenseVolumeDecoder().decode(field, 256)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from scipy import ndimage
from torch import Tensor

from accel3d.geometry.voxelize import inside_grid

Field = Callable[[Tensor], Tensor]


class MeshSDF:
    """A mesh's signed distance (positive inside) on a grid over ``[-bound, bound]^3``, interpolated trilinearly.

    Example::

        sdf = MeshSDF(trimesh.creation.icosphere(radius=0.5), resolution=64)
        sdf(torch.zeros(1, 3))      # about 0.5
    """

    def __init__(self, mesh: trimesh.Trimesh, resolution: int = 128, bound: float = 1.0) -> None:
        inside = inside_grid(mesh, resolution, bound).numpy()
        cell = 2 * bound / resolution
        outside_distance = ndimage.distance_transform_edt(~inside) * cell
        inside_distance = ndimage.distance_transform_edt(inside) * cell
        # half a cell puts the zero crossing between the last inside and the first outside sample
        sdf = np.where(inside, inside_distance - 0.5 * cell, -(outside_distance - 0.5 * cell))
        self.values = torch.as_tensor(sdf, dtype=torch.float32)
        self.bound = bound

    def __call__(self, points: Tensor) -> Tensor:
        # grid_sample reads (x, y, z) as (W, H, D): the grid is [x, y, z], so flip to (z, y, x) order
        coords = (points.float() / self.bound).flip(-1).view(1, -1, 1, 1, 3)
        out = F.grid_sample(self.values[None, None], coords, mode="bilinear", padding_mode="border", align_corners=True)
        return out.view(-1)


def thin_plate(thickness: float = 0.01, half_side: float = 0.6, z: float = 0.0155) -> Field:
    """SDF of a square plate thinner than a coarse voxel, centred between the z-samples of a 64^3 grid over ±1.01."""

    def sdf(points: Tensor) -> Tensor:
        d = (points - torch.tensor([0.0, 0.0, z])).abs() - torch.tensor([half_side, half_side, thickness / 2])
        outside = d.clamp(min=0).norm(dim=-1)
        return -(outside + d.max(dim=-1).values.clamp(max=0))  # positive inside

    return sdf


def _clamped(truncation: float) -> Callable[[Field], Field]:
    return lambda sdf: lambda p: (sdf(p) / truncation).clamp(-1.0, 1.0)


PLATE = thin_plate()


def _with_plate(sdf: Field) -> Field:
    return lambda p: (torch.maximum(sdf(p), PLATE(p)) / 0.03).clamp(-1.0, 1.0)


FIELD_FAMILIES: dict[str, Callable[[Field], Field]] = {
    "clamped_0.01": _clamped(0.01),
    "clamped_0.03": _clamped(0.03),
    "clamped_0.1": _clamped(0.1),
    "raw": lambda sdf: sdf,
    "occupancy": lambda sdf: lambda p: torch.where(sdf(p) > 0, 1.0, -1.0),
    "thin_plate": _with_plate,  # the mesh and the plate, clamped at 0.03
}
