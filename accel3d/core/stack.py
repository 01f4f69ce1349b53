"""A stack: an ordered set of accelerators applied to one pipeline."""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from accel3d.core.accelerator import Accelerator
from accel3d.core.pipeline import Pipeline


class StackConflictError(ValueError):
    """Two accelerators target the same stage and at least one of them does not compose."""


class Stack:
    """Attach several accelerators to one pipeline, in order; detach them in reverse.

    A stack has the verbs of an accelerator: ``attach``, ``detach``, ``attached`` and ``applied``.

    Example::

        stack = Stack([HierarchicalDecoding(min_resolution=63)], name="hierarchical")
        with stack.applied(pipeline):       # or stack.attach(pipeline) ... stack.detach()
            result = pipeline.run(inputs)
        stack.stats()   # {"hierarchical": {"queries": ..., ...}}
    """

    def __init__(self, accelerators: Sequence[Accelerator] | Mapping[str, Accelerator] = (), name: str = "custom") -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        if isinstance(accelerators, Mapping):  # {unique name: accelerator}, as configs compose them
            names, accelerators = [str(k) for k in accelerators], list(accelerators.values())
        elif isinstance(accelerators, (str, bytes)) or not isinstance(accelerators, Sequence):
            raise TypeError(f"accelerators: expected a list or a mapping of Accelerator objects, got {type(accelerators).__name__}")
        else:
            names = _unique_names([getattr(a, "name", type(a).__name__) for a in accelerators])
        self.name = name
        self.names = names
        self.accelerators = list(accelerators)
        if len({id(a) for a in self.accelerators}) != len(self.accelerators):
            raise ValueError(f"stack '{name}': the same accelerator object is listed twice")
        for acc in self.accelerators:
            if not isinstance(acc, Accelerator):
                raise TypeError(f"accelerators: expected Accelerator objects, got {type(acc).__name__}")
        self._check_conflicts()
        self._pipeline: Pipeline | None = None

    def __len__(self) -> int:
        return len(self.accelerators)

    @property
    def is_empty(self) -> bool:
        return not self.accelerators

    def _check_conflicts(self) -> None:
        by_stage: dict[str, list[Accelerator]] = defaultdict(list)
        for acc in self.accelerators:
            by_stage[acc.stage].append(acc)
        for stage, accs in by_stage.items():
            if len(accs) > 1 and not all(a.composable for a in accs):
                names = [a.name for a in accs]
                raise StackConflictError(
                    f"stack '{self.name}': accelerators {names} all target stage '{stage}' and do not compose; keep one of them"
                )

    @property
    def attached(self) -> bool:
        """True while any of its accelerators is attached."""
        return any(acc.attached for acc in self.accelerators)

    def attach(self, pipeline: Pipeline) -> Stack:
        """Attach every accelerator to its stage of ``pipeline``; if one fails, the others are detached again."""
        if self._pipeline is not None and self.attached:
            raise RuntimeError(f"stack '{self.name}' is already attached; detach it first")
        targets = [pipeline.stage(acc.stage) for acc in self.accelerators]  # fail before patching anything
        attached: list[Accelerator] = []
        try:
            for acc, target in zip(self.accelerators, targets):
                acc.attach(target)
                attached.append(acc)
        except BaseException:
            for acc in reversed(attached):
                acc.detach()
            raise
        self._pipeline = pipeline
        return self

    def check(self, pipeline: Pipeline) -> None:
        """Everything that can be known before a run: each accelerator attaches to its stage
        (and is detached again, exactly) and passes its own ``check_pipeline(pipeline)``."""
        if self.attached:
            raise RuntimeError(f"stack '{self.name}' is attached; check it before attaching it")
        for acc in self.accelerators:
            check = getattr(acc, "check_pipeline", None)
            if callable(check):
                check(pipeline)
        with self.applied(pipeline):
            pass
        self.reset()

    def detach(self) -> None:
        """Detach every accelerator, last first. Detaching twice is a no-op."""
        for acc in reversed(self.accelerators):
            acc.detach()
        self._pipeline = None

    def apply(self, pipeline: Pipeline) -> Stack:
        """Deprecated name of :meth:`attach`."""
        warnings.warn("Stack.apply is deprecated; use Stack.attach", DeprecationWarning, stacklevel=2)
        return self.attach(pipeline)

    def remove(self) -> None:
        """Deprecated name of :meth:`detach`."""
        warnings.warn("Stack.remove is deprecated; use Stack.detach", DeprecationWarning, stacklevel=2)
        self.detach()

    def reset(self) -> None:
        for acc in self.accelerators:
            acc.reset()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each accelerator's statistics under its unique name in the stack (two of one class do not collide)."""
        return {key: acc.stats() for key, acc in zip(self.names, self.accelerators)}

    def summary(self) -> dict[str, dict[str, Any]]:
        """Each accelerator's headline figures under its unique name."""
        return {key: _call(acc, "summary", {}) for key, acc in zip(self.names, self.accelerators)}

    @contextlib.contextmanager
    def applied(self, pipeline: Pipeline) -> Iterator[Stack]:
        """Attach for the duration of a ``with`` block."""
        self.attach(pipeline)
        try:
            yield self
        finally:
            self.detach()

    def __repr__(self) -> str:
        return f"Stack(name={self.name!r}, accelerators={[a.name for a in self.accelerators]})"


def _unique_names(names: list[str]) -> list[str]:
    """``["kv", "kv", "h"]`` -> ``["kv", "kv_2", "h"]``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _call(acc: Any, method: str, default: Any) -> Any:
    fn = getattr(acc, method, None)
    return fn() if callable(fn) else default


def build_stack(name: str, accelerators: Mapping[str, Any] | None = None) -> Stack:
    """A :class:`Stack` from config: ``accelerators`` maps a unique name to an accelerator config
    (``_target_`` plus knobs, and ``enabled``; a disabled one is left out and named in the stack's name).

    Each config's knobs are checked against its accelerator's signature first, so a misspelled knob
    fails naming the valid ones. Stacks in ``configs/stack/`` build through this (``_recursive_: false``).

    Example::

        build_stack("mine", {"hierarchical": {"_target_": "accel3d.decoding.HierarchicalDecoding", "band": 0.5}})
    """
    from hydra.utils import get_class, instantiate
    from omegaconf import DictConfig, OmegaConf

    from accel3d.core.validate import ArgumentError, check_bool

    if accelerators is None:
        accelerators = {}
    if not isinstance(accelerators, Mapping | DictConfig):
        raise ArgumentError(f"stack.accelerators: expected a mapping of name -> accelerator config, got {accelerators!r}")
    built: dict[str, Any] = {}
    disabled = []
    for key, node in accelerators.items():
        where = f"stack.accelerators.{key}"
        cfg = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
        if not isinstance(cfg, dict) or "_target_" not in cfg:
            raise ArgumentError(f"{where}: expected an accelerator config with a _target_, got {node!r}")
        if not check_bool(f"{where}.enabled", cfg.pop("enabled", True)):
            disabled.append(key)
            continue
        try:
            cls = get_class(cfg["_target_"])
        except Exception as exc:
            raise ArgumentError(f"{where}._target_: cannot import {cfg['_target_']!r} ({exc})") from None
        _check_knobs(where, cls, cfg)
        try:
            built[key] = instantiate(cfg, _convert_="object")
        except Exception as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if isinstance(cause, ValueError | TypeError):
                raise ArgumentError(f"{where}: {cause}") from cause
            raise
    if disabled and built:
        name = f"{name}[{'+'.join(built)}]"
    elif disabled:
        name = f"{name}[none]"
    return Stack(built, name=name)


def _check_knobs(where: str, cls: type, cfg: dict[str, Any]) -> None:
    import inspect

    from accel3d.core.validate import ArgumentError

    params = inspect.signature(cls).parameters
    valid = {p for p, v in params.items() if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}
    if any(v.kind == v.VAR_KEYWORD for v in params.values()):
        valid |= set(getattr(cls, "knobs", lambda: set())())
        if not getattr(cls, "knobs", None):
            return  # takes any keyword; the class checks them itself
    unknown = sorted(k for k in cfg if not k.startswith("_") and k not in valid)
    if unknown:
        raise ArgumentError(f"{where}: unknown knob(s) {unknown}; valid knobs of {cls.__name__}: {sorted(valid)} (and enabled)")
