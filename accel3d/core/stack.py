"""A stack: an ordered set of accelerators applied to one pipeline."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from accel3d.core.accelerator import Accelerator, BaseAccelerator
from accel3d.core.config import AcceleratorConfig
from accel3d.core.pipeline import Pipeline, StageMap
from accel3d.core.validate import ArgumentError, check_bool


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
            names = None
        for acc in accelerators:
            if not isinstance(acc, Accelerator):
                raise TypeError(f"accelerators: expected Accelerator objects, got {type(acc).__name__}")
        self.name = name
        self.accelerators = list(accelerators)
        self.names = names if names is not None else _unique_names([a.name for a in self.accelerators])
        if len({id(a) for a in self.accelerators}) != len(self.accelerators):
            raise ValueError(f"stack '{name}': the same accelerator object is listed twice")
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
        if isinstance(pipeline, StageMap):  # a real library's object: its stages route its calls once installed
            pipeline.install([acc.stage for acc in self.accelerators])
        attached: list[Accelerator] = []
        try:
            for acc, target in zip(self.accelerators, targets):
                acc.attach(target)
                attached.append(acc)
        except BaseException:
            for acc in reversed(attached):
                acc.detach()
            if isinstance(pipeline, StageMap):
                pipeline.uninstall()
            raise
        self._pipeline = pipeline
        return self

    def check_stages(self, pipeline: Pipeline, where: str = "stack", hint: str = "") -> None:
        """Refuse a pipeline that lacks a stage this stack targets, naming the stages it has, before anything is patched."""
        missing = sorted({acc.stage for acc in self.accelerators} - set(pipeline.stages))
        if missing:
            raise ArgumentError(
                f"{where}: '{self.name}' targets stage(s) {missing}, which pipeline '{pipeline.name}' does not have "
                f"(its stages: {sorted(pipeline.stages)}){'; ' + hint if hint else ''}"
            )

    def check(self, pipeline: Pipeline) -> None:
        """Everything that can be known before a run: each accelerator attaches to its stage
        (and is detached again, exactly) and passes its own ``check_pipeline(pipeline)``."""
        if self.attached:
            raise RuntimeError(f"stack '{self.name}' is attached; check it before attaching it")
        for acc in self.accelerators:
            acc.check_pipeline(pipeline)
        with self.applied(pipeline):
            pass
        self.reset()

    def detach(self) -> None:
        """Detach every accelerator, last first. Detaching twice is a no-op."""
        for acc in reversed(self.accelerators):
            acc.detach()
        if isinstance(self._pipeline, StageMap):
            self._pipeline.uninstall()
        self._pipeline = None

    def reset(self) -> None:
        for acc in self.accelerators:
            acc.reset()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each accelerator's statistics under its unique name in the stack (two of one class do not collide)."""
        return {key: acc.stats() for key, acc in zip(self.names, self.accelerators)}

    def summary(self) -> dict[str, dict[str, Any]]:
        """Each accelerator's headline figures under its unique name."""
        return {key: acc.summary() for key, acc in zip(self.names, self.accelerators)}

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


def build_stack(name: str, accelerators: Mapping[str, Any] | None = None) -> Stack:
    """A :class:`Stack` from config: ``accelerators`` maps a unique name to an accelerator's config: a
    config object, a Hydra node of its schema (what ``configs/stack/*.yaml`` compose), or a mapping with a
    ``_target_`` (the accelerator class) and knobs. ``enabled: false`` leaves one out and names the rest
    in the stack's name. Every knob is checked by the accelerator's config dataclass, which names the
    valid ones for a misspelled knob. Stacks in ``configs/stack/`` build through this (``_recursive_: false``).

    Example::

        build_stack("mine", {"hierarchical": {"_target_": "accel3d.decoding.HierarchicalDecoding", "band": 0.5}})
        build_stack("mine", {"hierarchical": HierarchicalConfig(band=0.5)})
    """
    if accelerators is None:
        accelerators = {}
    if not _is_mapping(accelerators):
        raise ArgumentError(f"stack.accelerators: expected a mapping of name -> accelerator config, got {accelerators!r}")
    built: dict[str, Any] = {}
    disabled = []
    for key, node in accelerators.items():
        where = f"stack.accelerators.{key}"
        config = accelerator_config_of(where, node)
        if not config.enabled:
            disabled.append(key)
            continue
        built[key] = _import(where, config._target_)(config)
    if disabled and built:
        name = f"{name}[{'+'.join(built)}]"
    elif disabled:
        name = f"{name}[none]"
    return Stack(built, name=name)


def accelerator_config_of(where: str, node: Any) -> AcceleratorConfig:
    """The checked config object that ``node`` (a config, a Hydra node or a mapping with ``_target_``) describes."""
    if isinstance(node, AcceleratorConfig):
        return node
    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    knobs = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(knobs, Mapping):
        raise ArgumentError(f"{where}: expected an accelerator config, got {node!r}")
    knobs = dict(knobs)
    if not (isinstance(schema, type) and issubclass(schema, AcceleratorConfig)):  # untyped: the class names its config
        if "_target_" not in knobs:
            raise ArgumentError(f"{where}: expected an accelerator config with a _target_, got {node!r}")
        check_bool(f"{where}.enabled", knobs.get("enabled", True))
        cls = _import(where, knobs["_target_"])
        schema = cls.Config if isinstance(cls, type) and issubclass(cls, BaseAccelerator) else None
        if schema is None:
            raise ArgumentError(f"{where}._target_: {knobs['_target_']} declares no Config (an AcceleratorConfig) to build it from")
    try:
        return schema.from_knobs(knobs, where=where)
    except ArgumentError as exc:
        raise (exc if str(exc).startswith(where) else ArgumentError(f"{where}: {exc}")) from None


def _import(where: str, target: str) -> Any:
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception as exc:
        raise ArgumentError(f"{where}._target_: cannot import {target!r} ({exc})") from None


def _is_mapping(value: Any) -> bool:
    from omegaconf import DictConfig

    return isinstance(value, Mapping | DictConfig)
