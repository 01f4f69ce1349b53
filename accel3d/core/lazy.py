"""Names of a package that load on first use (PEP 562), so that importing the package imports no torch.

Example::

    # accel3d/decoding/__init__.py
    _EXPORTS = {"HierarchicalConfig": "config", "DenseVolumeDecoder": "accel3d.geometry.volume"}
    __getattr__ = lazy_exports(__name__, _EXPORTS)
    __all__ = sorted(_EXPORTS)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a submodule of ``package``, or an absolute
    module path) when ``name`` is first read."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = exports[name]
        return getattr(import_module(module if module.startswith("accel3d.") else f"{package}.{module}"), name)

    return __getattr__
