"""The shared ``Accelerator`` protocol and a base class that implements its bookkeeping."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol, runtime_checkable

from accel3d.core.config import AcceleratorConfig, resolve_config
from accel3d.core.hooks import PatchSet
from accel3d.core.stats import Statistics
from accel3d.core.validate import ArgumentError


@runtime_checkable
class Accelerator(Protocol):
    """What every strategy implements.

    ``stage`` names the pipeline stage it targets (``denoiser``, ``volume_decoder``,
    ``ss_sampler``, ``slat_sampler``, ``mesh_decoder``, ...). ``attach`` patches that
    stage's object; ``detach`` leaves it exactly as before; ``reset`` clears per-run
    state between generations; ``stats`` reports what it did. The job layer reads the
    rest: ``summary`` (headline figures), ``ceiling`` (the speedup its skipped work allows),
    ``excluded_seconds`` (time spent only measuring itself), ``fell_back`` (why it did the
    full work after all) and ``check_pipeline`` (refuse a pipeline before any work).
    :class:`BaseAccelerator` has defaults for all of them.
    """

    name: str
    stage: str
    composable: bool

    def attach(self, target: Any) -> None: ...

    def detach(self) -> None: ...

    def reset(self) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def summary(self) -> dict[str, float]: ...

    def ceiling(self) -> float | None: ...

    def excluded_seconds(self) -> float: ...

    def fell_back(self) -> str | None: ...

    def check_pipeline(self, pipeline: Any) -> None: ...

    @property
    def attached(self) -> bool: ...


class BaseAccelerator:
    """Bookkeeping for accelerators: reversible patches, statistics, attach state.

    Subclasses set ``Config`` to their :class:`~accel3d.core.config.AcceleratorConfig` (which states
    the name, the stage and the knobs once; ``name`` and ``stage`` are copied from it) and implement
    :meth:`_attach`, which patches the target only through ``self.patches`` so that detach is exact.
    The constructor takes a config object or its knobs as keywords; ``self.config`` holds it.
    (A quick experiment may instead set ``name`` and ``stage`` by hand and take no knobs; it then
    cannot be named in a config file.)

    Example::

        @dataclass(frozen=True)
        class DoublerConfig(AcceleratorConfig):
            NAME: ClassVar[str] = "doubler"
            STAGE: ClassVar[str] = "denoiser"
            _target_: str = "mypkg.Doubler"
            factor: float = knob(2.0, "what the output is multiplied by", check_float)

        class Doubler(BaseAccelerator):
            Config = DoublerConfig

            def _attach(self, target):
                self.patches.wrap(target, "forward", lambda f: lambda x: f(x) * self.config.factor)

        acc = Doubler(factor=3.0)          # or Doubler(DoublerConfig(factor=3.0))
        with acc.applied(module):
            module(x)          # tripled
        module(x)              # original again
    """

    Config: ClassVar[type[AcceleratorConfig] | None] = None
    name: ClassVar[str] = "accelerator"
    stage: ClassVar[str] = ""
    composable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        config = cls.__dict__.get("Config")
        if config is not None:  # the name and stage are the config's, by construction
            cls.name, cls.stage = config.NAME, config.STAGE

    def __init__(self, config: AcceleratorConfig | None = None, **knobs: Any) -> None:
        cls = type(self).Config
        if cls is None:
            if config is not None or knobs:
                raise TypeError(f"{type(self).__name__} declares no Config, so it takes no knobs")
            self.config: Any = None
        else:
            self.config = resolve_config(cls, config, knobs)
            if not self.config.enabled:  # only a stack reads it: it leaves a disabled accelerator out
                raise ArgumentError(f"{cls.NAME}: enabled=false leaves an accelerator out of a stack; one built directly is always on")
        # Non-composable accelerators refuse to share a patched attribute (two Hash3D on one U-Net).
        self.patches = PatchSet(owner=self)
        self.statistics = Statistics()
        self._target: Any = None

    @property
    def attached(self) -> bool:
        return self._target is not None

    def attach(self, target: Any) -> None:
        if self.attached:
            raise RuntimeError(f"{self.name}: already attached to {type(self._target).__name__}; detach it first")
        try:
            self._attach(target)
        except BaseException:
            self.patches.restore()
            raise
        self._target = target

    def detach(self) -> None:
        """Remove this accelerator's patches; others on the same objects stay. Detaching twice is a no-op."""
        self.patches.restore()
        self._target = None

    def reset(self) -> None:
        self.statistics.reset()

    def stats(self) -> dict[str, float]:
        return self.statistics.as_dict()

    def summary(self) -> dict[str, float]:
        """The headline figures of :meth:`stats` that a results table shows (default: none)."""
        return {}

    def ceiling(self) -> float | None:
        """The largest speedup of its stage that the work it skipped allows (None: unknown).

        A measured speedup above it is noise, and the job flags it as such."""
        return None

    def excluded_seconds(self) -> float:
        """Seconds spent only on measuring itself (fidelity checks), to take out of its stage's time."""
        return 0.0

    def fell_back(self) -> str | None:
        """Why it did the full work after all (a dense fallback), or None."""
        return None

    def check_pipeline(self, pipeline: Any) -> None:
        """Refuse a pipeline it cannot serve, before any work (default: accept every pipeline)."""

    @contextlib.contextmanager
    def applied(self, target: Any) -> Iterator[BaseAccelerator]:
        """Attach for the duration of a ``with`` block."""
        self.attach(target)
        try:
            yield self
        finally:
            self.detach()

    def _attach(self, target: Any) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stage={self.stage!r}, attached={self.attached})"


def stage_reference(target: Any) -> Callable[[], Any]:
    """A call that gives ``target`` back while it lives: a weak reference where it takes one, so that an accelerator
    that read its stage once (its steps, its resolution, its conventions) does not keep the stage, and the model it
    belongs to, alive after detaching. Returns None once the stage is gone.

    Example::

        stage = stage_reference(target)
        self._steps = lambda: stage_steps(stage()) if stage() is not None else None
    """
    try:
        return weakref.ref(target)
    except TypeError:  # no weak references (a builtin, a class with __slots__): a plain reference
        return lambda: target
