"""Modality-aware step caching (Fast-SAM3D, SS stage): Taylor for shape tokens, an anchored blend for layout.

Attaches to a flow sampler stage (``ss_sampler``): any object with
``velocity(x, t, cond, step, **kw)`` and ``token_groups``, accel3d's
:class:`~accel3d.models.image_to_3d.FlowSampler` or a TRELLIS / SAM 3D Objects adapter. On
full steps (warm-up, every ``stride``, the last) it calls the velocity and keeps it; on the
others it returns, per token group,

- ``v_lin``, the order-``order`` extrapolation of the last full evaluations (every group);
- for the ``layout_groups``: ``beta * v_lin + (1 - beta) * v_anchor``, ``v_anchor`` the last
  full evaluation (the paper's blend; SAM3D's released code overwrites it with ``v_lin``,
  which is ``beta = 1`` here).

The cached velocity replaces the whole guided velocity, so both CFG passes are saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from accel3d.core.accelerator import BaseAccelerator, stage_reference
from accel3d.core.flow_stage import check_flow_stage, group_tensors, stage_steps
from accel3d.core.validate import ArgumentError
from accel3d.pruning.config import ModalityCacheConfig
from accel3d.pruning.extrapolation import extrapolate, is_full_step
from accel3d.pruning.state import finite, rebuild, signature


class TrajectoryHistory:
    """Full evaluations of the trajectory in progress: ``[(step, {group: {key: tensor}})]``, restarted at step 0."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.points: list[tuple[int, dict[str, dict[str, Tensor]]]] = []
        self.last_step = -1
        self.signature: tuple | None = None

    def starts(self, step: int, leaves_signature: tuple) -> bool:
        """Whether ``step`` begins a new trajectory (step 0, a step back, or differently shaped states); clears if so."""
        new = step <= self.last_step or step == 0 or leaves_signature != self.signature
        if new:
            self.points.clear()
            self.signature = leaves_signature
        self.last_step = step
        return new

    def add(self, step: int, leaves: dict[str, dict[str, Tensor]]) -> None:
        self.points = (self.points + [(step, leaves)])[-self.keep :]

    def series(self, group: str, key: str) -> list[tuple[int, Tensor]]:
        return [(s, leaves[group][key]) for s, leaves in self.points]


class ModalityStepCache(BaseAccelerator):
    """Fast-SAM3D's modality-aware step caching on the ``ss_sampler`` stage.

    Knobs (declared once in :class:`~accel3d.pruning.config.ModalityCacheConfig`): ``warmup``,
    ``stride`` (``k``: a full evaluation every ``k`` steps after the warm-up), ``beta`` (the layout
    blend), ``order`` (Taylor order) and ``layout_groups`` (the token groups that get the anchored
    blend; a stage that declares one group only, as TRELLIS's SS flow does, gets plain Taylor; a
    stage with several groups must declare each named one).

    Example::

        cache = ModalityStepCache(stride=3, beta=0.7)
        with cache.applied(pipeline.stage("ss_sampler")):
            result = pipeline.run(inputs)
        cache.stats()   # {"full_steps": 11, "cached_steps": 14, ...}
    """

    Config = ModalityCacheConfig

    def __init__(self, config: ModalityCacheConfig | None = None, **knobs: Any) -> None:
        super().__init__(config, **knobs)
        self.history = TrajectoryHistory(self.config.order + 1)
        self._groups: dict[str, tuple[str, ...]] = {}
        self._anchored: tuple[str, ...] = ()
        self._steps: Callable[[], int | None] = lambda: None

    def _attach(self, target: Any) -> None:
        self._groups = check_flow_stage(target, self.name)
        missing = [g for g in self.config.layout_groups if g not in self._groups]
        if missing and len(self._groups) > 1:
            raise ArgumentError(
                f"layout_groups: {missing} are not token groups of {type(target).__name__}, which declares "
                f"{sorted(self._groups)}; name its layout groups (or [] for none)"
            )
        self._anchored = tuple(g for g in self.config.layout_groups if g in self._groups)
        stage = stage_reference(target)
        self._steps = lambda: stage_steps(stage()) if stage() is not None else None
        self.history = TrajectoryHistory(self.config.order + 1)
        self.patches.wrap(target, "velocity", self._wrap)

    def reset(self) -> None:
        super().reset()
        self.history = TrajectoryHistory(self.config.order + 1)

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def velocity(x: Any, t: Any, cond: Any, step: int, *args: Any, **kwargs: Any) -> Any:
            leaves_in = group_tensors(x, self._groups)
            if self.history.starts(step, signature(leaves_in)):
                self.statistics.add("trajectories")
            # extrapolation needs two full evaluations (order 2 with only two uses order 1)
            full = is_full_step(step, self._steps(), self.config.warmup, self.config.stride) or len(self.history.points) < 2
            if not full:
                self.statistics.add("cached_steps")
                return rebuild(x, self._predict(step))
            v = original(x, t, cond, step, *args, **kwargs)
            self.statistics.add("full_steps")
            leaves = group_tensors(v, self._groups)
            if finite(leaves):
                self.history.add(step, leaves)
            else:  # never cached; the history restarts, so the next steps run in full until two are finite again
                self.statistics.add("nan_steps")
                self.history.points.clear()
            return v

        return velocity

    def _predict(self, step: int) -> dict[str, dict[str, Tensor]]:
        out: dict[str, dict[str, Tensor]] = {}
        anchor = self.history.points[-1][1]
        for group, keys in anchor.items():
            out[group] = {}
            for key in keys:
                v_lin = extrapolate(self.history.series(group, key), step, self.config.order)
                if group in self._anchored:
                    v_lin = self.config.beta * v_lin + (1 - self.config.beta) * anchor[group][key]
                out[group][key] = v_lin
        return out

    def summary(self) -> dict[str, float]:
        c = self.statistics.counters
        total = c.get("full_steps", 0) + c.get("cached_steps", 0)
        return {"ss_full_step_fraction": c.get("full_steps", 0) / total} if total else {}

    def ceiling(self) -> float | None:
        c = self.statistics.counters
        return (c.get("full_steps", 0) + c.get("cached_steps", 0)) / c["full_steps"] if c.get("full_steps") else None
