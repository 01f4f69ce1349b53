"""Dense, chunked volume decoding of any field ``f(points[N, 3]) -> values[N]``.

This is the unaccelerated baseline that every volume-decoding accelerator is
judged against, and the shared machinery (argument checks, chunked queries,
memory estimate) that they build on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from accel3d.core.validate import check_bool, check_choice, check_float, check_int
from accel3d.geometry.grid import DEFAULT_BOUND, grid_axis

Field = Callable[[Tensor], Tensor]
BYTES_PER_GRID_POINT = 16  # values, decoded mask, level temporaries and marching-cubes copies


@dataclass
class VolumeGrid:
    """A decoded field on the ``(R+1)^3`` corner grid of ``[-bound, bound]^3``.

    ``decoded`` marks the points whose value came from the field; the others were
    filled by interpolating a coarser level (never NaN). ``None`` means all were.
    ``level`` and ``inside`` (``"positive"``: values above ``level`` are inside) are the
    decoder's sign convention, which :func:`~accel3d.geometry.surface.extract_mesh` follows.

    Example::

        grid = DenseVolumeDecoder(inside="negative").decode(my_sdf, 64)   # most SDF code: negative inside
        mesh = extract_mesh(grid)                                        # normals point out
    """

    values: Tensor
    resolution: int
    bound: float
    queries: int
    decoded: Tensor | None = None
    levels: list[dict] = field(default_factory=list)
    level: float = 0.0
    inside: str = "positive"
    verification: dict | None = None

    @property
    def dense_queries(self) -> int:
        return (self.resolution + 1) ** 3

    @property
    def query_fraction(self) -> float:
        return self.queries / self.dense_queries


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo, or physical memory where that is unavailable."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_resolution(resolution: int, max_memory_bytes: int | None = None, minimum: int = 1) -> None:
    """Refuse a resolution below ``minimum`` or whose grid would not fit in memory."""
    check_int("resolution", resolution, low=minimum)
    need = (resolution + 1) ** 3 * BYTES_PER_GRID_POINT
    limit = max_memory_bytes if max_memory_bytes is not None else available_memory_bytes()
    if need > limit:
        raise MemoryError(
            f"resolution: a {resolution}^3 grid needs about {need / 2**30:.1f} GiB, but only "
            f"{limit / 2**30:.1f} GiB is available; choose a lower resolution"
        )


def check_bound(bound: object) -> float:
    """The half-width of the decoding box: a finite number in (0, 1e6]."""
    return check_float("bound", bound, low=0.0, low_open=True, high=1e6)


def query_field(fn: Field, points: Tensor, chunk_size: int, progress: tqdm | None = None, where: str = "") -> Tensor:
    """Evaluate ``fn`` over ``points`` (N, 3) in chunks, checking every result."""
    if not callable(fn):
        raise TypeError(f"field: expected a query function f(points[N, 3]) -> values[N], got {type(fn).__name__}")
    out = torch.empty(len(points), dtype=torch.float32)
    for start in range(0, len(points), chunk_size):
        chunk = points[start : start + chunk_size]
        out[start : start + len(chunk)] = check_field_output(fn(chunk), len(chunk), where)
        if progress is not None:
            progress.update(len(chunk))
    return out


def check_field_output(values: object, n: int, where: str = "") -> Tensor:
    if not isinstance(values, Tensor):
        raise TypeError(f"field: expected the query function to return a Tensor, got {type(values).__name__}")
    if values.shape != (n,):
        raise ValueError(f"field: expected the query function to return shape ({n},) for {n} points, got {tuple(values.shape)}")
    if not values.is_floating_point():
        raise TypeError(f"field: expected a floating-point result, got {values.dtype}")
    bad = ~torch.isfinite(values)
    if bad.any():
        at = f" {where}" if where else ""
        raise ValueError(f"field: the query function returned NaN or inf for {int(bad.sum())} of {n} points{at}")
    return values.detach().to(device="cpu", dtype=torch.float32)


def lattice_points(index: Tensor, resolution: int, bound: float) -> Tensor:
    """Coordinates of flat grid indices ``index`` on the ``(R+1)^3`` lattice."""
    n = resolution + 1
    ijk = torch.stack([index // (n * n), (index // n) % n, index % n], dim=-1)
    return grid_axis(resolution, bound)[ijk]


class DenseVolumeDecoder:
    """Evaluates a field at every point of the grid, in chunks.

    Example::

        from accel3d.geometry import shapes
        grid = DenseVolumeDecoder().decode(shapes.sphere(0.5), resolution=64)
        grid.values.shape   # (65, 65, 65)
    """

    def __init__(
        self,
        chunk_size: int = 65536,
        progress: bool = True,
        max_memory_bytes: int | None = None,
        level: float = 0.0,
        inside: str = "positive",
    ) -> None:
        self.level = check_float("level", level)
        self.inside = check_choice("inside", inside, ("positive", "negative"))
        self.chunk_size = check_int("chunk_size", chunk_size, low=1)
        self.progress = check_bool("progress", progress)
        self.max_memory_bytes = check_int("max_memory_bytes", max_memory_bytes, low=1, allow_none=True)

    def decode(self, fn: Field, resolution: int, bound: float = DEFAULT_BOUND) -> VolumeGrid:
        check_resolution(resolution, self.max_memory_bytes)
        bound = check_bound(bound)
        n = resolution + 1
        total = n**3
        values = torch.empty(total, dtype=torch.float32)
        step = self.chunk_size * max(1, math.ceil(1_000_000 / self.chunk_size))  # build coordinates in slabs
        with tqdm(total=total, desc=f"dense {resolution}^3", unit="pt", unit_scale=True, disable=not self.progress, leave=False) as bar:
            for start in range(0, total, step):
                stop = min(start + step, total)
                points = lattice_points(torch.arange(start, stop), resolution, bound)
                values[start:stop] = query_field(fn, points, self.chunk_size, bar, where=f"at {resolution}^3")
        return VolumeGrid(
            values.view(n, n, n), resolution, bound, queries=total, levels=[{"resolution": resolution, "queries": total}],
            level=self.level, inside=self.inside,
        )  # fmt: skip
