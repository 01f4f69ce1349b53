"""Hierarchical (coarse-to-fine) volume decoding, after FlashVDM.

Decode a coarse grid densely, then at each finer level query only the points
near the surface: where the sign differs from a face neighbour, or within a band
of it (:mod:`accel3d.decoding.refinement`: by default a distance in voxels, read
through the field's measured slope, so that parts thinner than a coarse voxel are
caught on any field). Every other point takes the value interpolated from the
coarser level, so its sign is right and it is never NaN; ``VolumeGrid.decoded``
records which points were actually queried, ``VolumeGrid.levels`` what each part of
the rule flagged, and an optional check (``verify``) samples the rest.

Levels are nested: level ``r`` has ``r + 1`` points per axis and point ``i`` of
level ``r`` is point ``2i`` of level ``2r``, so coarse values are reused exactly
and never re-queried.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from accel3d.core.config import resolve_config
from accel3d.core.validate import check_bool, check_choice, check_float, check_int
from accel3d.decoding.config import HierarchicalConfig
from accel3d.decoding.refinement import (
    field_band_mask,
    is_unresolved,
    largest_step,
    local_slope,
    voxel_band_mask,
)
from accel3d.decoding.verification import verify_grid
from accel3d.geometry.grid import DEFAULT_BOUND
from accel3d.geometry.volume import (
    DenseVolumeDecoder,
    Field,
    VolumeGrid,
    check_bound,
    check_resolution,
    lattice_points,
    query_field,
)


def coarse_to_fine_levels(resolution: int, min_resolution: int) -> list[int]:
    """Resolutions from coarsest to ``resolution``, halving while even and >= ``min_resolution``."""
    check_int("resolution", resolution, low=1)
    check_int("min_resolution", min_resolution, low=2)
    levels = [resolution]
    while levels[-1] % 2 == 0 and levels[-1] // 2 >= min_resolution:
        levels.append(levels[-1] // 2)
    return levels[::-1]


_MIDPOINTS = {
    "mean": lambda lo, hi: (lo + hi) * 0.5,  # linear interpolation of values (reference for `interpolate`)
    "or": lambda lo, hi: lo | hi,  # a new point is refined if either neighbour is
    "zeros": lambda lo, hi: torch.zeros_like(lo),  # new points start un-decoded
}


def _upsample_axis(x: Tensor, dim: int, mode: str) -> Tensor:
    """Insert a midpoint between neighbours along ``dim`` (n -> 2n - 1 points)."""
    n = x.shape[dim]
    shape = list(x.shape)
    shape[dim] = 2 * n - 1
    out = x.new_empty(shape)
    index: list[slice] = [slice(None)] * x.ndim
    index[dim] = slice(0, None, 2)
    out[tuple(index)] = x
    index[dim] = slice(1, None, 2)
    out[tuple(index)] = _MIDPOINTS[mode](x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1))
    return out


def upsample(x: Tensor, mode: str) -> Tensor:
    """Nested upsampling of a 3D grid to the next level (``mode``: mean, or, zeros)."""
    for dim in range(3):
        x = _upsample_axis(x, dim, mode)
    return x


def interpolate(values: Tensor) -> Tensor:
    """Nested linear upsampling of a value grid (n -> 2n - 1 points per axis).

    Same result as ``upsample(values, "mean")`` up to rounding, in one multi-threaded pass;
    the coarse samples land unchanged on the even points.
    """
    n = values.shape[0]
    return F.interpolate(values[None, None], size=(2 * n - 1,) * 3, mode="trilinear", align_corners=True)[0, 0]


class HierarchicalVolumeDecoder:
    """Coarse-to-fine decoding of any field ``f(points[N, 3]) -> values[N]``.

    Example::

        from accel3d.geometry import shapes
        dec = HierarchicalVolumeDecoder(min_resolution=32)           # band: sqrt(3) voxels, from the field's slope
        grid = dec.decode(shapes.torus(), resolution=128)
        grid.query_fraction      # share of the dense grid's queries actually made
        grid.levels[1]           # what each part of the rule flagged at that level

    The knobs (``min_resolution``, ``band``, ``band_units``, ``slope_margin``, ``slope``,
    ``dilation``, ``verify``, ``verify_tolerance``, ``verify_refine``, ``seed``) are those of the
    ``hierarchical`` accelerator, declared once in :class:`~accel3d.decoding.config.HierarchicalConfig`
    with their defaults and documentation; pass a config or the knobs as keywords, and read them
    back as attributes (``dec.band``). In short:

    - ``band`` in ``voxels`` (the default units): that many voxels of each level, converted to
      field units through the field's measured slope (:mod:`accel3d.decoding.refinement`);
      ``sqrt(3)`` or more is exact wherever the slope bound holds. In ``field`` units
      (FlashVDM's): refine where ``|value - level| < band``.
    - ``slope="local"``: each sample's band is read through the steepest slope measured within
      the band's reach of it; ``"global"``: through the steepest slope seen anywhere so far.
    - ``verify``: decode this share of the never-decoded points afterwards and compare their signs
      with the interpolated ones (:mod:`accel3d.decoding.verification`).

    The field's conventions and the decoding's chunking are the decoder's own arguments:

    Args:
        level: the iso-level of the surface.
        inside: ``"positive"`` if values above ``level`` are inside, else ``"negative"``.
        chunk_size: points per field call.
        progress: show a progress bar.
        max_memory_bytes: cap on one chunk's working memory (None: no cap).
    """

    _OWN = ("chunk_size", "progress", "max_memory_bytes")  # the decoder's own arguments, not read from the config

    def __init__(
        self,
        config: HierarchicalConfig | None = None,
        *,
        level: float = 0.0,
        inside: Literal["positive", "negative"] = "positive",
        chunk_size: int = 65536,
        progress: bool = True,
        max_memory_bytes: int | None = None,
        **knobs: Any,
    ) -> None:
        self.config = resolve_config(HierarchicalConfig, config, knobs)
        self.level = check_float("level", level)
        self.inside = check_choice("inside", inside, ("positive", "negative"))
        self.chunk_size = check_int("chunk_size", chunk_size, low=1)
        self.progress = check_bool("progress", progress)
        self.max_memory_bytes = check_int("max_memory_bytes", max_memory_bytes, low=1, allow_none=True)

    def __getattr__(self, name: str) -> Any:
        config = self.__dict__.get("config")
        if config is not None and name in config.knob_names() and name not in self._OWN:  # the knobs as attributes: dec.band
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def levels(self, resolution: int) -> list[int]:
        return coarse_to_fine_levels(resolution, self.min_resolution)

    def _signed(self, values: Tensor) -> Tensor:
        """Positive inside, surface at 0."""
        return (values - self.level) if self.inside == "positive" else (self.level - values)

    def decode(self, fn: Field, resolution: int, bound: float = DEFAULT_BOUND) -> VolumeGrid:
        check_resolution(resolution, self.max_memory_bytes, minimum=self.min_resolution)
        bound = check_bound(bound)
        levels = self.levels(resolution)
        if len(levels) == 1:
            warnings.warn(
                f"hierarchical decoding: resolution {resolution} cannot be halved to a level >= min_resolution "
                f"{self.min_resolution}, so it decodes densely; use a resolution divisible by 2 whose half is "
                f">= min_resolution",
                stacklevel=2,
            )
        dense = DenseVolumeDecoder(self.chunk_size, self.progress, self.max_memory_bytes)
        grid = dense.decode(fn, levels[0], bound)
        values, decoded = grid.values, torch.ones_like(grid.values, dtype=torch.bool)
        stats: list[dict] = [{"resolution": levels[0], "queries": grid.queries}]
        total, slope = grid.queries, 0.0
        remaining = levels[1:]
        while remaining:
            res, coarse = remaining[0], values.shape[0] - 1
            signed, spacing = self._signed(values), 2 * bound / coarse
            if self.band_units == "voxels":
                step = largest_step(signed, decoded)
                slope = max(slope, step / spacing)
                if slope == 0.0 or is_unresolved(step, signed, decoded):  # no ramp seen: no distance to read, decode densely
                    while len(remaining) > 1:
                        values, decoded = interpolate(values), upsample(decoded, "zeros")
                        remaining = remaining[1:]
                    res = remaining[0]
                    refine, counts = torch.ones((res + 1,) * 3, dtype=torch.bool), {"rule": "dense", "reason": "no ramp between samples"}
                else:
                    local = None
                    if self.slope == "local":
                        local = local_slope(signed, spacing, math.ceil(self.band)) * self.slope_margin
                    refine, counts = voxel_band_mask(signed, decoded, spacing, slope * self.slope_margin, self.band, self.dilation, local)
                    refine, counts["slope"] = upsample(refine, "or"), slope
            else:
                refine, counts = field_band_mask(signed, self.band, self.dilation)
                refine = upsample(refine, "or")
            values, decoded = (values, decoded) if values.shape[0] == res + 1 else (interpolate(values), upsample(decoded, "zeros"))
            todo = torch.nonzero((refine & ~decoded).view(-1)).squeeze(1)
            with tqdm(total=len(todo), desc=f"refine {res}^3", unit="pt", unit_scale=True, disable=not self.progress, leave=False) as bar:
                new = query_field(fn, lattice_points(todo, res, bound), self.chunk_size, bar, where=f"at level {res}^3")
            values.view(-1)[todo] = new
            decoded.view(-1)[todo] = True
            stats.append({"resolution": res, "queries": len(todo), "flagged": counts})
            total += len(todo)
            remaining = remaining[1:]
        verification = None
        if self.verify is not None and len(levels) > 1:
            radius = resolution // levels[0]
            verification = verify_grid(
                fn, values, decoded, resolution, bound, self.verify, self.verify_tolerance, radius, self.verify_refine,
                self.seed, self.chunk_size, self._signed,
            )  # fmt: skip
            total += verification["queries"]
        return VolumeGrid(
            values, resolution, bound, queries=total, decoded=decoded, levels=stats, level=self.level, inside=self.inside,
            verification=verification,
        )  # fmt: skip
