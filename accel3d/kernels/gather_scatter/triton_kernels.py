"""Triton kernels for row gather, scatter-add and scatter-max.

Each program handles a ``BLOCK_M x BLOCK_C`` tile of rows x channels, so one
launch covers any (M, C). Scatters use fp32 atomics into an fp32 buffer (also
for fp16/bf16 inputs) and cast at the end. Same signatures as :mod:`.reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gather_kernel(src, index, out, M, C, stride_src, stride_out, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = rows < M
    mask = row_ok[:, None] & (cols < C)[None, :]
    idx = tl.load(index + rows, mask=row_ok, other=0).to(tl.int64)
    vals = tl.load(src + idx[:, None] * stride_src + cols[None, :], mask=mask)
    tl.store(out + rows[:, None].to(tl.int64) * stride_out + cols[None, :], vals, mask=mask)


@triton.jit
def _scatter_kernel(src, index, out, M, C, stride_src, stride_out, REDUCE_MAX: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = rows < M
    mask = row_ok[:, None] & (cols < C)[None, :]
    idx = tl.load(index + rows, mask=row_ok, other=0).to(tl.int64)
    vals = tl.load(src + rows[:, None].to(tl.int64) * stride_src + cols[None, :], mask=mask).to(tl.float32)
    ptrs = out + idx[:, None] * stride_out + cols[None, :]
    if REDUCE_MAX:
        # -0.0 -> +0.0: some Triton 3.x releases split float atomic_max on the sign and lose -0.0 against negatives.
        tl.atomic_max(ptrs, tl.where(vals == 0.0, 0.0, vals), mask=mask)
    else:
        tl.atomic_add(ptrs, vals, mask=mask)


def _grid(m: int, c: int, block_m: int, block_c: int) -> tuple[int, int]:
    return (triton.cdiv(max(m, 1), block_m), triton.cdiv(max(c, 1), block_c))


def gather_rows(src: torch.Tensor, index: torch.Tensor, block_m: int = 64, block_c: int = 64) -> torch.Tensor:
    src = src.contiguous()
    out = torch.empty(len(index), src.shape[1], dtype=src.dtype, device=src.device)
    if out.numel():
        grid = _grid(len(index), src.shape[1], block_m, block_c)
        _gather_kernel[grid](
            src, index.contiguous(), out, len(index), src.shape[1], src.stride(0), out.stride(0), BLOCK_M=block_m, BLOCK_C=block_c
        )
    return out


def _scatter(src: torch.Tensor, index: torch.Tensor, out: torch.Tensor, reduce_max: bool, block_m: int, block_c: int) -> None:
    if src.numel():
        src = src.contiguous()
        grid = _grid(len(index), src.shape[1], block_m, block_c)
        _scatter_kernel[grid](
            src,
            index.contiguous(),
            out,
            len(index),
            src.shape[1],
            src.stride(0),
            out.stride(0),
            REDUCE_MAX=reduce_max,
            BLOCK_M=block_m,
            BLOCK_C=block_c,
        )


def scatter_add_rows(src: torch.Tensor, index: torch.Tensor, num_rows: int, block_m: int = 64, block_c: int = 64) -> torch.Tensor:
    out = torch.zeros(num_rows, src.shape[1], dtype=torch.float32, device=src.device)
    _scatter(src, index, out, False, block_m, block_c)
    return out.to(src.dtype)


def scatter_max_rows(
    src: torch.Tensor, index: torch.Tensor, num_rows: int, empty_value: float = 0.0, block_m: int = 64, block_c: int = 64
) -> torch.Tensor:
    out = torch.full((num_rows, src.shape[1]), float("-inf"), dtype=torch.float32, device=src.device)
    _scatter(src, index, out, True, block_m, block_c)
    out[torch.bincount(index, minlength=num_rows) == 0] = empty_value
    return out.to(src.dtype)
