"""PyTorch references for row gather, scatter-add and scatter-max.

Same signatures as :mod:`.triton_kernels`; arguments are checked by the public
wrappers in :mod:`accel3d.kernels.gather_scatter`. Scatters accumulate in fp32.
"""

from __future__ import annotations

import torch


def gather_rows(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[i] = src[index[i]]``; (N, C), (M,) -> (M, C)."""
    return src.index_select(0, index)


def scatter_add_rows(src: torch.Tensor, index: torch.Tensor, num_rows: int) -> torch.Tensor:
    """``out[index[i]] += src[i]``; (M, C), (M,) -> (num_rows, C). Duplicates accumulate."""
    out = torch.zeros(num_rows, src.shape[1], dtype=torch.float32, device=src.device)
    out.index_add_(0, index, src.float())
    return out.to(src.dtype)


def scatter_max_rows(src: torch.Tensor, index: torch.Tensor, num_rows: int, empty_value: float = 0.0) -> torch.Tensor:
    """``out[r] = max(src[i] for index[i] == r)``; rows nothing lands on get ``empty_value``."""
    out = torch.full((num_rows, src.shape[1]), float("-inf"), dtype=torch.float32, device=src.device)
    out.scatter_reduce_(0, index[:, None].expand(-1, src.shape[1]), src.float(), reduce="amax")
    out[torch.bincount(index, minlength=num_rows) == 0] = empty_value
    return out.to(src.dtype)
