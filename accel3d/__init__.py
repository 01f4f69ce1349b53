"""accel3d: training-free accelerators for 3D generation.

Subpackages: ``core`` (protocol, stacks, hooks), ``decoding`` (FlashVDM volume decoding),
``caching`` (Hash3D), ``pruning`` (Fast-SAM3D), ``geometry``, ``models``, ``pipelines``.
"""

__version__ = "0.1.0"

from accel3d.api import apply, available_stacks, load_stack, remove  # noqa: E402

__all__ = ["__version__", "apply", "available_stacks", "load_stack", "remove"]
