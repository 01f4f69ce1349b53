"""Spatiotemporal token carving with adaptive step skipping (Fast-SAM3D, SLaT stage).

Attaches to a flow sampler stage (``slat_sampler``) whose state is one token tensor
``[1, N, C]`` (or a sparse tensor with ``.feats``) and whose ``velocity`` takes the tokens'
per-token arguments (``coords`` ``[1, N, 3]``, ``mask``) as keywords. Each step is one of:

- **skipped** (after ``warmup``, while the accumulated relative change ``E`` stays below
  ``skip_threshold``): ``v = x_t + (v_last - x_last)`` from the last computed step, no model call;
  ``E += eps``, ``eps = k mean|x_t - x_prev| / mean|v_prev|``, ``k`` the trajectory's rate
  ``|dv| / |dx|`` between computed steps (an EMA 0.7/0.3, or the latest, the paper's curvature);
- **computed**, ``E`` reset: from ``warmup`` on, the ``ratio`` of tokens with the lowest saliency
  (:func:`~accel3d.pruning.saliency.token_saliency`) keep their previous velocity and the rest go
  through the model as a smaller token set, gathered and scattered back with
  :func:`accel3d.kernels.gather_rows` / :func:`accel3d.kernels.scatter_add_rows`; a token cached
  ``max_stale`` steps in a row is forced to update.

``ratio=0`` and ``skip_threshold=0`` compute every step in full, bit for bit.

Refused before any work, naming the stage's type: at attach, a stage whose token groups split the
state into keys or into several groups (it is not one token tensor); at the first step of each
trajectory, before the model is called, a state that is no tensor, a plain state that is not
``[B, N, C]`` tokens while carving (``ratio > 0``), ``coords`` that are not one ``[1, N, 3]`` row per
token or are negative, and a ``resolution`` smaller than the structure (a coordinate ``>= resolution``;
checked at attach already where the stage states its grid side as an int ``resolution``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from accel3d.core.accelerator import BaseAccelerator, stage_reference
from accel3d.core.flow_stage import check_flow_stage, stage_steps, state_tensors, with_tensor
from accel3d.core.validate import ArgumentError
from accel3d.kernels import gather_rows, scatter_add_rows
from accel3d.pruning.config import TokenCarvingConfig
from accel3d.pruning.saliency import carve, frequency_score, grid_side, token_saliency


class SlatTrajectory:
    """What one SLaT trajectory has seen so far (cleared at its step 0)."""

    def __init__(self) -> None:
        self.last_step = -1
        self.shape: tuple | None = None
        self.prev_x: Tensor | None = None  # the state at the last step (computed or skipped)
        self.prev_v: Tensor | None = None  # the velocity returned at the last step
        self.prev_prev_v: Tensor | None = None
        self.computed_x: Tensor | None = None  # the state and velocity at the last computed step
        self.computed_v: Tensor | None = None
        self.rate: float | None = None  # k: |dv| / |dx| between computed steps
        self.error = 0.0  # E: accumulated relative change since the last computed step
        self.stale: Tensor | None = None  # per token: steps cached in a row
        self.freq: Tensor | None = None  # per token: S_freq (the coordinates do not change in a trajectory)


def _mean_abs(x: Tensor) -> float:
    return float(x.abs().float().mean())


class TokenCarving(BaseAccelerator):
    """Fast-SAM3D's spatiotemporal token carving with adaptive step skipping on the ``slat_sampler`` stage.

    Knobs (declared once in :class:`~accel3d.pruning.config.TokenCarvingConfig`): ``warmup``,
    ``ratio`` (share of tokens carved on computed steps), ``max_stale``, ``gamma`` and ``weighting``
    (the saliency), ``freq_radius`` and ``resolution`` (``S_freq``), ``skip_threshold`` and ``rate``
    (step skipping), ``force_last``, ``token_kwargs`` (the velocity's keyword arguments that hold one
    row per token) and ``seed`` (the random scores of ``weighting="random"``).

    Example::

        carving = TokenCarving(ratio=0.1, skip_threshold=1.5)
        with carving.applied(pipeline.stage("slat_sampler")):
            result = pipeline.run(inputs)
        carving.stats()   # model_calls, skipped_steps, tokens_computed, tokens_dense, ...
    """

    Config = TokenCarvingConfig

    def __init__(self, config: TokenCarvingConfig | None = None, **knobs: Any) -> None:
        super().__init__(config, **knobs)
        self._generator = torch.Generator().manual_seed(self.config.seed)  # the random-drop baseline's scores
        self.trajectory = SlatTrajectory()
        self._steps: Callable[[], int | None] = lambda: None
        self._stage = "the stage"  # its type's name, for the errors of the first step

    def _attach(self, target: Any) -> None:
        groups = check_flow_stage(target, self.name)
        stage = type(target).__name__
        if len(groups) != 1 or next(iter(groups.values())):
            raise TypeError(
                f"{self.name}: cannot carve the state of {stage}: its token groups {groups} split it into "
                "several groups or keys, so it is not one token tensor; expected a stage whose state is one "
                "[1, N, C] token tensor (one token group of the whole state, e.g. {'slat': ()}), as the slat_sampler's"
            )
        side = getattr(target, "resolution", None)
        if self.config.resolution is not None and isinstance(side, int) and not isinstance(side, bool):
            if side > self.config.resolution:
                raise ArgumentError(
                    f"resolution: {self.config.resolution} is smaller than the structure grid of {stage} (side {side}); "
                    f"set resolution >= {side}, or None (the smallest power of two holding the coordinates)"
                )
        self._stage = stage
        stage = stage_reference(target)
        self._steps = lambda: stage_steps(stage()) if stage() is not None else None
        self.trajectory = SlatTrajectory()
        self.patches.wrap(target, "velocity", self._wrap)

    def reset(self) -> None:
        super().reset()
        self.trajectory = SlatTrajectory()
        self._generator = torch.Generator().manual_seed(self.config.seed)

    # ------------------------------------------------------------------ one step
    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def velocity(x: Any, t: Any, cond: Any, step: int, **kwargs: Any) -> Any:
            try:
                tokens = state_tensors(x)
            except TypeError as exc:
                raise TypeError(f"{self.name}: cannot carve the state of {self._stage}: {exc}") from None
            tr = self._trajectory_for(step, x, tokens, kwargs)
            self.statistics.add("steps")
            self.statistics.add("tokens_dense", tokens.shape[0] * tokens.shape[1])
            if self._skips(step, tokens, tr):
                out = tokens + (tr.computed_v - tr.computed_x)  # v = x_t + (v_last - x_last)
                self._remember(tr, tokens, out, computed=False)
                self.statistics.add("skipped_steps")
                return with_tensor(x, out)
            return self._compute(original, x, tokens, t, cond, step, kwargs, tr)

        return velocity

    def _check_first_step(self, x: Any, tokens: Tensor, kwargs: dict) -> None:
        """Refuse, before the trajectory's first model call, a state or coordinates it cannot carve (see the module)."""
        plain = isinstance(x, Tensor)
        if plain and self.config.ratio > 0 and tokens.ndim != 3:
            raise TypeError(
                f"{self.name}: cannot carve the state of {self._stage}: expected a [B, N, C] token tensor "
                f"(one row per token), got shape {tuple(tokens.shape)}"
            )
        coords = kwargs.get("coords")
        if not isinstance(coords, Tensor) or coords.numel() == 0:
            return
        carving = plain and self.config.ratio > 0 and tokens.shape[0] == 1  # what _carved reads the coordinates for
        if carving and tuple(coords.shape) != (1, tokens.shape[1], 3):
            raise ValueError(
                f"coords: {self._stage} passes coordinates of shape {tuple(coords.shape)} with {tokens.shape[1]} tokens; "
                f"expected one [x, y, z] row per token, (1, {tokens.shape[1]}, 3)"
            )
        low, high = int(coords.min()), int(coords.max())
        if carving and low < 0:
            raise ValueError(f"coords: {self._stage} passes a negative voxel coordinate ({low}); expected grid indices >= 0")
        if self.config.resolution is not None and high >= self.config.resolution:
            raise ArgumentError(
                f"resolution: {self.config.resolution} is smaller than the structure of {self._stage}: its voxel coordinates "
                f"reach {high}, so the grid side must be at least {high + 1}; set resolution >= {high + 1}, or None "
                "(the smallest power of two holding the coordinates)"
            )

    def _trajectory_for(self, step: int, x: Any, tokens: Tensor, kwargs: dict) -> SlatTrajectory:
        tr = self.trajectory
        if step == 0 or step <= tr.last_step or tuple(tokens.shape) != tr.shape:
            self._check_first_step(x, tokens, kwargs)
            tr = self.trajectory = SlatTrajectory()
            tr.shape = tuple(tokens.shape)
            self.statistics.add("trajectories")
        tr.last_step = step
        return tr

    def _is_last(self, step: int) -> bool:
        steps = self._steps()
        return steps is not None and step >= steps - 1

    def _skips(self, step: int, tokens: Tensor, tr: SlatTrajectory) -> bool:
        if self.config.skip_threshold == 0 or step < self.config.warmup or tr.computed_v is None or tr.rate is None:
            return False
        if self.config.force_last and self._is_last(step):
            return False
        eps = tr.rate * _mean_abs(tokens - tr.prev_x) / (_mean_abs(tr.prev_v) + 1e-6)
        if tr.error + eps < self.config.skip_threshold:
            tr.error += eps
            return True
        return False

    def _compute(self, original, x, tokens, t, cond, step, kwargs, tr: SlatTrajectory) -> Any:
        carved = self._carved(step, x, tokens, kwargs, tr)
        if carved is not None and bool(carved.any()):
            v_tokens = self._partial(original, x, tokens, t, cond, step, kwargs, carved, tr)
            if v_tokens is not None:
                tr.stale = torch.where(carved, tr.stale + 1, torch.zeros_like(tr.stale))
                self._remember(tr, tokens, v_tokens, computed=True)
                return with_tensor(x, v_tokens)
        v = original(x, t, cond, step, **kwargs)
        self.statistics.add("model_calls")
        self.statistics.add("tokens_computed", tokens.shape[0] * tokens.shape[1])
        v_tokens = state_tensors(v)
        if not bool(torch.isfinite(v_tokens).all()):
            self.statistics.add("nan_steps")  # never cached: the trajectory's memory starts again
            self.trajectory = SlatTrajectory()
            self.trajectory.shape, self.trajectory.last_step = tuple(tokens.shape), step
            return v
        if tr.stale is not None:
            tr.stale.zero_()
        self._remember(tr, tokens, v_tokens, computed=True)
        return v

    def _carved(self, step: int, x: Any, tokens: Tensor, kwargs: dict, tr: SlatTrajectory) -> Tensor | None:
        """The tokens to carve this step, or None (carving off, warm-up, no history, a batch of several)."""
        if self.config.ratio == 0 or step < self.config.warmup or tr.prev_prev_v is None or tokens.shape[1] < 2:
            return None  # (0 or 1 tokens: nothing to rank)
        if not isinstance(x, Tensor) or tokens.shape[0] != 1 or not isinstance(kwargs.get("coords"), Tensor):
            # carving needs one object as a plain token tensor and its coordinates; a sparse tensor's
            # subset would have to be rebuilt by its own library, so such stages are only step-skipped
            self.statistics.add("uncarved_steps")
            return None
        n = tokens.shape[1]
        if tr.stale is None:
            tr.stale = torch.zeros(n, dtype=torch.long, device=tokens.device)
        if tr.freq is None:
            coords = kwargs["coords"][0].long()
            tr.freq = frequency_score(coords, self.config.resolution or grid_side(coords), self.config.freq_radius).to(tokens.device)
        score = token_saliency(tr.prev_v[0], tr.prev_prev_v[0], tr.freq, self.config.gamma, self.config.weighting, self._generator)
        return carve(score, tr.stale, self.config.ratio, self.config.max_stale)

    def _partial(self, original, x, tokens, t, cond, step, kwargs, carved: Tensor, tr: SlatTrajectory) -> Tensor | None:
        """The velocity with only the uncarved tokens through the model; None if it came out non-finite."""
        keep = torch.nonzero(~carved, as_tuple=True)[0]
        n = tokens.shape[1]
        sub_kwargs = {
            k: (v.index_select(1, keep) if k in self.config.token_kwargs and isinstance(v, Tensor) and v.shape[:2] == (1, n) else v)
            for k, v in kwargs.items()
        }
        sub_x = gather_rows(tokens[0], keep)[None]
        v_sub = state_tensors(original(sub_x, t, cond, step, **sub_kwargs))
        self.statistics.add("model_calls")
        self.statistics.add("tokens_computed", len(keep))
        if not bool(torch.isfinite(v_sub).all()):
            self.statistics.add("nan_steps")
            return None
        self.statistics.add("carved_steps")
        self.statistics.add("tokens_carved", int(carved.sum()))
        merged = scatter_add_rows(v_sub[0], keep, n).to(v_sub.dtype) + tr.prev_v[0] * carved[:, None].to(v_sub.dtype)
        return merged[None]

    def _remember(self, tr: SlatTrajectory, tokens: Tensor, v: Tensor, computed: bool) -> None:
        if computed:
            if tr.computed_v is not None:
                dx = _mean_abs(tokens - tr.computed_x)
                kappa = _mean_abs(v - tr.computed_v) / dx if dx > 0 else None
                if kappa is not None:
                    tr.rate = kappa if tr.rate is None or self.config.rate == "curvature" else 0.7 * tr.rate + 0.3 * kappa
            tr.computed_x, tr.computed_v = tokens, v
            tr.error = 0.0
        tr.prev_prev_v, tr.prev_v, tr.prev_x = tr.prev_v, v, tokens

    # ------------------------------------------------------------------ reports
    def summary(self) -> dict[str, float]:
        c = self.statistics.counters
        if not c.get("tokens_dense"):
            return {}
        return {"slat_token_fraction": c.get("tokens_computed", 0) / c["tokens_dense"], "slat_skipped_steps": c.get("skipped_steps", 0)}

    def ceiling(self) -> float | None:
        c = self.statistics.counters
        return c["tokens_dense"] / c["tokens_computed"] if c.get("tokens_computed") else None
