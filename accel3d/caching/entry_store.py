"""The entry store behind :class:`~accel3d.caching.hash_table.GridHashTable`: slots, FIFO queues, the byte budget.

Entries live in slots of preallocated tensors that grow as needed; each bucket keeps its
``queue_length`` newest members, and when ``max_bytes`` is reached the oldest entries are evicted.
"""

from __future__ import annotations

import math

import torch


class EntryStore:
    """Slot bookkeeping that :class:`~accel3d.caching.hash_table.GridHashTable` inherits.

    It works on the table's state: ``grids``, ``queue_length`` and ``max_bytes`` from its constructor,
    and the per-slot tensors ``_inputs``, ``_values``, ``_cells``, ``_bucket``, ``_member``, ``_time``,
    ``_tag`` and the counters ``evicted`` and ``dropped`` that its ``clear()`` creates.
    """

    def __len__(self) -> int:
        return int(self._member.any(1).sum())

    @property
    def entry_bytes(self) -> int:
        """Bytes one entry costs (0 before the first insert fixes the shapes)."""
        if self._inputs is None:
            return 0
        data = (self._inputs.shape[1] * self._inputs.element_size()) + math.prod(self._values.shape[1:]) * self._values.element_size()
        return data + len(self.grids) * (4 * 8 + 8 + 1) + 16  # + cells, bucket, membership; time, tag

    @property
    def nbytes(self) -> int:
        """Bytes held by live entries."""
        return len(self) * self.entry_bytes

    @property
    def capacity(self) -> int:
        """Entries that fit in ``max_bytes`` (0 before the first insert)."""
        return self.max_bytes // self.entry_bytes if self.entry_bytes else 0

    def _queue_slots(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (at most Q) newest slots per row of a (B, S) mask, and which are real."""
        k = min(self.queue_length, mask.shape[1])
        newest = torch.where(mask, self._time[None], -1)
        order, slots = torch.topk(newest, k, dim=1)
        return slots, order >= 0

    def _free_slots(self, count: int) -> torch.Tensor:
        """Slot indices for ``count`` new entries: free ones, then new ones, then the oldest evicted."""
        free = (~self._member.any(1)).nonzero().flatten()
        if len(free) < count and len(self._time) < self.capacity:
            self._grow(min(self.capacity, max(2 * len(self._time), len(self._time) + count - len(free), 16)))
            free = (~self._member.any(1)).nonzero().flatten()
        if len(free) < count:
            live_time = torch.where(self._member.any(1), self._time, torch.iinfo(torch.int64).max)
            oldest = torch.topk(live_time, count - len(free), largest=False).indices
            self._member[oldest] = False
            self.evicted += len(oldest)
            free = torch.cat([free, oldest])
        return free[:count]

    def _grow(self, size: int) -> None:
        extra = size - len(self._time)
        grids = len(self.grids)
        self._inputs = torch.cat([self._inputs, self._inputs.new_zeros(extra, self._inputs.shape[1])])
        self._values = torch.cat([self._values, self._values.new_zeros(extra, *self._values.shape[1:])])
        self._cells = torch.cat([self._cells, self._cells.new_zeros(extra, grids, 4)])
        self._bucket = torch.cat([self._bucket, self._bucket.new_zeros(extra, grids)])
        self._member = torch.cat([self._member, self._member.new_zeros(extra, grids)])
        self._time = torch.cat([self._time, self._time.new_full((extra,), -1)])
        self._tag = torch.cat([self._tag, self._tag.new_zeros(extra)])

    def _trim_queues(self, buckets: torch.Tensor) -> None:
        """Keep the ``queue_length`` newest members of every bucket that just received entries."""
        members = (self._member.T[None] & (self._bucket.T[None] == buckets[..., None])).sum(-1)  # (B, M)
        overfull = (members > self.queue_length).any(0)
        if not overfull.any():  # the common case: nothing to drop
            return
        was_live = self._member.any(1)
        for m in overfull.nonzero().flatten().tolist():
            slots = self._member[:, m].nonzero().flatten()
            # sort by bucket, newest first inside a bucket; rank = position inside its bucket
            by_time = slots[torch.argsort(self._time[slots], descending=True, stable=True)]
            ordered = by_time[torch.argsort(self._bucket[by_time, m], stable=True)]
            bucket = self._bucket[ordered, m]
            starts = torch.ones_like(bucket, dtype=torch.bool)
            starts[1:] = bucket[1:] != bucket[:-1]
            position = torch.arange(len(ordered))
            first = torch.cummax(torch.where(starts, position, 0), 0).values
            self._member[ordered[position - first >= self.queue_length], m] = False
        self.dropped += int((was_live & ~self._member.any(1)).sum())

    @staticmethod
    def _check_inputs(tensor: torch.Tensor, batch: int, name: str) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 1 or tensor.shape[0] != batch:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name}: expected a tensor with one row per key ({batch}), got {shape}")
        if not tensor.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {tensor.dtype}")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name}: contains NaN or inf; refusing to store or match it")
        return tensor.detach()
