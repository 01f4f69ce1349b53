"""Error-bounded adaptive KV (mass mode): key counts follow the attention, the check falls back, and it runs exactly."""

from __future__ import annotations

import pytest
import torch

from accel3d.decoding import AdaptiveKVSelection, KVSelector, plan_cells
from accel3d.kernels import packed_sparse_attention

ONE_CELL = torch.tensor([0, 60])


def _keys(nk: int = 64, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = torch.nn.functional.normalize(torch.randn(1, nk, d, generator=g), dim=-1)
    v = torch.randn(1, nk, d, generator=g)
    return k, v


def test_mass_mode_keeps_every_key_for_uniform_attention_and_few_for_one_hot():
    k, v = _keys()
    uniform = KVSelector("mass").select(torch.zeros(1, 60, 16), k, ONE_CELL, v=v)  # q = 0: every key equally likely
    assert uniform.keys_per_query == 64 and uniform.fallback_cells == 0
    sharp = k[:, [7]].expand(1, 60, 16) * 60.0  # every query points at key 7, logits far apart
    one_hot = KVSelector("mass", mass=0.995).select(sharp, k, ONE_CELL, v=v)
    kept = one_hot.kv_indices[one_hot.kv_offsets[0] : one_hot.kv_offsets[1]].tolist()
    assert 7 in kept and len(kept) <= 3 and one_hot.fallback_cells == 0 and one_hot.checked_cells == 1


def test_a_cell_whose_other_queries_look_elsewhere_falls_back_to_every_key():
    k, v = _keys()
    q = k[:, [3]].expand(1, 60, 16).clone() * 60.0  # the sampled rows (0, 30) attend to key 3 ...
    q[:, 15] = k[0, 40] * 60.0  # ... the check row 15 to key 40, which the selection left out
    crafted = KVSelector("mass", mass=0.995).select(q, k, ONE_CELL, v=v)
    assert crafted.fallback_cells == 1 and crafted.keys_per_query == 64
    unchecked = KVSelector("mass", mass=0.995, check=False).select(q, k, ONE_CELL, v=v)
    assert unchecked.fallback_cells == 0 and unchecked.keys_per_query < 4
    measured = KVSelector("mean", topk=2, sample_every=30).select(q, k, ONE_CELL, v=v)  # FlashVDM's mode: measured, kept
    assert measured.cells_above_tolerance == 1 and measured.keys_per_query == 2


def test_on_local_attention_few_keys_reproduce_full_attention_within_the_tolerance():
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(256, 3, generator=g) * 2 - 1  # keys at positions
    anchors = torch.tensor([[-0.5, -0.5, -0.5], [0.5, -0.5, 0.5], [-0.5, 0.5, 0.5], [0.5, 0.5, -0.5]])
    qpos = (anchors[:, None] + 0.05 * torch.randn(4, 150, 3, generator=g)).reshape(-1, 3)  # one cluster per 2^3 cell
    plan = plan_cells(qpos, cells=2, bound=1.0)
    beta = 40.0  # q . k = 2 beta x . p - beta |p|^2 = -beta |x - p|^2 + (a term of the query alone): a distance bias
    q = torch.cat([2 * beta * qpos[plan.order], torch.ones(600, 1)], -1)[None]
    k = torch.cat([pos, -beta * pos.square().sum(-1, keepdim=True)], -1)[None]
    v = torch.randn(1, 256, 4, generator=g)
    sel = KVSelector("mass", sample_every=10).select(q, k, plan.cell_offsets, scale=1.0, v=v)
    assert sel.checked_cells == 4 and sel.fallback_cells <= 1  # a cell whose check query falls outside the cover keeps all
    assert sel.keys_per_query < 128  # local attention: half of the keys or fewer
    out = packed_sparse_attention(q, k, v, plan.cell_offsets, sel.kv_offsets, sel.kv_indices, scale=1.0, backend="torch")
    full = torch.softmax(q[0] @ k[0].T, -1) @ v[0]
    rel = (out[0] - full).norm(dim=-1) / full.norm(dim=-1)
    assert float(rel.median()) < 0.005 and float(rel.quantile(0.99)) < 0.05


def test_bad_mass_knobs_name_the_argument():
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"^mass: expected"):
            KVSelector("mass", mass=bad)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"^tolerance: expected"):
            AdaptiveKVSelection(mode="mass", tolerance=bad)
    with pytest.raises(ValueError, match=r"^dense_above: expected"):
        AdaptiveKVSelection(mode="mass", dense_above=0.0)
    k, v = _keys()
    with pytest.raises(ValueError, match=r"mass mode needs the values v"):
        KVSelector("mass").select(torch.zeros(1, 60, 16), k, ONE_CELL)
