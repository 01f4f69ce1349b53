"""Hash3D's grid hash table: features stored by camera pose and timestep.

A key is ``(azimuth, elevation, radius, timestep)``:

========== ============================================ ===========================
dimension  unit                                         cell index
========== ============================================ ===========================
azimuth    degrees, any range (wraps around 360)        ``round(az / Δaz) mod ⌈360 / Δaz⌉``
elevation  degrees in [-90, 90]                         ``floor(el / Δel)``
radius     scene units (camera distance), > 0           ``floor(r / Δr)``
timestep   diffusion steps (0 … num_train_timesteps)    ``floor(t / Δt)``
========== ============================================ ===========================

Azimuth cells are centred on multiples of Δaz and wrap, so 359° and 1° share a cell
(the public code floors the raw angle, which splits them). The cell indices are
hashed as in the paper, ``(i + N1*j + N2*k + N3*l) mod n`` with the spatial-hash
primes, into ``n`` buckets; each bucket is a FIFO queue of the ``queue_length``
newest entries. Retrieval averages the queue's values with weights
``softmax(-d_i / temperature)``, where ``d_i`` is the *mean* squared difference
between the query's noisy input and entry i's (the paper's squared distance,
normalised by the number of elements so that one temperature suits every latent
size; without it a 32x32x4 latent collapses the softmax to nearest-neighbour).

Several grids (the paper's adaptive grid, M = 3 by default) share the entries:
every insert goes into each grid's bucket, each bucket keeps an exponential moving
average of the cosine similarity between a new value and those already there,
and a lookup uses the non-empty bucket whose grid has the highest similarity.

Memory is bounded in bytes: when storing a new entry would exceed ``max_bytes``,
the oldest entries are evicted first. Everything is vectorised over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from accel3d.caching.config import MAX_BUCKETS, MAX_QUEUE, Hash3DConfig
from accel3d.caching.entry_store import EntryStore
from accel3d.caching.grid_cells import MIN_CELL, PAPER_GRIDS, GridCells, check_keys
from accel3d.core.validate import check_float, check_int

__all__ = [  # GridCells, PAPER_GRIDS, MIN_CELL and check_keys live in grid_cells, re-exported here
    "MAX_BUCKETS",
    "MAX_QUEUE",
    "MIN_CELL",
    "PAPER_GRIDS",
    "PRIMES",
    "GridCells",
    "GridHashTable",
    "Retrieval",
    "check_keys",
]

PRIMES = (73856093, 19349669, 83492791)  # N1, N2, N3: the spatial-hash primes the paper cites


@dataclass
class Retrieval:
    """What a lookup found: ``values[i]`` is valid where ``hit[i]``."""

    hit: torch.Tensor  # (B,) bool
    values: torch.Tensor  # (B, *value_shape); zeros where there was no hit
    grid: torch.Tensor  # (B,) int64: the grid used, -1 without a hit
    entries: torch.Tensor  # (B,) int64: entries averaged
    cross_cell: torch.Tensor  # (B,) bool: part of the weight came from another cell (a hash collision)


class GridHashTable(EntryStore):
    """Grid-hashed feature store for Hash3D, with the paper's adaptive grid.

    Args:
        grids: cell sizes, one :class:`GridCells` per grid (M = len(grids)); one grid
            is a fixed grid, several the adaptive grid (default: the paper's three).
        num_buckets: ``n`` in ``idx mod n`` (per grid).
        queue_length: entries kept per bucket, oldest dropped first (the paper's Q = 3).
        max_bytes: bound on stored inputs + values + index data; oldest entries go first.
        temperature: softmax temperature on the mean squared input distance;
            ``-> 0`` is nearest-neighbour, large values a plain average.
        similarity_decay: γ of the cosine-similarity moving average.
        unmeasured_similarity: the score of a bucket whose similarity was never
            measured (it held one entry so far). The default 1.0 trusts it, so the
            finest non-empty grid wins until measurements say otherwise.
        exact_cells: reuse only entries from the query's own cell. The paper
            (and its code) average whatever shares the bucket, including other cells
            that collide in ``mod n``; this switch turns such collisions into misses.

    Example::

        table = GridHashTable()
        keys = torch.tensor([[30.0, 10.0, 1.8, 500.0]])       # az, el, radius, t
        table.insert(keys, noisy_latents, features)
        found = table.lookup(keys, noisy_latents)               # found.hit, found.values
    """

    def __init__(
        self,
        grids: Sequence[GridCells] = PAPER_GRIDS,
        num_buckets: int = Hash3DConfig.num_buckets,
        queue_length: int = Hash3DConfig.queue_length,
        max_bytes: int = int(Hash3DConfig.max_megabytes * 2**20),
        temperature: float = Hash3DConfig.temperature,
        similarity_decay: float = Hash3DConfig.similarity_decay,
        unmeasured_similarity: float = 1.0,
        exact_cells: bool = Hash3DConfig.exact_cells,
    ) -> None:
        # Hash3D's knobs keep the limits of their one declaration (Hash3DConfig); max_bytes and
        # unmeasured_similarity are the table's own.
        knob = Hash3DConfig.check_knob
        grids = [GridCells(*sizes) for sizes in knob("grids", grids)]  # a list of GridCells or of 4 cell sizes each
        knob("num_buckets", num_buckets)
        knob("queue_length", queue_length)
        check_int("max_bytes", max_bytes, low=1)
        knob("temperature", temperature)
        knob("similarity_decay", similarity_decay)
        check_float("unmeasured_similarity", unmeasured_similarity, low=-1.0, high=1.0)
        knob("exact_cells", exact_cells)
        self.grids = tuple(grids)
        self.num_buckets = num_buckets
        self.queue_length = queue_length
        self.max_bytes = max_bytes
        self.temperature = float(temperature)
        self.similarity_decay = float(similarity_decay)
        self.unmeasured_similarity = float(unmeasured_similarity)
        self.exact_cells = exact_cells
        self._cell_sizes_np = np.array([g.as_tuple() for g in grids], dtype=np.float64)  # (M, 4)
        self.clear()

    # ------------------------------------------------------------------ state
    def clear(self) -> None:
        """Forget every entry and every similarity measurement."""
        self._inputs: torch.Tensor | None = None  # (S, D) flattened noisy inputs
        self._values: torch.Tensor | None = None  # (S, *value_shape)
        self._cells = torch.zeros(0, len(self.grids), 4, dtype=torch.int64)
        self._bucket = torch.zeros(0, len(self.grids), dtype=torch.int64)
        self._member = torch.zeros(0, len(self.grids), dtype=torch.bool)  # slot is in grid m's queue
        self._time = torch.zeros(0, dtype=torch.int64)
        self._tag = torch.zeros(0, dtype=torch.int64)  # entries match only queries with the same tag
        self._clock = 0
        self._similarity = torch.full((len(self.grids), self.num_buckets), math.nan, dtype=torch.float64)
        self.evicted = 0  # entries dropped to stay under max_bytes
        self.dropped = 0  # entries pushed out of every queue they were in

    def similarity(self) -> torch.Tensor:
        """(M, num_buckets) moving-average cosine similarity; NaN where never measured."""
        return self._similarity.clone()

    # ------------------------------------------------------------------ hashing
    def cells(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, M, 4) integer cell indices of each key in each grid."""
        k = check_keys(keys)[:, None, :]  # index bookkeeping lives on the CPU; stored data stays on its device
        size = self._cell_sizes_np[None]  # (1, M, 4)
        with np.errstate(invalid="ignore"):  # value / inf is 0; inf sizes are zeroed below anyway
            cells = np.floor(k / size)
            # azimuth: cells centred on multiples of the cell size, wrapping at 360 degrees
            az_size = size[..., 0]
            az = np.floor(np.remainder(k[..., 0] + az_size / 2, 360.0) / az_size)
            cells[..., 0] = np.remainder(az, np.ceil(360.0 / az_size))
        cells[np.broadcast_to(np.isinf(size), cells.shape)] = 0  # ignored dimensions
        return torch.from_numpy(cells.astype(np.int64))

    def buckets(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, M) bucket index of each key in each grid: ``(i + N1 j + N2 k + N3 l) mod n``."""
        return self._hash(self.cells(keys))

    def _hash(self, cells: torch.Tensor) -> torch.Tensor:
        az, el, radius, t = cells.unbind(-1)  # the paper's i, j, k, l
        return torch.remainder(az + PRIMES[0] * el + PRIMES[1] * radius + PRIMES[2] * t, self.num_buckets)

    # ------------------------------------------------------------------ lookup
    def lookup(
        self, keys: torch.Tensor, inputs: torch.Tensor, cells: torch.Tensor | None = None, tags: torch.Tensor | None = None
    ) -> Retrieval:
        """Aggregate, for each key, the entries of its bucket in the best grid.

        ``inputs`` (B, ...) are the noisy U-Net inputs that weight the entries;
        ``cells`` may pass ``self.cells(keys)`` when the caller has it already;
        ``tags`` (B,) int64 restrict each query to entries stored with the same tag
        (Hash3D tags entries with their conditioning, so a new prompt never reuses).
        """
        cells = self.cells(keys) if cells is None else cells
        batch = cells.shape[0]
        inputs = self._check_inputs(inputs, batch, "inputs")
        if self._inputs is None or self._inputs.shape[1] != inputs[0].numel():
            if self._inputs is not None:
                raise ValueError(f"inputs: expected {self._inputs.shape[1]} elements per entry as stored, got {inputs[0].numel()}")
            empty = torch.zeros(batch, dtype=torch.bool)
            none = torch.full((batch,), -1, dtype=torch.int64)
            return Retrieval(empty, torch.zeros(0), none, torch.zeros(batch, dtype=torch.int64), empty)
        buckets = self._hash(cells)  # (B, M)
        candidates = self._candidates(cells, buckets, self._tags(tags, batch))  # (B, M, S)
        nonempty = candidates.any(-1)
        score = self._similarity[torch.arange(len(self.grids))[None], buckets]
        score = torch.nan_to_num(score, nan=self.unmeasured_similarity)
        score = torch.where(nonempty, score, -math.inf)
        grid = score.argmax(1)  # ties go to the first (finest) grid
        hit = nonempty.any(1)
        chosen = candidates[torch.arange(batch), grid]  # (B, S)

        slots, valid = self._queue_slots(chosen)  # (B, Q)
        flat = inputs.reshape(batch, -1).to(self._inputs)  # float32
        dist = (flat[:, None, :] - self._inputs[slots]).square().mean(-1).cpu()  # (B, Q)
        logits = torch.where(valid, -dist / self.temperature, -math.inf)
        weights = torch.where(hit[:, None], torch.softmax(torch.where(hit[:, None], logits, 0.0), 1), 0.0)
        values = torch.einsum("bq,bq...->b...", weights.to(self._values), self._values[slots])
        same_cell = (self._cells[slots, grid[:, None]] == cells[torch.arange(batch), grid][:, None]).all(-1)
        cross = hit & (valid & ~same_cell & (weights > 1e-3)).any(1)
        return Retrieval(hit, values, torch.where(hit, grid, -1), valid.sum(1) * hit, cross)

    def _candidates(self, cells: torch.Tensor, buckets: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        cand = self._member.T[None] & (self._bucket.T[None] == buckets[..., None])  # (B, M, S)
        cand &= (self._tag[None] == tags[:, None])[:, None, :]
        if self.exact_cells:
            cand &= (self._cells.permute(1, 0, 2)[None] == cells[:, :, None, :]).all(-1)
        return cand

    @staticmethod
    def _tags(tags: torch.Tensor | None, batch: int) -> torch.Tensor:
        if tags is None:
            return torch.zeros(batch, dtype=torch.int64)
        tags = torch.as_tensor(tags, dtype=torch.int64).cpu().reshape(-1)
        if len(tags) != batch:
            raise ValueError(f"tags: expected one tag per key ({batch}), got {len(tags)}")
        return tags

    # ------------------------------------------------------------------ insert
    def insert(
        self,
        keys: torch.Tensor,
        inputs: torch.Tensor,
        values: torch.Tensor,
        cells: torch.Tensor | None = None,
        tags: torch.Tensor | None = None,
    ) -> None:
        """Store ``values`` (B, ...) under ``keys`` (B, 4) with their noisy ``inputs`` (B, ...)
        (``cells``: ``self.cells(keys)``, if the caller has it already; ``tags``: see :meth:`lookup`)."""
        cells = self.cells(keys) if cells is None else cells
        batch = cells.shape[0]
        inputs = self._check_inputs(inputs, batch, "inputs")
        values = self._check_inputs(values, batch, "values")
        flat = inputs.reshape(batch, -1)
        if self._inputs is None:
            # inputs in float32: squared distances in fp16 lose the differences that weight the entries
            self._inputs = torch.zeros(0, flat.shape[1], dtype=torch.float32, device=flat.device)
            self._values = torch.zeros(0, *values.shape[1:], dtype=values.dtype, device=values.device)
        if flat.shape[1] != self._inputs.shape[1] or values.shape[1:] != self._values.shape[1:]:
            raise ValueError(
                f"values: entries must keep one shape; stored inputs {self._inputs.shape[1]} elements and values "
                f"{tuple(self._values.shape[1:])}, got {flat.shape[1]} and {tuple(values.shape[1:])}"
            )
        if batch > self.capacity:
            raise ValueError(
                f"max_bytes: {self.max_bytes} bytes hold {self.capacity} entries of {self.entry_bytes} bytes, "
                f"fewer than the {batch} to insert"
            )
        buckets = self._hash(cells)
        tags = self._tags(tags, batch)
        self._update_similarity(buckets, values, tags)
        slots = self._free_slots(batch)
        self._inputs[slots] = flat.to(self._inputs)
        self._values[slots] = values.to(self._values)
        self._cells[slots] = cells
        self._bucket[slots] = buckets
        self._member[slots] = True
        self._time[slots] = self._clock + torch.arange(batch)
        self._tag[slots] = tags
        self._clock += batch
        self._trim_queues(buckets)

    def _update_similarity(self, buckets: torch.Tensor, values: torch.Tensor, tags: torch.Tensor) -> None:
        """EMA of the mean cosine similarity between each new value and its bucket's entries (all grids at once)."""
        if not len(self._time):
            return
        batch, grids = buckets.shape
        mask = self._member.T[None] & (self._bucket.T[None] == buckets[..., None])  # (B, M, S)
        mask &= (self._tag[None] == tags[:, None])[:, None, :]
        slots, valid = self._queue_slots(mask.reshape(batch * grids, -1))  # (B*M, Q)
        if not valid.any():
            return
        flat = values.reshape(batch, 1, -1).to(self._values)
        stored = self._values[slots].reshape(batch, grids * slots.shape[1], -1)
        cos = torch.nn.functional.cosine_similarity(flat.float(), stored.float(), dim=-1).reshape(batch * grids, -1)
        cos = cos.to("cpu", torch.float64)  # the bookkeeping lives on the CPU
        measured = valid.any(1)
        mean_cos = (cos * valid).sum(1)[measured] / valid.sum(1)[measured]
        # one flat index per (grid, bucket); several new entries in one bucket are averaged, then one EMA step
        index = (torch.arange(grids)[None] * self.num_buckets + buckets).reshape(-1)[measured]
        total = torch.zeros(grids * self.num_buckets, dtype=torch.float64).index_add_(0, index, mean_cos)
        count = torch.zeros(grids * self.num_buckets, dtype=torch.float64).index_add_(0, index, torch.ones_like(mean_cos))
        per_bucket = (total / count.clamp_min(1)).reshape(grids, -1)
        old = self._similarity
        ema = torch.where(torch.isnan(old), per_bucket, self.similarity_decay * old + (1 - self.similarity_decay) * per_bucket)
        self._similarity = torch.where((count > 0).reshape(grids, -1), ema, old)

    def stats(self) -> dict[str, float]:
        """Entries, bytes, evictions and the mean measured similarity of each grid."""
        out: dict[str, float] = {"entries": len(self), "bytes": self.nbytes, "evicted": self.evicted, "dropped": self.dropped}
        for m in range(len(self.grids)):
            measured = self._similarity[m][~torch.isnan(self._similarity[m])]
            out[f"grid{m}_similarity"] = float(measured.mean()) if len(measured) else math.nan
        return out
