"""Regular query grids over a cubic box ``[-bound, bound]^3``."""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_BOUND = 1.01


def grid_axis(resolution: int, bound: float = DEFAULT_BOUND) -> torch.Tensor:
    """The ``resolution + 1`` sample coordinates along one axis (cell corners).

    Computed as numpy's float32 ``linspace``, which is how Hunyuan3D-2 (``hy3dgen``) places its query grid:
    torch's float32 ``linspace`` differs from it by one ulp at some points, so a decoder behind hy3dgen's
    volume-decoder call would otherwise not reproduce its dense grid bit for bit.
    """
    return torch.from_numpy(np.linspace(-bound, bound, resolution + 1, dtype=np.float32))


def grid_points(resolution: int, bound: float = DEFAULT_BOUND) -> torch.Tensor:
    """All grid points, shape ``(R+1, R+1, R+1, 3)``, indexed ``[x, y, z]``."""
    axis = grid_axis(resolution, bound)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
