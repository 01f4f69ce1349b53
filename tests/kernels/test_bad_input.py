"""Bad inputs for the kernels: non-finite tensors, scales and head dims are refused on both backends."""

import math

import pytest
import torch

from accel3d.kernels import packed_sparse_attention, scatter_max_rows

NAN, INF = float("nan"), float("inf")


def _attention_inputs(bad: str, value: float):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 20, 16, generator=gen) for _ in range(3))
    {"q": q, "k": k, "v": v}[bad][:, 3] = value
    cells = torch.tensor([0, 8, 20])
    kv_offsets = torch.tensor([0, 10, 20])
    kv_indices = torch.cat([torch.arange(10), torch.arange(10, 20)])
    return q, k, v, cells, kv_offsets, kv_indices


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("bad", ["q", "k", "v"])
@pytest.mark.parametrize("value", [NAN, INF])
def test_sparse_attention_refuses_non_finite_inputs_on_both_backends(backend, bad, value):
    # Before: all-NaN keys gave 0.0 on the torch path and NaN on the Triton path.
    with pytest.raises(FloatingPointError, match=f"packed_sparse_attention: {bad} contains NaN or inf"):
        packed_sparse_attention(*_attention_inputs(bad, value), backend=backend)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_sparse_attention_on_finite_inputs_agrees_across_backends(backend):
    q, k, v, cells, kvo, kvi = _attention_inputs("q", 0.5)
    ref = packed_sparse_attention(q, k, v, cells, kvo, kvi, backend="torch")
    out = packed_sparse_attention(q, k, v, cells, kvo, kvi, backend=backend)
    assert torch.allclose(out, ref, atol=1e-5) and torch.isfinite(out).all()


def test_scatter_max_refuses_nan_and_a_non_number_empty_value():
    src = torch.tensor([[1.0], [NAN]])
    with pytest.raises(ValueError, match="src contains NaN"):
        scatter_max_rows(src, torch.tensor([0, 0]), 1)
    with pytest.raises(ValueError, match="empty_value"):
        scatter_max_rows(torch.ones(2, 1), torch.tensor([0, 0]), 1, empty_value=math.nan)


@pytest.mark.parametrize("scale", ["0.5", True, torch.tensor([0.5]), 0.0, NAN])
def test_attention_scale_must_be_a_positive_number(scale):
    with pytest.raises(ValueError, match="scale must be None or a positive finite number"):
        packed_sparse_attention(*_attention_inputs("q", 0.5), scale=scale)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_attention_overflow_is_an_error_not_a_nan_output(backend):
    with pytest.raises(FloatingPointError, match="the output overflowed"):
        packed_sparse_attention(*_attention_inputs("q", 0.5), scale=1e308, backend=backend)


def test_attention_head_dim_and_backend_type():
    q, k, v, cells, kvo, kvi = _attention_inputs("q", 0.5)
    with pytest.raises(ValueError, match=r"head dim must be in \[1, 256\]"):
        packed_sparse_attention(q[..., :0], k[..., :0], v[..., :0], cells, kvo, kvi)
    with pytest.raises(ValueError, match="backend must be one of"):
        packed_sparse_attention(q, k, v, cells, kvo, kvi, backend=123)
