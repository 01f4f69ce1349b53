"""Shared kernels: Triton on CUDA tensors, a PyTorch reference with the same signature on CPU.

Every kernel lives in a folder with ``reference.py`` (PyTorch) and
``triton_kernels.py`` (Triton); the package function checks the arguments and
dispatches (see :mod:`accel3d.kernels.dispatch` for the ``backend=`` argument and
the ``ACCEL3D_KERNEL_BACKEND`` variable).

Example::

    from accel3d.kernels import gather_rows, packed_sparse_attention, scatter_add_rows, scatter_max_rows
"""

from accel3d.kernels.dispatch import BACKENDS, ENV_VAR, interpreter_enabled, resolve_backend
from accel3d.kernels.gather_scatter import gather_rows, scatter_add_rows, scatter_max_rows
from accel3d.kernels.sparse_attention import packed_sparse_attention

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "gather_rows",
    "interpreter_enabled",
    "packed_sparse_attention",
    "resolve_backend",
    "scatter_add_rows",
    "scatter_max_rows",
]
