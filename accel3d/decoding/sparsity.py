"""How local is a geo decoder's cross-attention? The measurement behind adaptive KV.

FlashVDM's premise is that a query point puts nearly all its attention on a few
latent tokens, and that nearby points share them. :func:`attention_sparsity`
measures both on real queries: the keys one query needs to cover a share of its
attention mass, and the keys a whole spatial cell needs (the union over the
cell's queries), which is what a per-cell selection must keep.

Example::

    stats = attention_sparsity(vae.geo_decoder, kv, points_near_surface, cells=6)
    stats["query_keys_90"], stats["cell_keys_90"]   # e.g. 12.3 and 140.0 of 1024
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from accel3d.core.hooks import PatchSet
from accel3d.core.validate import check_float
from accel3d.decoding.kv_selection import plan_cells
from accel3d.geometry.grid import DEFAULT_BOUND


def keys_for_mass(probs: Tensor, mass: float) -> Tensor:
    """Per row of ``probs`` (..., Nk): the fewest keys whose probabilities sum to ``mass``."""
    return _needed(probs.sort(-1, descending=True).values.cumsum(-1), mass)


def _needed(cumulative: Tensor, mass: float) -> Tensor:
    return (cumulative < mass).sum(-1) + 1


@torch.no_grad()
def attention_sparsity(
    geo_decoder: Any,
    kv: tuple[Tensor, Tensor],
    points: Tensor,
    cells: int = 6,
    masses: tuple[float, ...] = (0.9, 0.99),
    attention: str = "cross_attn_decoder.attn",
    bound: float = DEFAULT_BOUND,
) -> dict[str, float]:
    """Mean keys per query, and per cell, that hold each share of the attention mass.

    ``points`` (N, 3) are decoded once through ``geo_decoder.query`` while its attention's
    ``attend(q, k, v)`` is observed. Returns ``query_keys_<m>`` (mean over queries and heads),
    ``cell_keys_<m>`` (mean over non-empty cells and heads of the union of their queries'
    key sets) and ``num_keys``, with ``<m>`` the mass in percent.
    """
    if isinstance(masses, str | bytes) or not isinstance(masses, tuple | list) or not masses:
        raise ValueError(f"masses: expected a non-empty list of attention shares in (0, 1], got {masses!r}")
    for i, mass in enumerate(masses):
        check_float(f"masses[{i}]", mass, low=0.0, low_open=True, high=1.0)
    attn = geo_decoder
    for part in attention.split("."):
        if not hasattr(attn, part):
            raise AttributeError(f"attention: {type(geo_decoder).__name__} has no module at '{attention}' (missing '{part}')")
        attn = getattr(attn, part)
    seen: dict[str, Tensor] = {}

    def observe(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        seen["q"], seen["k"] = q[0], k[0]
        return type(attn).attend(attn, q, k, v)

    patches = PatchSet()
    patches.set(attn, "attend", observe)
    try:
        geo_decoder.query(points[None], kv)
    finally:
        patches.restore()
    q, k = seen["q"].float(), seen["k"].float()
    probs = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)  # (H, N, Nk)
    plan = plan_cells(points, cells, bound)
    out: dict[str, float] = {"num_keys": float(k.shape[1]), "queries": float(len(points))}
    ranked, order = probs.sort(-1, descending=True)  # once for every mass
    cumulative = ranked.cumsum(-1)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(probs.shape[-1]).expand_as(order))
    for mass in masses:
        tag = f"{round(100 * mass)}"
        needed = _needed(cumulative, mass)
        out[f"query_keys_{tag}"] = needed.float().mean().item()
        # a query's key set: its top keys up to `mass`; a cell needs the union over its queries
        member = rank < needed[..., None]  # (H, N, Nk)
        sizes = []
        for c in range(plan.num_cells):
            lo, hi = int(plan.cell_offsets[c]), int(plan.cell_offsets[c + 1])
            if hi > lo:
                sizes.append(member[:, plan.order[lo:hi]].any(1).sum(-1).float().mean())
        out[f"cell_keys_{tag}"] = torch.stack(sizes).mean().item()
    return out
