"""PyTorch reference for packed sparse attention (same signature as :mod:`.triton_kernels`).

One scaled-dot-product-attention call per cell over that cell's gathered keys;
this is also the CPU path, where the per-cell loop costs little next to the
attention itself. Computes in fp32 and returns ``q``'s dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    for c in range(cells):
        lo, hi = rows[c], rows[c + 1]
        if lo == hi:
            continue
        if groups == 1:
            idx = _segment(kv_indices, segs, c)
            if len(idx):
                out[:, lo:hi] = F.scaled_dot_product_attention(qf[:, lo:hi], kf[:, idx], vf[:, idx], scale=scale)
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
        res = F.scaled_dot_product_attention(qf[:, lo:hi], kf.gather(1, gather), vf.gather(1, gather), attn_mask=valid, scale=scale)
        empty = ~valid.any(-1)  # heads with no keys: zeros, not NaN
        out[:, lo:hi] = res.masked_fill(empty[..., None], 0.0)
    return out.to(q.dtype)
