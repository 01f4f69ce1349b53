"""Reversible attribute patches: the mechanism accelerators attach with.

Patches go on the instance (never the class), so other instances are untouched.
Each patched attribute keeps a *chain*: what the instance held before any patch
(including the absence of an instance attribute, and ``nn.Module`` children,
parameters and buffers, which live in the module's registries), then one link
per patch in the order they were made. Removing a patch removes its link and
rebuilds the attribute from the links that remain, so patches come off in any
order and the last removal puts back exactly what was there.

A link is *exclusive* when its owner does not compose with other patches of the
same attribute (two ``Hash3D`` on one U-Net): a second patch of that attribute is
then refused with :class:`PatchConflictError` instead of stacking silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MISSING = object()


class PatchConflictError(RuntimeError):
    """An attribute is already patched by an owner that does not compose with the new patch."""


def _current(obj: Any, name: str) -> Any:
    """What ``obj`` itself holds under ``name`` (not what its class provides), or ``_MISSING``."""
    for registry in ("_modules", "_parameters", "_buffers"):  # torch.nn.Module keeps these apart
        store = getattr(obj, "__dict__", {}).get(registry)
        if isinstance(store, dict) and name in store:
            return store[name]
    if hasattr(obj, "__dict__"):
        return vars(obj).get(name, _MISSING)
    return getattr(obj, name, _MISSING)


def _put(obj: Any, name: str, value: Any) -> None:
    if value is _MISSING:
        if _current(obj, name) is not _MISSING:
            delattr(obj, name)
    else:
        setattr(obj, name, value)


@dataclass
class _Link:
    owner: PatchSet
    wrapper: Callable[[Any], Any] | None  # wrap: called with the attribute below this link
    value: Any  # set: the value itself


@dataclass
class _Chain:
    obj: Any
    name: str
    original: Any
    links: list[_Link]
    applied: Any = _MISSING

    def rebuild(self) -> None:
        """Put the original back, then apply the remaining links in order."""
        if self.applied is not _MISSING and _current(self.obj, self.name) is not self.applied:
            warnings.warn(
                f"{type(self.obj).__name__}.{self.name} was replaced outside accel3d while patched; that replacement is discarded",
                stacklevel=4,
            )
        _put(self.obj, self.name, self.original)
        if not self.links:
            self.applied = _MISSING
            return
        value = getattr(self.obj, self.name, _MISSING)  # the class's bound method where the instance holds nothing
        for link in self.links:
            value = link.value if link.wrapper is None else link.wrapper(value)
        setattr(self.obj, self.name, value)
        self.applied = _current(self.obj, self.name)


# (id(obj), name) -> chain; the chain holds obj, so the id stays valid while any patch is on.
_CHAINS: dict[tuple[int, str], _Chain] = {}


class PatchSet:
    """The patches of one owner (an accelerator); undone together, in any order relative to other owners.

    Args:
        label: who patches, for error messages (an accelerator's name).
        exclusive: refuse to share a patched attribute with any other owner; None
            (the default) reads it from ``owner.composable`` (not composable: exclusive).
        owner: the object that ``detach_all`` asks to ``detach()`` (an accelerator).

    Example::

        patches = PatchSet("doubler")
        patches.wrap(module, "forward", lambda original: lambda *a, **k: original(*a, **k) * 2)
        ...
        patches.restore()   # module.forward is the class's forward again
    """

    def __init__(self, label: str = "patch", exclusive: bool | None = None, owner: Any = None) -> None:
        self._label = label
        self._exclusive = exclusive
        self.owner = owner
        self._chains: list[_Chain] = []  # one entry per patch made, oldest first

    def __len__(self) -> int:
        return len(self._chains)

    @property
    def label(self) -> str:
        return str(getattr(self.owner, "name", self._label))

    @property
    def exclusive(self) -> bool:
        """Given at construction, or (None) read from the owner: an accelerator that does not compose is exclusive."""
        if self._exclusive is not None:
            return self._exclusive
        return self.owner is not None and not getattr(self.owner, "composable", False)

    def set(self, obj: Any, name: str, value: Any) -> None:
        """Set ``obj.name = value`` until :meth:`restore`."""
        self._add(obj, name, _Link(self, None, value))

    def wrap(self, obj: Any, name: str, wrapper: Callable[[Callable], Callable]) -> None:
        """Replace the callable ``obj.name`` with ``wrapper(original)``.

        ``wrapper`` may be called again with a different ``original`` when another
        owner's patch of the same attribute comes off, so it should only build a closure.
        """
        if not callable(getattr(obj, name, None)):
            raise TypeError(f"{type(obj).__name__}.{name} is not callable and cannot be wrapped")
        self._add(obj, name, _Link(self, wrapper, None))

    def _add(self, obj: Any, name: str, link: _Link) -> None:
        key = (id(obj), name)
        chain = _CHAINS.get(key)
        if chain is not None and chain.links:
            others = [lk.owner for lk in chain.links if lk.owner is not self]
            if others and (self.exclusive or any(o.exclusive for o in others)):
                labels = ", ".join(sorted({o.label for o in others}))
                raise PatchConflictError(
                    f"{self.label}: {type(obj).__name__}.{name} is already patched by {labels}, which does not compose with it; "
                    f"detach that accelerator first (accel3d.core.detach_all(obj) detaches every accelerator on an object)"
                )
        fresh = chain is None
        if fresh:
            chain = _Chain(obj, name, _current(obj, name), [])
            _CHAINS[key] = chain
        chain.links.append(link)
        try:
            chain.rebuild()
        except BaseException:
            chain.links.remove(link)
            chain.rebuild()
            if not chain.links:
                del _CHAINS[key]
            raise
        self._chains.append(chain)

    def restore(self) -> None:
        """Remove this owner's patches, newest first; other owners' patches stay in place."""
        while self._chains:
            chain = self._chains.pop()
            chain.links = [lk for lk in chain.links if lk.owner is not self]
            chain.rebuild()
            if not chain.links:
                _CHAINS.pop((id(chain.obj), chain.name), None)


def _related(obj: Any) -> set[int]:
    """ids of ``obj``, its pipeline stages (``obj.stages``) and, for modules, all their submodules."""
    roots = [obj, *getattr(obj, "stages", {}).values()] if isinstance(getattr(obj, "stages", None), dict) else [obj]
    ids = set()
    for root in roots:
        ids.add(id(root))
        modules = getattr(root, "modules", None)
        if callable(modules) and hasattr(root, "_modules"):  # torch.nn.Module
            ids.update(id(m) for m in modules())
    return ids


def patch_owners(obj: Any) -> list[Any]:
    """The owners (accelerators, or bare PatchSets) with patches on ``obj``, its stages or submodules, oldest first."""
    ids = _related(obj)
    owners: list[Any] = []
    for (oid, _), chain in list(_CHAINS.items()):
        if oid in ids:
            for link in chain.links:
                who = link.owner.owner if link.owner.owner is not None else link.owner
                if all(who is not o for o in owners):
                    owners.append(who)
    return owners


def detach_all(obj: Any) -> int:
    """Detach every accelerator that patches ``obj`` (a module, a stage or a whole pipeline); returns how many.

    Example::

        detach_all(unet)   # after re-running a notebook cell that lost the old Hash3D
    """
    owners = patch_owners(obj)
    for who in reversed(owners):
        if isinstance(who, PatchSet):
            who.restore()
        else:
            who.detach()
    return len(owners)
