"""FlashVDM's adaptive KV selection for the cross-attention of a vecset decoder.

Query points near each other attend to nearly the same few latent tokens. So the
points of a call are split into spatial cells, a few sampled queries per cell
score the keys, and each cell's queries then attend only to the keys it kept:

- ``mean`` mode keeps the top-K keys by the mean logit ``q . k`` over the cell's
  sampled queries (FlashVDM's default, every 50th query);
- ``merge`` mode keeps the union of keys whose softmax probability exceeds
  ``threshold`` for any sampled query (FlashVDM's "TopM" variant, every 30th
  query), plus each sampled query's most probable key, so no list is empty.

- ``mass`` mode (accel3d's, error-bounded) keeps, per cell, the union over its
  sampled queries of the fewest keys that hold ``mass`` (1 - 1e-6) of each one's
  attention. A check then compares, on a few other queries of
  each cell, the attention output over the kept keys with the output over all
  keys; a cell whose relative error exceeds ``tolerance`` falls back to all keys
  (counted in ``Selection.fallback_cells``).

Selection is per head (each head its own keys) or shared across heads (scores
averaged over heads). FlashVDM selects per head in ``mean`` mode and shared in
``merge`` mode; those are the defaults here, and ``mass`` mode shares too.

Example::

    from accel3d.kernels import packed_sparse_attention

    plan = plan_cells(points, cells=6)                 # sort order + cell offsets
    q_sorted = q[:, plan.order]                        # q, k, v: (H, N, D), (H, Nk, D), (H, Nk, D)
    sel = KVSelector(mode="mean").select(q_sorted, k, plan.cell_offsets)   # Hunyuan3D-2's K rule
    out = packed_sparse_attention(q_sorted, k, v, plan.cell_offsets, sel.kv_offsets, sel.kv_indices)
    out = out[:, plan.inverse]                         # back in the points' order
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from accel3d.core.validate import check_float, check_int
from accel3d.decoding.config import AdaptiveKVConfig
from accel3d.geometry.grid import DEFAULT_BOUND

SAMPLE_EVERY = {"mean": 50, "merge": 30, "mass": 30}  # FlashVDM's strides at its finer levels
MERGE_CHUNK = 8192  # sampled queries scored at once in merge mode


def default_topk(num_keys: int) -> int:
    """Hunyuan3D-2's K: 1024 of 3072 tokens, 256 of 512, otherwise a third."""
    return {3072: 1024, 512: 256}.get(num_keys, max(1, num_keys // 3))


def resolve_topk(topk: int | None, num_keys: int, ratio: float | None = None) -> int:
    """K from a count ``topk`` (capped at ``num_keys``), a share ``ratio`` in (0, 1] of the keys,
    or neither (the Hunyuan3D-2 rule). A count is an int and a share a float, so ``1.0`` is
    never read as one key."""
    check_topk(topk, ratio)
    check_int("num_keys", num_keys, low=1)
    if topk is not None:
        return min(topk, num_keys)
    if ratio is not None:
        return max(1, min(num_keys, math.ceil(ratio * num_keys)))
    return default_topk(num_keys)


def check_topk(topk: object, ratio: object) -> None:
    """Refuse a non-int count, a ratio outside (0, 1], or both given."""
    AdaptiveKVConfig.check_knob("topk", topk)
    AdaptiveKVConfig.check_knob("topk_ratio", ratio)
    if topk is not None and ratio is not None:
        raise ValueError(f"topk, topk_ratio: give a count of keys or a share of them, not both (got {topk!r} and {ratio!r})")


@dataclass
class CellPlan:
    """Points sorted by spatial cell: ``points[order]`` is grouped, cell ``c`` owns
    rows ``cell_offsets[c]:cell_offsets[c + 1]``, and ``sorted_values[inverse]`` undoes the sort.

    Example::

        plan = plan_cells(points, cells=4)
        first_cell = points[plan.order][plan.cell_offsets[0] : plan.cell_offsets[1]]
    """

    order: Tensor
    inverse: Tensor
    cell_offsets: Tensor

    @property
    def num_cells(self) -> int:
        return len(self.cell_offsets) - 1

    @property
    def num_points(self) -> int:
        return len(self.order)


def plan_cells(points: Tensor, cells: int = 6, bound: float = DEFAULT_BOUND) -> CellPlan:
    """Bucket ``points`` (N, 3) into a fixed ``cells``^3 grid over ``[-bound, bound]^3``.

    The grid is fixed in space, so it does not depend on how a decoder chunks its
    queries; points outside the box fall into the border cells.
    """
    if not isinstance(points, Tensor) or points.ndim != 2 or points.shape[-1] != 3 or not points.is_floating_point():
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"points: expected a floating-point (N, 3) tensor, got {shape}")
    AdaptiveKVConfig.check_knob("cells", cells)
    bound = AdaptiveKVConfig.check_knob("bound", bound)
    if not bool(torch.isfinite(points).all()):
        raise ValueError("points: NaN or inf coordinates cannot be placed in a cell")
    ijk = ((points.float() + bound) * (cells / (2 * bound))).floor().long().clamp_(0, cells - 1)
    cell = (ijk[:, 0] * cells + ijk[:, 1]) * cells + ijk[:, 2]
    order = torch.argsort(cell, stable=True)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    counts = torch.bincount(cell, minlength=cells**3)
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return CellPlan(order, inverse, offsets)


@dataclass
class Selection:
    """Compressed key lists in the layout :func:`accel3d.kernels.packed_sparse_attention` takes.

    Example::

        sel = KVSelector("merge").select(q_sorted, k, plan.cell_offsets)
        keys_of_cell_0 = sel.kv_indices[sel.kv_offsets[0] : sel.kv_offsets[1]]   # groups == 1
    """

    kv_offsets: Tensor
    kv_indices: Tensor
    groups: int  # 1: one list per cell shared by all heads; H: one list per cell and head
    keys_per_query: float  # mean number of keys a query attends to (averaged over heads)
    checked_cells: int = 0  # cells the error check looked at (mass mode)
    fallback_cells: int = 0  # of those, cells whose kept keys moved the output: they keep every key
    max_error: float = 0.0  # the largest relative error the check measured after the fallback
    cells_above_tolerance: int = 0  # mean and merge modes: cells the check found moved, left as they are


class KVSelector:
    """Chooses, per cell, which keys its queries attend to.

    Example::

        selector = KVSelector(mode="merge", threshold=1e-6)
        sel = selector.select(q_sorted, k, plan.cell_offsets)   # q (H, N, D), k (H, Nk, D)
        sel.keys_per_query                                      # e.g. 212.4 of 1024
    """

    def __init__(
        self,
        mode: str = "mean",
        topk: int | None = None,
        per_head: bool | None = None,
        sample_every: int | None = None,
        threshold: float = AdaptiveKVConfig.threshold,
        topk_ratio: float | None = None,
        mass: float = AdaptiveKVConfig.mass,
        tolerance: float = AdaptiveKVConfig.tolerance,
        check: bool = AdaptiveKVConfig.check,
    ) -> None:
        # The limits are the adaptive_kv accelerator's, declared once in AdaptiveKVConfig; the default mode here
        # is FlashVDM's (mean), the accelerator's is the error-bounded mass mode.
        knob = AdaptiveKVConfig.check_knob
        self.mode = knob("mode", mode)
        self.mass = knob("mass", mass)
        self.tolerance = knob("tolerance", tolerance)
        self.check = knob("check", check)
        check_topk(topk, topk_ratio)  # resolved against the real key count at selection time
        knob("per_head", per_head)
        self.sample_every = SAMPLE_EVERY[mode] if sample_every is None else knob("sample_every", sample_every)
        self.threshold = knob("threshold", threshold)
        self.topk = topk
        self.topk_ratio = topk_ratio
        self.per_head = (mode == "mean") if per_head is None else per_head

    def _sampled(self, q: Tensor, cell_offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled queries (H, S, D) in fp32, their cells (S,), and rows per cell (C,)."""
        counts = cell_offsets[1:] - cell_offsets[:-1]
        cell_of_row = torch.repeat_interleave(torch.arange(len(counts), device=q.device), counts)
        rank = torch.arange(q.shape[1], device=q.device) - cell_offsets[:-1][cell_of_row]
        sampled = rank % self.sample_every == 0  # every cell with rows has its first row sampled
        return q[:, sampled].float(), cell_of_row[sampled], counts

    def select(self, q: Tensor, k: Tensor, cell_offsets: Tensor, scale: float | None = None, v: Tensor | None = None) -> Selection:
        """Key lists for queries ``q`` (H, N, D) sorted by cell, keys ``k`` (H, Nk, D).

        ``scale`` is the attention's logit scale (default ``D ** -0.5``); merge and mass
        modes' probabilities depend on it, mean mode's ranking does not. Mass mode
        needs the values ``v`` (H, Nk, Dv) for its error check.
        """
        if q.ndim != 3 or k.ndim != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
            raise ValueError(f"KVSelector.select: q (H, N, D) and k (H, Nk, D) must agree, got {tuple(q.shape)} and {tuple(k.shape)}")
        if cell_offsets.ndim != 1 or cell_offsets.dtype not in (torch.int32, torch.int64) or len(cell_offsets) < 2:
            raise ValueError(
                f"KVSelector.select: cell_offsets must be a 1-D integer tensor of C + 1 >= 2 entries, got {tuple(cell_offsets.shape)}"
            )
        if int(cell_offsets[0]) != 0 or int(cell_offsets[-1]) != q.shape[1] or bool((cell_offsets[1:] < cell_offsets[:-1]).any()):
            raise ValueError(f"KVSelector.select: cell_offsets must rise from 0 to the {q.shape[1]} queries")
        if k.shape[1] < 1 or q.shape[-1] < 1:
            raise ValueError(f"KVSelector.select: expected at least one key and a head dim >= 1, got k of shape {tuple(k.shape)}")
        scale = q.shape[-1] ** -0.5 if scale is None else check_float("scale", scale, low=0.0, low_open=True)
        heads, num_keys = k.shape[0], k.shape[1]
        q_sampled, sample_cell, counts = self._sampled(q, cell_offsets)
        kf = k.float()
        # Finite queries and keys give finite logits; checking the inputs is cheaper than the scores.
        if not (torch.isfinite(q_sampled).all() and torch.isfinite(kf).all()):
            raise FloatingPointError("adaptive KV selection: NaN or inf in the queries or keys; refusing to pick keys from their scores")
        cells = len(counts)
        groups = heads if self.per_head else 1
        if self.mode == "mean":
            # The mean logit over a cell's sampled queries is (their summed q) . k up to a per-cell
            # factor, so sum the queries first: (H, C, D) instead of (H, S, Nk) in memory.
            q_cell = q_sampled.new_zeros(heads, cells, q.shape[-1]).index_add_(1, sample_cell, q_sampled)
            scores = q_cell @ kf.transpose(-1, -2)  # (H, C, Nk)
            if not self.per_head:
                scores = scores.sum(0, keepdim=True)
            K = resolve_topk(self.topk, num_keys, self.topk_ratio)
            # (G, C, K) -> per-cell lists in cell-major order, ascending indices for memory locality
            idx = scores.topk(K, dim=-1).indices.sort(-1).values.transpose(0, 1).reshape(-1)
            offsets = torch.arange(cells * groups + 1, device=k.device) * K
            return self._checked(Selection(offsets, idx, groups, float(K)), q, kf, v, counts, cell_offsets, scale)
        if self.mode == "mass":
            if v is None or v.ndim != 3 or v.shape[:2] != k.shape[:2]:
                got = None if v is None else tuple(v.shape)
                raise ValueError(f"KVSelector.select: mass mode needs the values v (H, Nk, Dv) for its check, got {got}")
            return self._select_mass(q, kf, v.float(), q_sampled, sample_cell, counts, cell_offsets, scale, groups)

        def above_threshold(probs: Tensor) -> Tensor:
            active = probs > self.threshold
            return active.scatter_(-1, probs.argmax(-1, keepdim=True), True)  # never an empty list for a cell with queries

        keep = self._union_per_cell(q_sampled, kf, sample_cell, cells, scale, groups, above_threshold)
        return self._checked(self._lists(keep, counts, groups), q, kf, v, counts, cell_offsets, scale, keep)

    def _union_per_cell(
        self, q_sampled: Tensor, kf: Tensor, sample_cell: Tensor, cells: int, scale: float, groups: int,
        pick: Callable[[Tensor], Tensor],
    ) -> Tensor:  # fmt: skip
        """(C, G, Nk): per cell, the union over its sampled queries of the keys ``pick(probs)`` marks.

        Shared across heads (``groups == 1``), a query's probabilities are its heads' mean (FlashVDM).
        """
        hits = torch.zeros(groups, cells, kf.shape[1], dtype=torch.int32, device=kf.device)
        for lo in range(0, q_sampled.shape[1], MERGE_CHUNK):  # bounded memory: (H, chunk, Nk) at a time
            probs = (q_sampled[:, lo : lo + MERGE_CHUNK] @ kf.transpose(-1, -2) * scale).softmax(-1)
            if groups == 1:
                probs = probs.mean(0, keepdim=True)
            hits.index_add_(1, sample_cell[lo : lo + MERGE_CHUNK], pick(probs).to(torch.int32))
        return (hits > 0).transpose(0, 1).contiguous()

    @staticmethod
    def _lists(keep: Tensor, counts: Tensor, groups: int, **check: Any) -> Selection:
        """The compressed key lists of a (C, G, Nk) keep mask, and the mean keys a query attends to."""
        per_segment = keep.sum(-1).reshape(-1)
        offsets = torch.cat([per_segment.new_zeros(1), per_segment.cumsum(0)])
        idx = keep.reshape(-1, keep.shape[-1]).nonzero()[:, 1]
        kept_per_cell = keep.sum(-1).float().mean(-1)  # (C,) averaged over groups
        keys_per_query = float((kept_per_cell * counts).sum() / counts.sum().clamp(min=1))
        return Selection(offsets, idx, groups, keys_per_query, **check)

    def _checked(
        self, sel: Selection, q: Tensor, kf: Tensor, v: Tensor | None, counts: Tensor, cell_offsets: Tensor, scale: float,
        keep: Tensor | None = None,
    ) -> Selection:  # fmt: skip
        """FlashVDM's modes with the error check on (and ``v`` given): measured and counted, never changed."""
        if not self.check or v is None:
            return sel
        if keep is None:  # (C, G, Nk) from the equal-length lists of mean mode
            keep = torch.zeros(len(counts) * sel.groups, kf.shape[1], dtype=torch.bool, device=kf.device)
            keep.scatter_(1, sel.kv_indices.view(len(keep), -1), True)
            keep = keep.view(len(counts), sel.groups, -1)
        checked, above, _ = self._check(q, kf, v.float(), keep, counts, cell_offsets, scale)
        sel.checked_cells, sel.fallback_cells = checked, 0
        sel.cells_above_tolerance = int(above.sum())
        return sel

    def _select_mass(
        self, q: Tensor, kf: Tensor, vf: Tensor, q_sampled: Tensor, sample_cell: Tensor, counts: Tensor,
        cell_offsets: Tensor, scale: float, groups: int,
    ) -> Selection:  # fmt: skip
        """Mass mode: per sampled query the fewest keys holding ``mass`` of its attention, their union per cell, then the check."""

        def covering(probs: Tensor) -> Tensor:  # the fewest keys whose mass reaches the target, per query
            ordered, order = probs.sort(-1, descending=True)
            return torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, order, (ordered.cumsum(-1) - ordered) < self.mass)

        # cells without queries keep nothing: they have no rows to attend
        keep = self._union_per_cell(q_sampled, kf, sample_cell, len(counts), scale, groups, covering)
        if not self.check:
            return self._lists(keep, counts, groups)
        checked, fallback, worst = self._check(q, kf, vf, keep, counts, cell_offsets, scale)
        keep[fallback] = True
        return self._lists(keep, counts, groups, checked_cells=checked, fallback_cells=int(fallback.sum()), max_error=worst)

    def _check(
        self, q: Tensor, kf: Tensor, vf: Tensor, keep: Tensor, counts: Tensor, cell_offsets: Tensor, scale: float
    ) -> tuple[int, Tensor, float]:
        """Relative error of the kept-key output against the all-key output on each cell's check queries.

        The check queries sit halfway between the sampled ones (rank ``sample_every // 2`` and every
        ``sample_every`` after it; a cell with fewer rows checks its last one), so they did not pick the keys.
        Returns the cells checked, a (C,) mask of those above ``tolerance``, and the largest error left after it.
        """
        cells = len(counts)
        cell_of_row = torch.repeat_interleave(torch.arange(cells, device=q.device), counts)
        rank = torch.arange(q.shape[1], device=q.device) - cell_offsets[:-1][cell_of_row]
        half = self.sample_every // 2
        rows = (rank % self.sample_every == half) | ((rank == counts[cell_of_row] - 1) & (counts[cell_of_row] <= half))
        q_check, check_cell = q[:, rows].float(), cell_of_row[rows]
        error = torch.zeros(cells, device=q.device)
        for lo in range(0, q_check.shape[1], MERGE_CHUNK):
            qc, cc = q_check[:, lo : lo + MERGE_CHUNK], check_cell[lo : lo + MERGE_CHUNK]
            probs = (qc @ kf.transpose(-1, -2) * scale).softmax(-1)  # (H, S, Nk)
            full = probs @ vf
            mask = keep[cc].transpose(0, 1)  # (G, S, Nk), broadcast over heads when shared
            kept = probs * mask
            part = (kept @ vf) / kept.sum(-1, keepdim=True).clamp(min=1e-30)  # softmax over the kept keys alone
            rel = (part - full).norm(dim=-1) / full.norm(dim=-1).clamp(min=1e-12)  # (H, S)
            error.scatter_reduce_(0, cc, rel.amax(0), reduce="amax")
        checked = int(torch.unique(check_cell).numel())
        above = error > self.tolerance
        worst = float(error[~above].max()) if (~above).any() else 0.0
        return checked, above, worst
