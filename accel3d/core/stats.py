"""Per-accelerator statistics and timing helpers."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
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
        self.counters: dict[str, float] = defaultdict(int)

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
        return dict(self.counters)
