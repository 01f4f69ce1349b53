"""The ``hierarchical`` accelerator: routes a pipeline's volume decoder through
:class:`HierarchicalVolumeDecoder`."""

from __future__ import annotations

from typing import Any

from accel3d.core.accelerator import BaseAccelerator
from accel3d.core.registry import register_accelerator
from accel3d.decoding.hierarchical import HierarchicalVolumeDecoder
from accel3d.geometry.grid import DEFAULT_BOUND
from accel3d.geometry.volume import VolumeGrid


@register_accelerator("hierarchical")
class HierarchicalDecoding(BaseAccelerator):
    """Attach to any object with ``decode(fn, resolution, bound) -> VolumeGrid``
    (the ``volume_decoder`` stage) and decode coarse-to-fine instead.

    Example::

        acc = HierarchicalDecoding(min_resolution=63, band=0.95)
        with acc.applied(DenseVolumeDecoder()) as a:   # or Stack([acc]).apply(pipeline)
            ...
        acc.stats()  # {"calls": 1, "queries": ..., "dense_queries": ..., "query_fraction": ...}
    """

    name = "hierarchical"
    stage = "volume_decoder"

    def __init__(self, **decoder_kwargs: Any) -> None:
        super().__init__()
        self.decoder_kwargs = decoder_kwargs
        self.decoder = HierarchicalVolumeDecoder(**decoder_kwargs)

    def _attach(self, target: Any) -> None:
        if not callable(getattr(target, "decode", None)):
            raise TypeError(
                f"hierarchical: expected a volume decoder with a decode(fn, resolution, bound) method, got {type(target).__name__}"
            )
        # Inherit the target's chunking and progress settings where it has them.
        for attr in ("chunk_size", "progress", "max_memory_bytes"):
            if hasattr(target, attr) and attr not in self.decoder_kwargs:
                setattr(self.decoder, attr, getattr(target, attr))
        self.patches.set(target, "decode", self._decode)

    def _decode(self, fn: Any, resolution: int, bound: float = DEFAULT_BOUND) -> VolumeGrid:
        with self.statistics.time("decode"):
            grid = self.decoder.decode(fn, resolution, bound)
        self.statistics.add("calls")
        self.statistics.add("queries", grid.queries)
        self.statistics.add("dense_queries", grid.dense_queries)
        self.statistics.set("query_fraction", self.statistics.counters["queries"] / self.statistics.counters["dense_queries"])
        return grid
