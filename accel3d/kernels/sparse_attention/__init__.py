"""Packed sparse cross-attention: each cell of queries attends only to its own keys.

Layout (one batch element; fold a batch into the head axis):

- ``q``: (H, Nq, D) queries sorted by cell; cell ``c`` owns rows
  ``cell_offsets[c]:cell_offsets[c + 1]`` (``cell_offsets`` has C + 1 entries,
  starts at 0, ends at Nq; empty cells are allowed).
- ``k``, ``v``: (H, Nk, D).
- ``kv_offsets`` / ``kv_indices``: compressed key lists. With G = 1 list per
  cell (shared by all heads) or G = H lists per cell (one per head), segment
  ``c * G + h % G`` holds ``kv_indices[kv_offsets[s]:kv_offsets[s + 1]]``.
  Lists may have any length, including 0 (those rows get zeros) or more keys
  than the cell has queries. Duplicate indices count twice, as in dense
  attention over the repeated keys.
- NaN or inf anywhere in ``q``, ``k`` or ``v`` raises ``FloatingPointError`` on
  both backends.

Example::

    from accel3d.kernels import packed_sparse_attention
    out = packed_sparse_attention(q, k, v, cell_offsets, kv_offsets, kv_indices)  # (H, Nq, D)
"""

from __future__ import annotations

import math

import torch

from accel3d.kernels.checks import check_float, check_index, check_same_device
from accel3d.kernels.dispatch import resolve_backend
from accel3d.kernels.sparse_attention import reference

KERNEL = "packed_sparse_attention"


def _check_offsets(name: str, offsets: torch.Tensor, total: int) -> None:
    if not isinstance(offsets, torch.Tensor) or offsets.ndim != 1 or offsets.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{KERNEL}: {name} must be a 1-D int32/int64 tensor")
    if len(offsets) < 1:
        raise ValueError(f"{KERNEL}: {name} needs at least one entry (0)")
    first, last = int(offsets[0]), int(offsets[-1])
    if first != 0 or last != total:
        raise ValueError(f"{KERNEL}: {name} must start at 0 and end at {total}, got {first} .. {last}")
    if len(offsets) > 1 and bool((offsets[1:] < offsets[:-1]).any()):
        raise ValueError(f"{KERNEL}: {name} must be non-decreasing")


def packed_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cell_offsets: torch.Tensor,
    kv_offsets: torch.Tensor,
    kv_indices: torch.Tensor,
    scale: float | None = None,
    backend: str | None = None,
    block_m: int = 64,
    block_n: int = 64,
) -> torch.Tensor:
    """Attention of each cell's queries over its listed keys -> (H, Nq, D) in ``q``'s dtype.

    ``scale`` defaults to ``D ** -0.5``. Accumulates in fp32. ``block_m``/``block_n``
    (powers of two, at least 16) tile the Triton kernel; the PyTorch path ignores them.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float(KERNEL, name, t, 3)
    if k.shape != v.shape:
        raise ValueError(f"{KERNEL}: k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(
            f"{KERNEL}: q (H, Nq, D) and k (H, Nk, D) must agree on heads and head dim, got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{KERNEL}: q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    check_same_device(KERNEL, q=q, k=k, v=v, cell_offsets=cell_offsets, kv_offsets=kv_offsets, kv_indices=kv_indices)
    _check_offsets("cell_offsets", cell_offsets, q.shape[1])
    cells = len(cell_offsets) - 1
    heads = q.shape[0]
    segments = len(kv_offsets) - 1
    if cells and segments not in (cells, cells * heads):
        raise ValueError(
            f"{KERNEL}: kv_offsets must have cells + 1 = {cells + 1} (shared lists) or cells * heads + 1 = "
            f"{cells * heads + 1} (per-head lists) entries, got {len(kv_offsets)}"
        )
    check_index(KERNEL, "kv_indices", kv_indices, k.shape[1])
    _check_offsets("kv_offsets", kv_offsets, len(kv_indices))
    for name, block in (("block_m", block_m), ("block_n", block_n)):
        if isinstance(block, bool) or not isinstance(block, int) or block < 16 or block > 256 or block & (block - 1):
            raise ValueError(f"{KERNEL}: {name} must be a power of two in [16, 256], got {block!r}")
    if not 1 <= q.shape[-1] <= 256:
        raise ValueError(f"{KERNEL}: head dim must be in [1, 256], got {q.shape[-1]}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0):
        raise ValueError(f"{KERNEL}: scale must be None or a positive finite number, got {scale!r}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    # Refused, not computed: on non-finite inputs the PyTorch path and the Triton kernel return
    # different garbage (0 against NaN for all-NaN keys), and adaptive KV selection refuses them too.
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise FloatingPointError(f"{KERNEL}: {name} contains NaN or inf; expected finite queries, keys and values")
    if resolve_backend(KERNEL, q, k, v, backend=backend) == "triton":
        from accel3d.kernels.sparse_attention import triton_kernels

        out = triton_kernels.packed_sparse_attention(q, k, v, cell_offsets, kv_offsets, kv_indices, scale, block_m, block_n)
    else:
        out = reference.packed_sparse_attention(q, k, v, cell_offsets, kv_offsets, kv_indices, scale)
    if out.numel() and not bool(torch.isfinite(out).all()):  # finite inputs, so the logits overflowed
        raise FloatingPointError(f"{KERNEL}: the output overflowed (scale {scale:g} times the logits is too large for {q.dtype})")
    return out


__all__ = ["packed_sparse_attention"]
