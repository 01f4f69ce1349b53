"""accel3d: training-free accelerators for 3D generation.

Subpackages: ``core`` (protocol, stacks, hooks), ``decoding`` (FlashVDM volume decoding),
``caching`` (Hash3D), ``pruning`` (Fast-SAM3D), ``geometry``, ``models``, ``pipelines``.
"""

__version__ = "0.1.0"
