"""Adaptive KV selection: K rules, spatial cells, mean/merge selection and the adaptive_kv accelerator."""

from __future__ import annotations

import math

import pytest
import torch

from accel3d.core import Stack
from accel3d.decoding import AdaptiveKVSelection, HierarchicalDecoding, KVSelector, plan_cells, resolve_topk
from accel3d.models.vecset.vae import VecsetVAE, VecsetVAEConfig


def test_topk_rules():
    assert resolve_topk(None, 3072) == 1024 and resolve_topk(None, 512) == 256 and resolve_topk(None, 300) == 100
    assert resolve_topk(None, 100, ratio=0.25) == 25 and resolve_topk(None, 100, ratio=0.001) == 1
    assert resolve_topk(None, 100, ratio=1.0) == 100  # a ratio of 1.0 keeps every key, never one
    assert resolve_topk(64, 100) == 64 and resolve_topk(500, 100) == 100
    for bad in (0, -3, 0.0, 1.0, 8.0, float("nan"), 0.25, True, "all"):  # a count is an int
        with pytest.raises(ValueError, match="^topk: expected an integer >= 1 or None"):
            resolve_topk(bad, 100)
    for bad in (0.0, -0.1, 1.5, float("nan"), float("inf"), "0.5", True):
        with pytest.raises(ValueError, match="^topk_ratio: expected a finite number > 0 and <= 1"):
            resolve_topk(None, 100, ratio=bad)
    with pytest.raises(ValueError, match="topk, topk_ratio: give a count of keys or a share of them, not both"):
        resolve_topk(10, 100, ratio=0.5)


def test_plan_cells_groups_points_and_inverts():
    g = torch.Generator().manual_seed(0)
    points = torch.rand(500, 3, generator=g) * 2.4 - 1.2  # some outside the box: border cells
    plan = plan_cells(points, cells=4, bound=1.0)
    assert plan.num_cells == 64 and int(plan.cell_offsets[-1]) == 500
    ijk = ((points[plan.order] + 1.0) * 2).floor().long().clamp(0, 3)
    cell = (ijk[:, 0] * 4 + ijk[:, 1]) * 4 + ijk[:, 2]
    for c in range(64):
        assert torch.all(cell[plan.cell_offsets[c] : plan.cell_offsets[c + 1]] == c)
    assert torch.equal(points[plan.order][plan.inverse], points)


def _sorted_problem(seed=0, heads=2, n=400, nk=48, d=8):
    g = torch.Generator().manual_seed(seed)
    plan = plan_cells(torch.rand(n, 3, generator=g) * 2 - 1, cells=2)
    q = torch.randn(heads, n, d, generator=g)[:, plan.order]
    k = torch.randn(heads, nk, d, generator=g) * 2
    return q, k, plan


@pytest.mark.parametrize("per_head", [True, False])
def test_mean_mode_keeps_the_top_keys_of_each_cell(per_head):
    q, k, plan = _sorted_problem()
    sel = KVSelector("mean", topk=10, per_head=per_head, sample_every=3).select(q, k, plan.cell_offsets)
    groups = q.shape[0] if per_head else 1
    assert sel.groups == groups and len(sel.kv_offsets) == plan.num_cells * groups + 1 and sel.keys_per_query == 10
    for c in range(plan.num_cells):
        lo, hi = int(plan.cell_offsets[c]), int(plan.cell_offsets[c + 1])
        scores = (q[:, lo:hi:3] @ k.transpose(-1, -2)).mean(1)  # (H, Nk): mean logit of the sampled queries
        if not per_head:
            scores = scores.mean(0, keepdim=True)
        for h in range(groups):
            s = c * groups + h
            kept = set(sel.kv_indices[sel.kv_offsets[s] : sel.kv_offsets[s + 1]].tolist())
            assert kept == set(scores[h].topk(10).indices.tolist())


def test_merge_mode_keeps_every_key_above_the_threshold():
    q, k, plan = _sorted_problem(seed=1)
    threshold = 0.01
    sel = KVSelector("merge", threshold=threshold, sample_every=2).select(q, k, plan.cell_offsets)
    assert sel.groups == 1  # FlashVDM's merge mode is shared across heads
    for c in range(plan.num_cells):
        lo, hi = int(plan.cell_offsets[c]), int(plan.cell_offsets[c + 1])
        probs = ((q[:, lo:hi:2] @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])).softmax(-1).mean(0)
        expected = set((probs > threshold).any(0).nonzero()[:, 0].tolist()) | set(probs.argmax(-1).tolist())
        kept = sel.kv_indices[sel.kv_offsets[c] : sel.kv_offsets[c + 1]].tolist()
        assert set(kept) == expected and kept == sorted(kept)


def test_nan_scores_never_select_keys():
    q, k, plan = _sorted_problem()
    q[0, 5, 0] = float("nan")
    for mode in ("mean", "merge"):
        with pytest.raises(FloatingPointError, match="NaN or inf"):
            KVSelector(mode, sample_every=1).select(q, k, plan.cell_offsets)


def test_merge_mode_keeping_every_key_matches_dense_through_the_packed_path(local_vae):
    vae, latents = local_vae
    field = vae.field(latents)
    points = _points(seed=3)
    acc = AdaptiveKVSelection(mode="merge", threshold=0.0, cells=4)  # every key passes: selection + packed kernel, no shortcut
    with acc.applied(vae.geo_decoder):
        sparse = field(points)
    assert acc.stats()["key_fraction"] == 1.0 and acc.stats()["calls"] == 1
    torch.testing.assert_close(sparse, field(points), atol=1e-5, rtol=1e-5)


def test_select_checks_cell_offsets():
    q, k, plan = _sorted_problem()
    with pytest.raises(ValueError, match="cell_offsets must rise from 0 to the 400 queries"):
        KVSelector().select(q, k, plan.cell_offsets[:-1])
    with pytest.raises(ValueError, match="1-D integer tensor"):
        KVSelector().select(q, k, plan.cell_offsets.float())


def test_selector_arguments_are_checked():
    with pytest.raises(ValueError, match="mode"):
        KVSelector("max")
    with pytest.raises(ValueError, match="topk"):
        KVSelector(topk=0)
    with pytest.raises(ValueError, match="sample_every"):
        KVSelector(sample_every=0)
    with pytest.raises(ValueError, match="threshold"):
        KVSelector("merge", threshold=1.0)
    with pytest.raises(ValueError, match="cells"):
        AdaptiveKVSelection(cells=0)
    with pytest.raises(ValueError, match="bound: expected a finite number > 0"):
        AdaptiveKVSelection(bound=-1.0)
    with pytest.raises(ValueError, match="backend: expected one of"):
        AdaptiveKVSelection(backend="cuda")
    with pytest.raises(ValueError, match="attention: expected a dotted attribute path"):
        AdaptiveKVSelection(attention="")
    with pytest.raises(ValueError, match="scale"):
        AdaptiveKVSelection(scale=0.0)


def test_attention_called_with_other_queries_falls_back_to_dense_and_says_so(local_vae):
    vae, latents = local_vae
    attn = vae.geo_decoder.cross_attn_decoder.attn
    original_query = type(vae.geo_decoder).query

    def split_query(points, kv):  # a decoder that chunks its queries inside query()
        return torch.cat([original_query(vae.geo_decoder, p, kv) for p in points.split(100, dim=1)], dim=1)

    vae.geo_decoder.query = split_query
    try:
        field = vae.field(latents)
        points = _points(300)
        dense = field(points)
        acc = AdaptiveKVSelection(mode="mean", topk=4)
        with acc.applied(vae.geo_decoder), pytest.warns(UserWarning, match="using dense attention"):
            out = field(points)
        assert acc.stats()["dense_fallbacks"] == 3 and torch.allclose(out, dense, atol=1e-6)
        assert "attend" not in vars(attn)
    finally:
        del vae.geo_decoder.query


# ---- the accelerator on a VAE ------------------------------------------------------------------


@pytest.fixture
def local_vae():
    """A small random VAE and latents."""
    torch.manual_seed(0)
    vae = VecsetVAE(VecsetVAEConfig(num_latents=96, embed_dim=8, width=32, heads=2, num_decoder_layers=1)).eval()
    return vae, torch.randn(1, 96, 8)


@pytest.fixture
def one_thread():
    """Bit-exactness of a dense call on sorted rows against one on unsorted rows holds with one thread
    (several threads may split the rows of a matmul differently); the suite's order used to hide this."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _points(n=3000, seed=0):
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) * 2.02 - 1.01


def test_keeping_every_key_is_bit_identical_and_detach_restores(local_vae):
    vae, latents = local_vae
    field = vae.field(latents)
    points = _points()
    before = field(points)
    acc = AdaptiveKVSelection(mode="mean", topk=96)
    with acc.applied(vae.geo_decoder):
        assert torch.equal(field(points), before)
    assert acc.stats()["key_fraction"] == 1.0
    sparse = AdaptiveKVSelection(mode="mean", topk=8)
    with sparse.applied(vae.geo_decoder):
        assert not torch.equal(field(points), before)  # it does change the computation
    assert "query" not in vars(vae.geo_decoder) and "attend" not in vars(vae.geo_decoder.cross_attn_decoder.attn)
    assert torch.equal(field(points), before)


@pytest.mark.parametrize("mode", ["mean", "merge"])
def test_sparse_output_is_close_and_in_caller_order(local_vae, mode):
    vae, latents = local_vae
    field = vae.field(latents)
    points = _points(seed=1)
    dense = field(points)
    acc = AdaptiveKVSelection(mode=mode, topk=48, threshold=0.02, cells=4)  # random weights: diffuse attention
    with acc.applied(vae.geo_decoder):
        sparse = field(points)
    stats = acc.stats()
    assert stats["queries"] == len(points) and stats["key_fraction"] == pytest.approx(stats["keys_per_query"] / 96)
    if mode == "mean":  # topk keys for every cell
        assert stats["keys_per_query"] == 48
    else:  # the keys above 0.02 for some sampled query of the cell: with diffuse attention few (measured 14.8 of 96)
        assert stats["keys_per_query"] < 24
    # Random weights attend diffusely, so dropping keys costs some accuracy; but each output must
    # belong to its own point: far closer to the dense value there than to other points' values.
    error = (sparse - dense).abs().mean()
    assert error < 0.25 * dense.abs().mean()
    assert error < 0.5 * (sparse - dense[torch.randperm(len(dense))]).abs().mean()


def test_triton_backend_matches_torch_through_the_accelerator(local_vae):
    vae, latents = local_vae
    field = vae.field(latents)
    points = _points(600, seed=2)
    outs = {}
    for backend in ("torch", "triton"):
        with AdaptiveKVSelection(mode="merge", threshold=1e-3, cells=3, backend=backend).applied(vae.geo_decoder):
            outs[backend] = field(points)
    torch.testing.assert_close(outs["triton"], outs["torch"], atol=1e-5, rtol=1e-5)


def test_attach_errors_name_what_is_missing(local_vae):
    vae, _ = local_vae
    with pytest.raises(AttributeError, match="no attention module at 'decoder.attn'"):
        AdaptiveKVSelection(attention="decoder.attn").attach(vae.geo_decoder)
    with pytest.raises(TypeError, match=r"query\(points, kv\)"):
        AdaptiveKVSelection().attach(torch.nn.Linear(2, 2))


def test_stacks_with_hierarchical_decoding_on_the_pipeline(tiny_weights):
    from accel3d.models.vecset.pipeline import VecsetShapePipeline

    pipe = VecsetShapePipeline(weights=str(tiny_weights), resolution=32, num_points=256, progress=False)
    inputs = pipe.load_inputs()
    stack = Stack([HierarchicalDecoding(min_resolution=16), AdaptiveKVSelection(mode="mean", topk=4)])
    with stack.applied(pipe):
        pipe.run(inputs)
    stats = stack.stats()
    assert stats["adaptive_kv"]["keys_per_query"] == 4 and stats["hierarchical"]["calls"] == 1


def test_attention_sparsity_measures_keys_for_mass(local_vae):
    from accel3d.decoding.sparsity import attention_sparsity, keys_for_mass

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]])
    assert keys_for_mass(probs, 0.9).tolist() == [3, 1] and keys_for_mass(probs, 0.99).tolist() == [4, 3]
    vae, latents = local_vae
    kv = vae.geo_decoder.keys_values(vae.decode(latents))
    points = _points(500)
    stats = attention_sparsity(vae.geo_decoder, kv, points, cells=3)
    attn = vae.geo_decoder.cross_attn_decoder.attn
    assert "attend" not in vars(attn)
    # The same measurement by hand: the decoder's attention probabilities, each query's smallest key set
    # holding the mass, and for each of the 3^3 cells of [-1.01, 1.01]^3 the union of its queries' sets.
    seen, attend = {}, attn.attend
    attn.attend = lambda q, k, v: seen.update(q=q[0].float(), k=k[0].float()) or attend(q, k, v)
    try:
        with torch.no_grad():
            vae.geo_decoder.query(points[None], kv)
    finally:
        del attn.attend
    q, k = seen["q"], seen["k"]
    probs = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)  # (heads, queries, keys)
    cell = ((points + 1.01) / 2.02 * 3).long().clamp(0, 2)
    cell = (cell * torch.tensor([9, 3, 1])).sum(1).tolist()
    assert stats["num_keys"] == 96 and stats["queries"] == 500
    for mass, tag in ((0.9, "90"), (0.99, "99")):
        needed = keys_for_mass(probs, mass)  # (heads, queries)
        top = [[set(p.argsort(descending=True)[:n].tolist()) for p, n in zip(head, counts)] for head, counts in zip(probs, needed)]
        sizes = []
        for c in sorted(set(cell)):
            members = [i for i, ci in enumerate(cell) if ci == c]
            sizes.append(sum(len(set().union(*(top[h][i] for i in members))) for h in range(len(top))) / len(top))
        assert stats[f"query_keys_{tag}"] == pytest.approx(needed.float().mean().item())
        assert stats[f"cell_keys_{tag}"] == pytest.approx(sum(sizes) / len(sizes))


def test_mass_mode_stops_selecting_once_the_probe_finds_no_saving_and_stays_exact(local_vae, one_thread):
    vae, latents = local_vae  # random weights attend diffusely: mass 1 - 1e-6 keeps every key
    field = vae.field(latents)
    chunks = [_points(500, seed=s) for s in range(6)]
    dense = [field(c) for c in chunks]
    acc = AdaptiveKVSelection(mode="mass", cells=4, probe_calls=2)
    with acc.applied(vae.geo_decoder):
        out = [field(c) for c in chunks]
    assert all(torch.equal(a, b) for a, b in zip(out, dense))
    stats = acc.stats()
    assert stats["dense_calls"] == 2 and stats["probed_dense_calls"] == 4  # two probes, then no selection at all
    other = vae.field(torch.randn(1, 96, 8))  # new keys: probed afresh
    with acc.applied(vae.geo_decoder):
        other(chunks[0])
    assert acc.stats()["dense_calls"] == 3
    never = AdaptiveKVSelection(mode="mass", cells=4, probe_calls=0)
    with never.applied(vae.geo_decoder):
        [field(c) for c in chunks]
    assert never.stats()["dense_calls"] == 6 and not never.stats().get("probed_dense_calls")
