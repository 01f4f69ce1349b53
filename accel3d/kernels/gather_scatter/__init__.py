"""Row gather, scatter-add and scatter-max over ``(rows, channels)`` tensors.

Token carving gathers the kept tokens and scatters their updates back, feature
caches gather cached rows, and voxel pooling takes a scatter-max over the
voxels that merge into one. Each public function checks its arguments, then
runs the Triton kernel (CUDA tensors) or the PyTorch reference (CPU tensors);
see :mod:`accel3d.kernels.dispatch` for the override.

Example::

    from accel3d.kernels import gather_rows, scatter_max_rows
    kept = gather_rows(tokens, keep_index)                   # (K, C)
    pooled = scatter_max_rows(features, voxel_id, num_voxels)  # (num_voxels, C)
"""

from __future__ import annotations

import math

import torch

from accel3d.kernels.checks import check_float, check_index, check_same_device
from accel3d.kernels.dispatch import resolve_backend
from accel3d.kernels.gather_scatter import reference


def _impl(kernel: str, backend: str | None, *tensors: torch.Tensor):
    if resolve_backend(kernel, *tensors, backend=backend) == "triton":
        from accel3d.kernels.gather_scatter import triton_kernels

        return getattr(triton_kernels, kernel)
    return getattr(reference, kernel)


def _check_rows(kernel: str, num_rows: int) -> None:
    if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 0:
        raise ValueError(f"{kernel}: num_rows must be a non-negative int, got {num_rows!r}")


def gather_rows(src: torch.Tensor, index: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """``out[i] = src[index[i]]``: (N, C) rows picked by ``index`` (M,) -> (M, C)."""
    check_float("gather_rows", "src", src, 2)
    check_index("gather_rows", "index", index, len(src))
    check_same_device("gather_rows", src=src, index=index)
    return _impl("gather_rows", backend, src, index)(src, index)


def scatter_add_rows(src: torch.Tensor, index: torch.Tensor, num_rows: int, backend: str | None = None) -> torch.Tensor:
    """``out[index[i]] += src[i]`` into ``num_rows`` zero rows; duplicate indices accumulate (in fp32)."""
    check_float("scatter_add_rows", "src", src, 2)
    _check_rows("scatter_add_rows", num_rows)
    check_index("scatter_add_rows", "index", index, num_rows, length=len(src))
    check_same_device("scatter_add_rows", src=src, index=index)
    return _impl("scatter_add_rows", backend, src, index)(src, index, num_rows)


def scatter_max_rows(
    src: torch.Tensor, index: torch.Tensor, num_rows: int, empty_value: float = 0.0, backend: str | None = None
) -> torch.Tensor:
    """``out[r] = max over {i : index[i] == r} of src[i]``; rows nothing lands on get ``empty_value``.

    NaN in ``src`` is refused: GPU atomics and PyTorch would disagree on it.
    """
    check_float("scatter_max_rows", "src", src, 2)
    _check_rows("scatter_max_rows", num_rows)
    check_index("scatter_max_rows", "index", index, num_rows, length=len(src))
    check_same_device("scatter_max_rows", src=src, index=index)
    if not math.isfinite(empty_value) and not math.isinf(empty_value):
        raise ValueError(f"scatter_max_rows: empty_value must be a number, got {empty_value}")
    if torch.isnan(src).any():
        raise ValueError("scatter_max_rows: src contains NaN")
    return _impl("scatter_max_rows", backend, src, index)(src, index, num_rows, empty_value)


__all__ = ["gather_rows", "scatter_add_rows", "scatter_max_rows"]
