"""Choose between a kernel's Triton implementation and its PyTorch reference.

``auto`` (the default) runs Triton on CUDA tensors and PyTorch on CPU tensors.
Force either with the ``backend=`` argument of any kernel or, for a whole
process, the ``ACCEL3D_KERNEL_BACKEND`` environment variable (``auto``,
``torch`` or ``triton``); the argument wins over the variable. Triton on CPU
tensors needs ``TRITON_INTERPRET=1`` set before the kernels are first imported
(that is how the tests run them).
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "torch", "triton")
ENV_VAR = "ACCEL3D_KERNEL_BACKEND"


def interpreter_enabled() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def resolve_backend(kernel: str, *tensors: torch.Tensor, backend: str | None = None) -> str:
    """``"torch"`` or ``"triton"`` for a call of ``kernel`` on ``tensors``.

    Example::

        resolve_backend("gather_rows", src, index)                    # "torch" on CPU
        resolve_backend("gather_rows", src, index, backend="triton")  # needs CUDA or TRITON_INTERPRET=1
    """
    choice = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    if not isinstance(choice, str):
        raise ValueError(f"{kernel}: backend must be one of {BACKENDS}, got {choice!r}")
    choice = choice.lower()
    if choice not in BACKENDS:
        source = "backend" if backend is not None else ENV_VAR
        raise ValueError(f"{kernel}: {source} must be one of {BACKENDS}, got {choice!r}")
    on_cuda = all(t.is_cuda for t in tensors)
    if choice == "auto":
        return "triton" if on_cuda else "torch"
    if choice == "triton" and not on_cuda:
        if not interpreter_enabled():
            devices = sorted({str(t.device) for t in tensors})
            raise RuntimeError(
                f"{kernel}: the Triton backend needs CUDA tensors (got {devices}); "
                "set TRITON_INTERPRET=1 before importing accel3d to run it on the CPU interpreter"
            )
        if any(t.dtype == torch.bfloat16 for t in tensors):
            raise TypeError(f"{kernel}: Triton's CPU interpreter computes bfloat16 wrongly; use float32/float16 or the torch backend")
    if choice == "triton" and torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError(f"{kernel}: the Triton kernels have no backward; use backend='torch' for autograd or run under torch.no_grad()")
    return choice
