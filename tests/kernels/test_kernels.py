"""Every kernel against its PyTorch reference (Triton under TRITON_INTERPRET=1) and an independent truth."""

from __future__ import annotations

import pytest
import torch

from accel3d.kernels import gather_rows, packed_sparse_attention, resolve_backend, scatter_add_rows, scatter_max_rows

BACKENDS = ["torch", "triton"]
TOL = {torch.float32: 1e-5, torch.float16: 2e-3}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gather_rows(backend, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n, c, m = torch.randint(1, 90, (3,), generator=g).tolist()
    src = torch.randn(n, c, generator=g).to(dtype)
    index = torch.randint(0, n, (m,), generator=g)
    assert torch.equal(gather_rows(src, index, backend=backend), src[index])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("seed", [0, 1])
def test_scatter_add_rows_accumulates_duplicates(backend, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    m, c = torch.randint(20, 120, (2,), generator=g).tolist()
    rows = 7  # far fewer rows than sources: many duplicates
    src = torch.randn(m, c, generator=g).to(dtype)
    index = torch.randint(0, rows - 1, (m,), generator=g)  # the last row receives nothing
    truth = torch.zeros(rows, c, dtype=torch.float64)
    for i, r in enumerate(index.tolist()):
        truth[r] += src[i].double()
    out = scatter_add_rows(src, index, rows, backend=backend)
    assert out.dtype == dtype and out.shape == (rows, c)
    torch.testing.assert_close(out.double(), truth.to(dtype).double(), atol=TOL[dtype] * 10, rtol=TOL[dtype])
    assert torch.all(out[-1] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_scatter_max_rows_with_negative_values_and_empty_rows(backend, dtype):
    g = torch.Generator().manual_seed(3)
    src = (-1.0 - torch.rand(64, 9, generator=g) * 5).to(dtype)  # all negative: a zero init would win wrongly
    index = torch.randint(0, 5, (64,), generator=g) * 2  # odd rows stay empty
    out = scatter_max_rows(src, index, 11, empty_value=-7.0, backend=backend)
    for r in range(11):
        hits = src[index == r]
        expected = hits.amax(0) if len(hits) else torch.full((9,), -7.0, dtype=dtype)
        assert torch.equal(out[r], expected), r


def test_triton_and_reference_agree_on_scatter_max():
    g = torch.Generator().manual_seed(4)
    src, index = torch.randn(200, 33, generator=g), torch.randint(0, 40, (200,), generator=g)
    assert torch.equal(scatter_max_rows(src, index, 40, backend="triton"), scatter_max_rows(src, index, 40, backend="torch"))


def test_empty_inputs():
    src = torch.randn(5, 3)
    for backend in BACKENDS:
        assert gather_rows(src, torch.zeros(0, dtype=torch.long), backend=backend).shape == (0, 3)
        out = scatter_add_rows(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 4, backend=backend)
        assert torch.equal(out, torch.zeros(4, 3))


# ---- packed sparse attention ------------------------------------------------------------------


def _random_problem(seed: int, heads: int, per_head: bool, dtype: torch.dtype, head_dim: int = 16):
    """Ragged cells (some empty), ragged key lists (some empty, some longer than the cell, duplicates)."""
    g = torch.Generator().manual_seed(seed)
    nk = int(torch.randint(5, 60, (1,), generator=g))
    sizes = torch.randint(0, 40, (6,), generator=g)
    sizes[1] = 0  # an empty cell
    cell_offsets = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    segments = len(sizes) * (heads if per_head else 1)
    lengths = torch.randint(1, 2 * nk, (segments,), generator=g)  # up to twice Nk: duplicates
    lengths[2] = 0  # a key list with nothing in it
    kv_offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    kv_indices = torch.randint(0, nk, (int(lengths.sum()),), generator=g)
    nq = int(sizes.sum())
    q, k, v = (torch.randn(heads, n, head_dim, generator=g).to(dtype) for n in (nq, nk, nk))
    return q, k, v, cell_offsets, kv_offsets, kv_indices


def _truth(q, k, v, cell_offsets, kv_offsets, kv_indices):
    """Softmax over each row's key list, written out by hand, in float64."""
    heads, nq, d = q.shape
    cells = len(cell_offsets) - 1
    groups = (len(kv_offsets) - 1) // cells
    out = torch.zeros(heads, nq, d, dtype=torch.float64)
    for c in range(cells):
        for h in range(heads):
            s = c * groups + h % groups
            idx = kv_indices[kv_offsets[s] : kv_offsets[s + 1]]
            if len(idx) == 0:
                continue
            rows = slice(int(cell_offsets[c]), int(cell_offsets[c + 1]))
            logits = q[h, rows].double() @ k[h, idx].double().T * d**-0.5
            out[h, rows] = logits.softmax(-1) @ v[h, idx].double()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_sparse_attention_matches_truth(backend, per_head, dtype, seed):
    problem = _random_problem(seed, heads=2, per_head=per_head, dtype=dtype)
    out = packed_sparse_attention(*problem, backend=backend, block_m=16, block_n=16)
    assert out.dtype == dtype
    expected = _truth(*problem)
    torch.testing.assert_close(out.double(), expected, atol=TOL[dtype] * 5, rtol=TOL[dtype] * 5)
    # the empty key list gives zeros, never NaN
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("block_m,block_n", [(16, 32), (32, 16), (64, 64)])
def test_triton_block_sizes_agree_with_reference(block_m, block_n):
    problem = _random_problem(5, heads=3, per_head=True, dtype=torch.float32, head_dim=24)  # D padded to 32
    ref = packed_sparse_attention(*problem, backend="torch")
    out = packed_sparse_attention(*problem, backend="triton", block_m=block_m, block_n=block_n)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_all_keys_in_one_cell_equals_dense_attention():
    g = torch.Generator().manual_seed(6)
    q, k, v = torch.randn(2, 30, 16, generator=g), torch.randn(2, 20, 16, generator=g), torch.randn(2, 20, 16, generator=g)
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    for backend in BACKENDS:
        out = packed_sparse_attention(q, k, v, torch.tensor([0, 30]), torch.tensor([0, 20]), torch.arange(20), backend=backend)
        torch.testing.assert_close(out, dense, atol=1e-5, rtol=1e-5)


# ---- argument checks and dispatch ---------------------------------------------------------------


def test_bad_arguments_are_refused_before_launch():
    q, k, v = torch.randn(2, 10, 16), torch.randn(2, 8, 16), torch.randn(2, 8, 16)
    cells, kvo = torch.tensor([0, 4, 10]), torch.tensor([0, 3, 5])
    good = torch.tensor([0, 1, 2, 3, 4])
    with pytest.raises(IndexError, match=r"kv_indices values must lie in \[0, 8\)"):
        packed_sparse_attention(q, k, v, cells, kvo, torch.tensor([0, 1, 2, 3, 8]))
    with pytest.raises(IndexError, match="kv_indices"):
        packed_sparse_attention(q, k, v, cells, kvo, torch.tensor([0, -1, 2, 3, 4]))
    with pytest.raises(ValueError, match="head dim"):
        packed_sparse_attention(q, k[..., :8], v[..., :8], cells, kvo, good)
    with pytest.raises(ValueError, match="cell_offsets must start at 0 and end at 10"):
        packed_sparse_attention(q, k, v, torch.tensor([0, 4, 9]), kvo, good)
    with pytest.raises(ValueError, match="non-decreasing"):
        packed_sparse_attention(q, k, v, torch.tensor([0, 6, 4, 10]), torch.tensor([0, 1, 3, 5]), good)
    with pytest.raises(ValueError, match="kv_offsets must have"):
        packed_sparse_attention(q, k, v, cells, torch.tensor([0, 5]), good)
    with pytest.raises(ValueError, match="block_m"):
        packed_sparse_attention(q, k, v, cells, kvo, good, block_m=24)
    with pytest.raises(TypeError, match="kv_indices must be int32 or int64"):
        packed_sparse_attention(q, k, v, cells, kvo, good.float())
    with pytest.raises(IndexError, match="index values"):
        gather_rows(torch.randn(4, 2), torch.tensor([4]))
    with pytest.raises(ValueError, match="index has 2 entries, expected 3"):
        scatter_add_rows(torch.randn(3, 2), torch.tensor([0, 1]), 4)
    with pytest.raises(ValueError, match="num_rows"):
        scatter_max_rows(torch.randn(3, 2), torch.tensor([0, 1, 1]), -1)
    with pytest.raises(ValueError, match="NaN"):
        scatter_max_rows(torch.tensor([[float("nan")]]), torch.tensor([0]), 1)


def test_dispatch_defaults_and_overrides(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.delenv("ACCEL3D_KERNEL_BACKEND", raising=False)
    assert resolve_backend("k", cpu) == "torch"
    assert resolve_backend("k", cpu, backend="triton") == "triton"  # the interpreter is on in tests
    monkeypatch.setenv("ACCEL3D_KERNEL_BACKEND", "triton")
    assert resolve_backend("k", cpu) == "triton"
    assert resolve_backend("k", cpu, backend="torch") == "torch"  # the argument wins
    monkeypatch.setenv("ACCEL3D_KERNEL_BACKEND", "cuda")
    with pytest.raises(ValueError, match="ACCEL3D_KERNEL_BACKEND must be one of"):
        resolve_backend("k", cpu)
    monkeypatch.delenv("ACCEL3D_KERNEL_BACKEND")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        resolve_backend("k", cpu, backend="triton")


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs_and_int32_offsets(backend):
    q, k, v, cells, kvo, kvi = _random_problem(8, heads=2, per_head=True, dtype=torch.float32)
    q_strided = q.transpose(1, 2).contiguous().transpose(1, 2)  # same values, D not stride-1
    assert not q_strided.is_contiguous()
    out = packed_sparse_attention(q_strided, k, v, cells.int(), kvo.int(), kvi.int(), backend=backend, block_m=16, block_n=16)
    torch.testing.assert_close(out.double(), _truth(q, k, v, cells, kvo, kvi), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_queries_and_no_sources(backend):
    q, k = torch.zeros(2, 0, 16), torch.randn(2, 5, 16)
    out = packed_sparse_attention(q, k, k, torch.tensor([0, 0, 0]), torch.tensor([0, 2, 3]), torch.tensor([0, 1, 4]), backend=backend)
    assert out.shape == (2, 0, 16)
    pooled = scatter_max_rows(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 2, empty_value=-1.0, backend=backend)
    assert torch.equal(pooled, torch.full((2, 3), -1.0))


def test_more_argument_checks():
    q, k = torch.randn(2, 10, 16), torch.randn(2, 8, 16)
    cells, kvo, kvi = torch.tensor([0, 10]), torch.tensor([0, 3]), torch.tensor([0, 1, 2])
    with pytest.raises(TypeError, match="share a dtype"):
        packed_sparse_attention(q, k.half(), k.half(), cells, kvo, kvi)
    with pytest.raises(ValueError, match="kv_offsets must start at 0 and end at 3"):
        packed_sparse_attention(q, k, k, cells, torch.tensor([0, 2]), kvi)
    with pytest.raises(ValueError, match="block_n must be a power of two in"):
        packed_sparse_attention(q, k, k, cells, kvo, kvi, block_n=64.0)
    with pytest.raises(ValueError, match="scale must be None or a positive finite number"):
        packed_sparse_attention(q, k, k, cells, kvo, kvi, scale=float("nan"))
    with pytest.raises(TypeError, match="computes bfloat16 wrongly"):
        gather_rows(torch.randn(3, 2).bfloat16(), torch.tensor([0]), backend="triton")
    with pytest.raises(RuntimeError, match="no backward"):
        gather_rows(torch.randn(3, 2, requires_grad=True), torch.tensor([0]), backend="triton")
