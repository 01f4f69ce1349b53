"""PyTorch reference for packed sparse attention (same signature as :mod:`.triton_kernels`).

One fused attention call per cell over that cell's gathered keys; this is also
the CPU path (a Python loop over at most ``cells`` calls costs little next to
the attention itself). Computes in fp32 and returns ``q``'s dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v for (H, n, D) x (H, K, D).

    Called with a leading batch axis: on the CPU, 4-D inputs take PyTorch's fused
    (flash) attention kernel, 3-D ones an unfused path about twice as slow.
    """
    mask = None if mask is None else mask[None]
    return F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask, scale=scale)[0]


def _segment(kv_indices: torch.Tensor, offsets: list[int], seg: int) -> torch.Tensor:
    return kv_indices[offsets[seg] : offsets[seg + 1]]


def packed_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cell_offsets: torch.Tensor,
    kv_offsets: torch.Tensor,
    kv_indices: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    heads, _, dim = q.shape
    cells = len(cell_offsets) - 1
    groups = (len(kv_offsets) - 1) // cells if cells else 1
    qf, kf, vf = q.float(), k.float(), v.float()
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    rows, segs = cell_offsets.tolist(), kv_offsets.tolist()
    lengths = {segs[i + 1] - segs[i] for i in range(len(segs) - 1)}
    if groups > 1 and len(lengths) == 1 and 0 not in lengths:
        # Equal-length per-head lists (top-K): gather each cell's keys with one index.
        idx = kv_indices.view(cells, groups, -1, 1).expand(-1, -1, -1, dim)
        for c in range(cells):
            lo, hi = rows[c], rows[c + 1]
            if lo < hi:
                out[:, lo:hi] = _attend(qf[:, lo:hi], kf.gather(1, idx[c]), vf.gather(1, idx[c]), scale)
        return out.to(q.dtype)
    for c in range(cells):
        lo, hi = rows[c], rows[c + 1]
        if lo == hi:
            continue
        if groups == 1:
            idx = _segment(kv_indices, segs, c)
            if len(idx):
                out[:, lo:hi] = _attend(qf[:, lo:hi], kf[:, idx], vf[:, idx], scale)
            continue
        per_head = [_segment(kv_indices, segs, c * groups + h) for h in range(heads)]
        width = max(len(i) for i in per_head)
        if width == 0:
            continue
        # Ragged per-head key lists: pad with key 0 and mask the padding out.
        idx = torch.zeros(heads, width, dtype=torch.long, device=q.device)
        valid = torch.zeros(heads, 1, width, dtype=torch.bool, device=q.device)
        for h, i in enumerate(per_head):
            idx[h, : len(i)] = i
            valid[h, 0, : len(i)] = True
        gather = idx[..., None].expand(-1, -1, dim)
        mask = None if all(len(i) == width for i in per_head) else valid  # equal lengths need no mask
        res = _attend(qf[:, lo:hi], kf.gather(1, gather), vf.gather(1, gather), scale, mask)
        empty = ~valid.any(-1)  # heads with no keys: zeros, not NaN
        out[:, lo:hi] = res.masked_fill(empty[..., None], 0.0)
    return out.to(q.dtype)
