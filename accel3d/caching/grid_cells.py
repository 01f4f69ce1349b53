"""Hash3D's keys and grid cells: what a key is, how it is checked, and the cell sizes of one grid.

A key is ``(azimuth°, elevation°, radius, timestep)`` (see :mod:`accel3d.caching.hash_table` for how
cells are indexed and hashed); :class:`GridCells` holds one grid's cell sizes, :data:`PAPER_GRIDS` the
paper's adaptive grid, and :func:`check_keys` validates a batch of keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from accel3d.caching.config import MIN_CELL, PAPER_CELL_SIZES


@dataclass(frozen=True)
class GridCells:
    """Cell sizes of one grid: degrees, degrees, scene units, diffusion steps.

    ``math.inf`` ignores a dimension (every value falls in cell 0), which gives, for
    example, a temporal-only cache: ``GridCells(math.inf, math.inf, math.inf, 10)``.

    Example::

        GridCells(azimuth=20, elevation=20, radius=0.1, timestep=10)
    """

    azimuth: float = 20.0
    elevation: float = 20.0
    radius: float = 0.1
    timestep: float = 10.0

    def __post_init__(self) -> None:
        for name in ("azimuth", "elevation", "radius", "timestep"):
            value = getattr(self, name)
            # A floor on the size keeps cell indices of any real key far inside int64 (a 1e-300 cell
            # would overflow them and put every key into one bucket).
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= MIN_CELL or math.isnan(value):
                raise ValueError(f"GridCells.{name}: expected a cell size >= {MIN_CELL:g} (or math.inf to ignore it), got {value!r}")

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.azimuth, self.elevation, self.radius, self.timestep)


# The paper's adaptive grid: {10, 20, 30} degrees and steps, {0.1, 0.15, 0.2} radius.
PAPER_GRIDS = tuple(GridCells(*sizes) for sizes in PAPER_CELL_SIZES)


def check_keys(keys: torch.Tensor, name: str = "keys") -> np.ndarray:
    """Validate (B, 4) keys ``(azimuth°, elevation°, radius, timestep)``; returns them as a float64 array.

    (NumPy, not torch: the keys are a handful of numbers, and NumPy's per-call cost is a fraction of torch's.)
    """
    if not isinstance(keys, torch.Tensor) or keys.ndim != 2 or keys.shape[1] != 4:
        shape = tuple(keys.shape) if isinstance(keys, torch.Tensor) else type(keys).__name__
        raise ValueError(f"{name}: expected a (batch, 4) tensor of (azimuth deg, elevation deg, radius, timestep), got {shape}")
    keys = keys.detach().cpu().numpy().astype(np.float64)
    finite = np.isfinite(keys).all(1)
    if not finite.all():
        raise ValueError(f"{name}: contains NaN or inf: {keys[~finite][:3].tolist()}")
    el, radius, t = keys[:, 1], keys[:, 2], keys[:, 3]
    if (np.abs(el) > 90).any():
        raise ValueError(f"{name}: elevation must lie in [-90, 90] degrees, got {el[np.abs(el) > 90][:3].tolist()}")
    if (radius <= 0).any():
        raise ValueError(f"{name}: radius must be > 0, got {radius[radius <= 0][:3].tolist()}")
    if (t < 0).any():
        raise ValueError(f"{name}: timestep must be >= 0, got {t[t < 0][:3].tolist()}")
    return keys
