"""A stack: an ordered set of accelerators applied to one pipeline."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from accel3d.core.accelerator import Accelerator
from accel3d.core.pipeline import Pipeline


class StackConflictError(ValueError):
    """Two accelerators target the same stage and at least one of them does not compose."""


class Stack:
    """Attach several accelerators to one pipeline, in order; remove them in reverse.

    Example::

        stack = Stack([HierarchicalDecoding(min_resolution=63)], name="hierarchical")
        with stack.applied(pipeline):
            result = pipeline.run(inputs)
        stack.stats()   # {"hierarchical": {"queries": ..., ...}}
    """

    def __init__(self, accelerators: Sequence[Accelerator] = (), name: str = "custom") -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        if isinstance(accelerators, (str, bytes)) or not isinstance(accelerators, Sequence):
            raise TypeError(f"accelerators: expected a list of Accelerator objects, got {type(accelerators).__name__}")
        self.name = name
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

    def apply(self, pipeline: Pipeline) -> Stack:
        if self._pipeline is not None and self.attached:
            raise RuntimeError(f"stack '{self.name}' is already applied; remove it first")
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
            raise RuntimeError(f"stack '{self.name}' is applied; check it before applying it")
        for acc in self.accelerators:
            check = getattr(acc, "check_pipeline", None)
            if callable(check):
                check(pipeline)
        with self.applied(pipeline):
            pass
        self.reset()

    def remove(self) -> None:
        for acc in reversed(self.accelerators):
            acc.detach()
        self._pipeline = None

    def reset(self) -> None:
        for acc in self.accelerators:
            acc.reset()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {acc.name: acc.stats() for acc in self.accelerators}

    @contextlib.contextmanager
    def applied(self, pipeline: Pipeline) -> Iterator[Stack]:
        self.apply(pipeline)
        try:
            yield self
        finally:
            self.remove()

    def __repr__(self) -> str:
        return f"Stack(name={self.name!r}, accelerators={[a.name for a in self.accelerators]})"
