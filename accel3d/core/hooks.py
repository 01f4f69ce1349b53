"""Reversible attribute patches: the mechanism accelerators attach with.

Patches go on the instance (never the class), so other instances are untouched,
and :meth:`PatchSet.restore` puts back exactly what was there, including the
absence of an instance attribute and ``nn.Module`` children, parameters and
buffers (which live in the module's registries, not its ``__dict__``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MISSING = object()


def _current(obj: Any, name: str) -> Any:
    """What ``obj`` itself holds under ``name`` (not what its class provides), or ``_MISSING``."""
    for registry in ("_modules", "_parameters", "_buffers"):  # torch.nn.Module keeps these apart
        store = getattr(obj, "__dict__", {}).get(registry)
        if isinstance(store, dict) and name in store:
            return store[name]
    if hasattr(obj, "__dict__"):
        return vars(obj).get(name, _MISSING)
    return getattr(obj, name, _MISSING)


class PatchSet:
    """A stack of instance-attribute patches that can be undone in reverse order.

    Example::

        patches = PatchSet()
        patches.wrap(module, "forward", lambda original: lambda *a, **k: original(*a, **k) * 2)
        ...
        patches.restore()   # module.forward is the class's forward again
    """

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def __len__(self) -> int:
        return len(self._undo)

    def set(self, obj: Any, name: str, value: Any) -> None:
        """Set ``obj.name = value``, remembering what the instance held before."""
        previous = _current(obj, name)
        setattr(obj, name, value)
        self._undo.append((obj, name, previous))  # only once the patch is really in place

    def wrap(self, obj: Any, name: str, wrapper: Callable[[Callable], Callable]) -> None:
        """Replace the bound callable ``obj.name`` with ``wrapper(original)``."""
        original = getattr(obj, name)
        if not callable(original):
            raise TypeError(f"{type(obj).__name__}.{name} is not callable and cannot be wrapped")
        self.set(obj, name, wrapper(original))

    def restore(self) -> None:
        """Undo every patch, newest first."""
        while self._undo:
            obj, name, previous = self._undo.pop()
            if previous is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, previous)
