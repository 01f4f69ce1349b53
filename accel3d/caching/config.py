"""Hash3D's one declaration: its name, stage, knobs, defaults and checks (torch-free).

Example::

    from accel3d.caching.config import Hash3DConfig

    Hash3DConfig(retrieve_prob=0.5, grids=((20, 20, 0.1, 10),))   # a fixed grid
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from accel3d.core.config import AcceleratorConfig, knob
from accel3d.core.validate import ArgumentError, check_bool, check_choice, check_float, check_int, check_seed

MODES = ("feature", "noise")
MISSING_POSE = ("error", "full")
MIN_CELL = 1e-6  # smallest cell size: keys up to 1e6 give cell indices below 1e12
# Upper bounds that keep the per-bucket bookkeeping allocatable (10M buckets x 3 grids: 240 MB).
MAX_BUCKETS, MAX_QUEUE = 10_000_000, 10_000
# The paper's adaptive grid: {10, 20, 30} degrees and steps, {0.1, 0.15, 0.2} radius.
PAPER_CELL_SIZES = ((10.0, 10.0, 0.1, 10.0), (20.0, 20.0, 0.15, 20.0), (30.0, 30.0, 0.2, 30.0))


def check_grids(name: str, value: Any) -> tuple[tuple[float, float, float, float], ...]:
    """At least one grid, each ``[azimuth, elevation, radius, timestep]`` cell sizes (``inf`` ignores a dimension)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ArgumentError(f"{name}: expected a list of [azimuth, elevation, radius, timestep] cell sizes, got {value!r}")
    grids = []
    for i, grid in enumerate(value):
        if hasattr(grid, "as_tuple"):  # a GridCells
            grid = grid.as_tuple()
        numbers = (
            isinstance(grid, Sequence)
            and not isinstance(grid, str)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in grid)
        )
        if not numbers or len(grid) != 4:
            raise ArgumentError(f"{name}[{i}]: expected 4 cell sizes [azimuth, elevation, radius, timestep], got {grid!r}")
        for size in grid:
            if not size >= MIN_CELL or math.isnan(size):
                raise ArgumentError(f"{name}[{i}]: expected cell sizes >= {MIN_CELL:g} (or inf to ignore one), got {list(grid)}")
        grids.append(tuple(float(v) for v in grid))
    return tuple(grids)


def check_cut(name: str, value: Any) -> str | int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
        raise ArgumentError(f"{name}: expected None, a cut-point name such as 'up_blocks.3.0' or an up-path index, got {value!r}")
    return value


def check_match_conditioning(name: str, value: Any) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    raise ArgumentError(f"{name}: expected true, false or 'auto', got {value!r}")


@dataclass(frozen=True)
class Hash3DConfig(AcceleratorConfig):
    """Hash3D (CVPR 2025): reuse U-Net features across nearby camera poses and timesteps
    (:class:`accel3d.caching.Hash3D`). The paper's adaptive grid (M = 3), queues of 3, features cut at
    the last up block.

    ``retrieve_prob`` is the probability that a call tries the cache. The paper calls its knob η and
    sets it to 0.1 while reporting 1.3-4x speedups, which only a retrieval probability near 0.9 can give;
    read as "compute with probability η", the paper's setting is ``retrieve_prob=0.9``.

    Example::

        Hash3D(Hash3DConfig(retrieve_prob=0.9))      # or Hash3D(retrieve_prob=0.9)
    """

    NAME: ClassVar[str] = "hash3d"
    STAGE: ClassVar[str] = "denoiser"
    _target_: str = "accel3d.caching.Hash3D"
    mode: str = knob(
        "feature", "feature (the paper: cache the hidden state at the cut) | noise (cache the final epsilon)", check_choice, choices=MODES
    )
    cut: Any = knob(None, "None: up_blocks.<last>.0 (DeepCache's cut); or a cut-point name / up-path index", check_cut)
    retrieve_prob: float = knob(
        0.9, "probability that a call tries the cache; 0 = never reuse (exact), 1 = always", check_float, low=0.0, high=1.0
    )
    grids: Any = knob(
        PAPER_CELL_SIZES, "[azimuth deg, elevation deg, radius, timestep steps] per grid; one grid is fixed, several adaptive", check_grids
    )
    num_buckets: int = knob(200, "n in idx mod n, per grid", check_int, low=1, high=MAX_BUCKETS)
    queue_length: int = knob(3, "entries kept per bucket, oldest dropped first (the paper's Q)", check_int, low=1, high=MAX_QUEUE)
    max_megabytes: float = knob(
        2048.0, "bound on the stored inputs, values and index data; oldest entries go first", check_float, low=1e-3, high=2.0**40
    )
    temperature: float = knob(
        0.1, "softmax over mean squared input distance; lower = nearer neighbours only", check_float, low=0.0, low_open=True
    )
    similarity_decay: float = knob(0.9, "gamma of the cosine-similarity moving average", check_float, low=0.0, high=1.0, high_open=True)
    exact_cells: bool = knob(False, "true: only entries of the query's own cell (hash collisions become misses)", check_bool)
    match_conditioning: Any = knob(
        "auto",
        "reuse only under the same conditioning; auto: not for U-Nets whose conditioning encodes the camera (Zero123-style)",
        check_match_conditioning,
    )
    guidance_pairs: bool = knob(True, "the batch is diffusers' CFG layout [uncond; cond]: rows i and i + N/2 are one element", check_bool)
    missing_pose: str = knob(
        "error", "error: a call without a camera raises; full: it runs in full and is counted", check_choice, choices=MISSING_POSE
    )
    check_every: int = knob(
        10, "every k-th call with hits is also run in full to measure fidelity (time excluded); 0 = off", check_int, low=0
    )
    seed: int = knob(0, "seeds the retrieval coin, so runs repeat", check_seed)
