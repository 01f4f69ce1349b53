"""Triton kernel for packed sparse attention.

Queries are sorted by cell. Every program takes ``BLOCK_M`` query rows of one
cell and one head, walks that cell's key-index list ``BLOCK_N`` entries at a
time, loads the keys and values it names straight from K and V (no per-cell
copies), and keeps a running (online) softmax in fp32. Row blocks never cross
a cell boundary; the block table that maps programs to (cell, first row) is
built on the device without a host sync, sized for the worst case, and the
spare programs exit at once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _packed_attention_kernel(
    Q,
    K,
    V,
    Out,
    block_cell,
    block_row,
    cell_offsets,
    kv_offsets,
    kv_indices,
    stride_qh,
    stride_qn,
    stride_kh,
    stride_kn,
    stride_vh,
    stride_vn,
    stride_oh,
    stride_on,
    qk_scale,
    D,
    GROUPS: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    head = tl.program_id(1).to(tl.int64)  # head * stride can exceed 2^31 on large calls
    cell = tl.load(block_cell + pid)
    if cell >= 0:
        start = tl.load(block_row + pid)
        end = tl.load(cell_offsets + cell + 1)
        rows = start + tl.arange(0, BLOCK_M)
        row_ok = rows < end
        d = tl.arange(0, BLOCK_D)
        d_ok = d < D
        q_ptrs = Q + head * stride_qh + rows[:, None].to(tl.int64) * stride_qn + d[None, :]
        q = tl.load(q_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        seg = cell * GROUPS + head % GROUPS
        kv_lo = tl.load(kv_offsets + seg)
        kv_hi = tl.load(kv_offsets + seg + 1)
        m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        l_i = tl.zeros((BLOCK_M,), tl.float32)
        acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
        for n0 in range(kv_lo, kv_hi, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            col_ok = cols < kv_hi
            idx = tl.load(kv_indices + cols, mask=col_ok, other=0).to(tl.int64)
            kt = tl.load(K + head * stride_kh + idx[None, :] * stride_kn + d[:, None], mask=col_ok[None, :] & d_ok[:, None], other=0.0)
            if IEEE:
                s = tl.dot(q, kt, input_precision="ieee")
            else:
                s = tl.dot(q, kt)
            s = tl.where(col_ok[None, :], s * qk_scale, float("-inf"))  # log2 domain
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            vals = tl.load(V + head * stride_vh + idx[:, None] * stride_vn + d[None, :], mask=col_ok[:, None] & d_ok[None, :], other=0.0)
            if IEEE:
                acc = acc * alpha[:, None] + tl.dot(p, vals.to(tl.float32), input_precision="ieee")
            else:
                acc = acc * alpha[:, None] + tl.dot(p.to(vals.dtype), vals)
            m_i = m_new
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]  # a cell with no keys gives zeros
        o_ptrs = Out + head * stride_oh + rows[:, None].to(tl.int64) * stride_on + d[None, :]
        tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


def block_table(cell_offsets: torch.Tensor, num_rows: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cell, first row) of every ``block_m``-row block, no block spanning two cells.

    Sized for the worst case, ``ceil(num_rows / block_m) + cells`` blocks, which the host
    knows without reading ``cell_offsets`` back from the device; unused entries hold cell -1.
    """
    cells = len(cell_offsets) - 1
    counts = cell_offsets[1:] - cell_offsets[:-1]
    blocks = (counts + block_m - 1) // block_m
    ends = torch.cumsum(blocks, 0)
    pid = torch.arange(triton.cdiv(num_rows, block_m) + cells, device=cell_offsets.device)
    cell = torch.searchsorted(ends, pid, right=True)
    valid = cell < cells
    safe = cell.clamp(max=max(cells - 1, 0))
    row = cell_offsets[safe] + (pid - (ends - blocks)[safe]) * block_m
    return torch.where(valid, cell, -1).to(torch.int32), row.to(torch.int32)


def packed_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cell_offsets: torch.Tensor,
    kv_offsets: torch.Tensor,
    kv_indices: torch.Tensor,
    scale: float,
    block_m: int = 64,
    block_n: int = 64,
) -> torch.Tensor:
    """Triton launch; see :func:`accel3d.kernels.packed_sparse_attention` (which checks the arguments).

    Same arguments as the reference plus the tile sizes ``block_m`` (query rows) and
    ``block_n`` (keys per step). Inference only: there is no backward.
    """
    heads, num_rows, dim = q.shape
    cells = len(cell_offsets) - 1
    # Allocate after making q contiguous: zeros_like would copy q's strides, the kernel assumes D is stride-1.
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.zeros(q.shape, dtype=q.dtype, device=q.device)
    if num_rows == 0 or cells == 0:
        return out
    groups = (len(kv_offsets) - 1) // cells
    block_cell, block_row = block_table(cell_offsets, num_rows, block_m)
    grid = (len(block_cell), heads)
    _packed_attention_kernel[grid](
        q,
        k,
        v,
        out,
        block_cell,
        block_row,
        cell_offsets.contiguous(),
        kv_offsets.contiguous(),
        kv_indices.contiguous(),
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        out.stride(0),
        out.stride(1),
        scale * LOG2E,
        dim,
        GROUPS=groups,
        IEEE=q.dtype == torch.float32,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_D=max(16, triton.next_power_of_2(dim)),
    )
    return out
