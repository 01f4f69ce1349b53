"""Regular query grids over a cubic box ``[-bound, bound]^3``."""

from __future__ import annotations

import torch

DEFAULT_BOUND = 1.01


def grid_axis(resolution: int, bound: float = DEFAULT_BOUND) -> torch.Tensor:
    """The ``resolution + 1`` sample coordinates along one axis (cell corners)."""
    return torch.linspace(-bound, bound, resolution + 1, dtype=torch.float32)


def grid_points(resolution: int, bound: float = DEFAULT_BOUND) -> torch.Tensor:
    """All grid points, shape ``(R+1, R+1, R+1, 3)``, indexed ``[x, y, z]``."""
    axis = grid_axis(resolution, bound)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
