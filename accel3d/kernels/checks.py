"""Argument checks shared by the kernels; every kernel runs them before launching."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_float(kernel: str, name: str, t: torch.Tensor, ndim: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{kernel}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{kernel}: {name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{kernel}: {name} must be float32, float16 or bfloat16, got {t.dtype}")


def check_index(kernel: str, name: str, index: torch.Tensor, upper: int, length: int | None = None) -> None:
    """``index`` is a 1-D integer tensor with values in ``[0, upper)`` (and ``length`` entries)."""
    if not isinstance(index, torch.Tensor):
        raise TypeError(f"{kernel}: {name} must be a torch.Tensor, got {type(index).__name__}")
    if index.ndim != 1:
        raise ValueError(f"{kernel}: {name} must be 1-D, got shape {tuple(index.shape)}")
    if index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{kernel}: {name} must be int32 or int64, got {index.dtype}")
    if length is not None and len(index) != length:
        raise ValueError(f"{kernel}: {name} has {len(index)} entries, expected {length}")
    if index.numel():
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= upper:
            raise IndexError(f"{kernel}: {name} values must lie in [0, {upper}), got range [{lo}, {hi}]")


def check_same_device(kernel: str, **tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"{kernel}: all tensors must be on one device, got {devices}")
