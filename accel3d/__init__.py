"""accel3d: training-free accelerators for 3D generation.

Subpackages: ``core`` (protocol, stacks, hooks), ``decoding`` (FlashVDM volume decoding),
``caching`` (Hash3D), ``pruning`` (Fast-SAM3D), ``geometry``, ``models``, ``pipelines``, ``jobs``.
The one-call forms ``accel3d.apply``, ``remove``, ``load_stack`` and ``available_stacks`` load on
first use, so ``import accel3d`` (and ``accel3d --version``) does not import torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "apply", "available_stacks", "load_stack", "remove"]


def __getattr__(name: str) -> Any:
    if name in ("apply", "available_stacks", "load_stack", "remove"):
        from accel3d import api

        return getattr(api, name)
    raise AttributeError(f"module 'accel3d' has no attribute {name!r}")
