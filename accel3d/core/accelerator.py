"""The shared ``Accelerator`` protocol and a base class that implements its bookkeeping."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol, runtime_checkable

from accel3d.core.hooks import PatchSet
from accel3d.core.stats import Statistics


@runtime_checkable
class Accelerator(Protocol):
    """What every strategy implements.

    ``stage`` names the pipeline stage it targets (``denoiser``, ``volume_decoder``,
    ``ss_sampler``, ``slat_sampler``, ``mesh_decoder``, ...). ``attach`` patches that
    stage's object; ``detach`` leaves it exactly as before; ``reset`` clears per-run
    state between generations; ``stats`` reports what it did.
    """

    name: str
    stage: str
    composable: bool

    def attach(self, target: Any) -> None: ...

    def detach(self) -> None: ...

    def reset(self) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def summary(self) -> dict[str, float]: ...

    @property
    def attached(self) -> bool: ...


class BaseAccelerator:
    """Bookkeeping for accelerators: reversible patches, statistics, attach state.

    Subclasses set ``name`` and ``stage`` and implement :meth:`_attach`, which
    patches the target only through ``self.patches`` so that detach is exact.

    Example::

        class Doubler(BaseAccelerator):
            name, stage = "doubler", "denoiser"

            def _attach(self, target):
                self.patches.wrap(target, "forward", lambda f: lambda x: f(x) * 2)

        acc = Doubler()
        with acc.applied(module):
            module(x)          # doubled
        module(x)              # original again
    """

    name: ClassVar[str] = "accelerator"
    stage: ClassVar[str] = ""
    composable: ClassVar[bool] = False

    def __init__(self) -> None:
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
