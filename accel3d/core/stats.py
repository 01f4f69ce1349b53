"""Per-accelerator statistics and timing helpers."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Statistics:
    """Counters and accumulated timings that an accelerator reports.

    Example::

        stats = Statistics()
        stats.add("queries", 1000)
        with stats.time("decode"):
            ...
        stats.as_dict()   # {"queries": 1000, "decode_s": 0.12}
    """

    def __init__(self) -> None:
        self.counters: dict[str, float] = defaultdict(float)

    def add(self, name: str, value: float = 1) -> None:
        self.counters[name] += value

    def set(self, name: str, value: float) -> None:
        self.counters[name] = value

    @contextlib.contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.counters[f"{name}_s"] += time.perf_counter() - start

    def reset(self) -> None:
        self.counters.clear()

    def as_dict(self) -> dict[str, float]:
        return {k: (int(v) if float(v).is_integer() and not k.endswith("_s") else v) for k, v in self.counters.items()}


def measure(fn: Callable[[], T], repeats: int = 3, warmup: int = 1) -> tuple[list[float], T]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns the wall times in seconds and the last result.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result  # type: ignore[return-value]


def median(values: list[float]) -> float:
    return statistics.median(values)
