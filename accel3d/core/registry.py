"""Accelerators by name.

Strategy packages register their classes with :func:`register_accelerator`. A
name lookup imports every ``accel3d`` subpackage once, so a new strategy folder
is found without editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

_REGISTRY: dict[str, type] = {}
_discovered = False
C = TypeVar("C", bound=type)


def register_accelerator(name: str) -> Callable[[C], C]:
    """Class decorator: make the accelerator constructible as ``create_accelerator(name)``."""

    def decorate(cls: C) -> C:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"accelerator name '{name}' is already registered by {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    import accel3d

    for info in pkgutil.iter_modules(accel3d.__path__):
        if info.ispkg:
            importlib.import_module(f"accel3d.{info.name}")
    _discovered = True


def available_accelerators() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def create_accelerator(name: str, **kwargs: Any) -> Any:
    """Instantiate a registered accelerator by name."""
    _discover()
    if name not in _REGISTRY:
        raise KeyError(f"accelerator: unknown name '{name}'; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)
