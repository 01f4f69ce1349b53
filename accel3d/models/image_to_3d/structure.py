"""The sparse structure between the two stages: occupied-voxel coordinates, SAM3D's token
cap, and the fine per-voxel SDF samples that the mesh decoder predicts.

Geometry: the structure grid has ``R^3`` voxels over ``[-bound, bound]^3``; voxel
``(i, j, k)`` spans ``-bound + [i, i+1] * 2 bound / R`` on the first axis (and so on).
At subdivision ``s`` each voxel holds ``s^3`` SDF samples at the **centres** of its
sub-cells, so the fine grid has ``F = R s`` samples per axis at
``-bound + (n + 0.5) * 2 bound / F``; sample ``(a, b, c)`` of a voxel (C order,
index ``(a*s + b)*s + c``) is fine sample ``(i s + a, j s + b, k s + c)``. Every fine
sample belongs to exactly one voxel, so no values are shared or averaged.
"""

from __future__ import annotations

import torch
import trimesh
from torch import Tensor

from accel3d.core.validate import check_float, check_int
from accel3d.geometry.surface import extract_mesh
from accel3d.geometry.volume import VolumeGrid
from accel3d.models.image_to_3d.layers import grid_positions


def occupied_coords(occupied: Tensor) -> list[Tensor]:
    """Bool occupancy ``[B, R, R, R]`` -> per object the ``[N_i, 3]`` (int64) coordinates of its occupied voxels, C order."""
    if occupied.ndim != 4:
        raise ValueError(f"occupied: expected [B, R, R, R], got {tuple(occupied.shape)}")
    return [torch.nonzero(o) for o in occupied.bool()]


def downsample_structure(coords: Tensor, max_tokens: int, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """SAM 3D Objects' token cap: ``coords`` ``[N, 3]`` of one object -> (coords, factor).

    At most ``max_tokens`` voxels: returned unchanged with factor 1. Above it
    (SAM3D: 42000), the structure is shrunk by 2 about its centre: on each axis the
    occupied range ``[lo, hi]`` (size ``n = hi - lo + 1``) is mapped linearly onto
    ``[lo + n/4, lo + n/4 + n/2 - 1]``, rounded, clamped to that range's integer
    part (so an axis whose half-size is fractional may lose a layer: 10 -> 4), and
    duplicates removed (C order). If still above the cap, a random subset
    of ``max_tokens`` drawn with ``generator`` is kept (in C order). The factor is 2:
    the object now fills half the grid, so its layout scale must be multiplied by
    2 to stay the same size in the world (SAM3D does the same).

    Example::

        coords, factor = downsample_structure(coords, max_tokens=42000, generator=torch.Generator().manual_seed(0))
        scale = scale * factor
    """
    max_tokens = check_int("max_tokens", max_tokens, low=1)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords: expected [N, 3] integer voxel coordinates, got {tuple(coords.shape)}")
    if len(coords) <= max_tokens:
        return coords, 1
    factor = 2
    c = coords.double()
    lo, hi = c.min(0).values, c.max(0).values
    size = hi - lo + 1
    target = size / factor
    target_lo = lo + (size - target) / 2
    target_hi = target_lo + target - 1
    # an axis with a single occupied layer stays on that layer (SAM3D would divide by zero)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    rescaled = torch.round((c - lo) / span * (target - 1) + target_lo)
    low = target_lo.floor()
    rescaled = torch.minimum(torch.maximum(rescaled, low), torch.maximum(target_hi.floor(), low))  # one layer: hi < lo
    out = torch.unique(rescaled.long(), dim=0)
    if len(out) > max_tokens:
        keep = torch.randperm(len(out), generator=generator, device=out.device)[:max_tokens].sort().values
        out = out[keep]
    return out.to(coords.device), factor


def fine_sample_points(coords: Tensor, resolution: int, subdivision: int, bound: float) -> Tensor:
    """Object-frame positions ``[N, s^3, 3]`` of the fine SDF samples of voxels ``coords`` ``[N, 3]``."""
    h = 2 * bound / (resolution * subdivision)
    fine = coords[:, None, :] * subdivision + grid_positions(subdivision, 3).to(coords.device)[None]
    return -bound + (fine.float() + 0.5) * h


def fine_indices(coords: Tensor, resolution: int, subdivision: int) -> Tensor:
    """Flat indices ``[N, s^3]`` into the ``F^3`` fine grid (C order) of each voxel's samples."""
    f = resolution * subdivision
    fine = coords[:, None, :].long() * subdivision + grid_positions(subdivision, 3).to(coords.device)[None]
    return (fine[..., 0] * f + fine[..., 1]) * f + fine[..., 2]


def enclosed_voxels(coords: Tensor, resolution: int) -> Tensor:
    """Bool ``[R, R, R]``: unoccupied voxels that the structure encloses (not face-connected to the grid's border)."""
    from scipy.ndimage import binary_fill_holes

    occupied = torch.zeros(resolution, resolution, resolution, dtype=torch.bool)
    if len(coords):
        occupied[tuple(coords.long().cpu().T)] = True
    filled = torch.from_numpy(binary_fill_holes(occupied.numpy()))
    return filled & ~occupied


def scatter_fine_sdf(
    coords: Tensor, values: Tensor, resolution: int, subdivision: int, truncation: float, fill_enclosed: bool = True
) -> Tensor:
    """Per-voxel samples ``[N, s^3]`` -> the dense fine grid ``[F, F, F]``.

    Unoccupied space is ``+truncation`` (outside), except, with ``fill_enclosed``, the
    unoccupied voxels enclosed by the structure, which are ``-truncation`` (inside).
    That makes a shell structure (TRELLIS/SAM3D's: the voxels the surface passes
    through) decode to a solid instead of growing a second, inner surface where the
    shell ends; a solid structure encloses nothing, so for it both rules agree.
    """
    f = resolution * subdivision
    if values.shape != (len(coords), subdivision**3):
        raise ValueError(f"values: expected [{len(coords)}, {subdivision**3}] (one row per voxel), got {tuple(values.shape)}")
    grid = torch.full((f**3,), float(truncation), dtype=values.dtype, device=values.device)
    if fill_enclosed:
        inside = torch.nonzero(enclosed_voxels(coords, resolution)).to(values.device)
        grid[fine_indices(inside, resolution, subdivision).reshape(-1)] = -float(truncation)
    grid[fine_indices(coords, resolution, subdivision).reshape(-1)] = values.reshape(-1)
    return grid.view(f, f, f)


def gather_fine_sdf(fine: Tensor, coords: Tensor, subdivision: int) -> Tensor:
    """The samples ``[N, s^3]`` of voxels ``coords`` from a dense fine grid ``[F, F, F]`` (inverse of :func:`scatter_fine_sdf`)."""
    f = fine.shape[0]
    if fine.ndim != 3 or fine.shape != (f, f, f) or f % subdivision:
        raise ValueError(f"fine: expected a cubic [F, F, F] grid with F divisible by {subdivision}, got {tuple(fine.shape)}")
    return fine.reshape(-1)[fine_indices(coords, f // subdivision, subdivision)]


def sdf_to_mesh(fine: Tensor, bound: float, truncation: float) -> trimesh.Trimesh:
    """Marching cubes at level 0 of a fine SDF ``[F, F, F]`` (negative inside) sampled at sub-cell centres.

    The grid is padded by one ``+truncation`` sample on every side so that a surface
    touching the box is closed; the samples then lie on a regular lattice from
    ``-bound - h/2`` to ``bound + h/2`` (``h = 2 bound / F``), which is what
    :class:`~accel3d.geometry.volume.VolumeGrid` describes with resolution ``F + 1``.
    No surface gives an empty mesh and a warning (from ``extract_mesh``).

    Example::

        mesh = sdf_to_mesh(fine_sdf, bound=1.0, truncation=0.125)   # trimesh.Trimesh, object frame
    """
    bound = check_float("bound", bound, low=0.0, low_open=True)
    truncation = check_float("truncation", truncation, low=0.0, low_open=True)
    f = fine.shape[0]
    if fine.ndim != 3 or fine.shape != (f, f, f):
        raise ValueError(f"fine: expected a cubic [F, F, F] grid, got {tuple(fine.shape)}")
    padded = torch.nn.functional.pad(fine.detach().float().cpu()[None, None], (1,) * 6, value=truncation)[0, 0]
    h = 2 * bound / f
    grid = VolumeGrid(values=padded, resolution=f + 1, bound=bound + h / 2, queries=f**3)
    return extract_mesh(grid, level=0.0, inside="negative")
