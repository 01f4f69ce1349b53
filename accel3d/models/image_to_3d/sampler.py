"""Euler flow sampler with classifier-free guidance, following SAM 3D Objects.

Time runs from 0 (noise) to 1 (data). The schedule is ``t = linspace(0, 1, steps+1)``
rescaled by ``t' = t / (1 + (r - 1)(1 - t))`` (r > 1 spends more steps near the
noise end; r = 1 is the identity), and each step is ``x <- x + (t_{i+1} - t_i) v``.

Guidance: ``v = (1 + s) v_cond - s v_uncond``, the unconditional pass taking
all-zero condition tokens, SAM3D's formula and its meaning of the strength ``s``:
``cfg_strength=0`` is the conditional velocity alone (no second pass). In the other
common convention, ``v = v_uncond + w (v_cond - v_uncond)``, ``w = 1 + s``; so the
issue's "SLaT: CFG 1" (``w = 1``, guidance off) is ``cfg_strength=0`` here, while
SS "CFG 7" is SAM3D's own ``strength=7`` in the formula above.

Every step calls **one** instance-level method, :meth:`FlowSampler.velocity`, so an
accelerator can wrap exactly that (``PatchSet.wrap(sampler, "velocity", ...)``).

A velocity that comes out NaN or inf (an overflowing guidance strength or checkpoint), and a
state that does, stop the run with a ``FloatingPointError`` that names the sampler, the step
and the token group: :meth:`FlowSampler.sample` checks what ``velocity`` returned, wrapped by
accelerators or not, and the state each Euler step makes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from accel3d.core.flow_stage import state_tensors
from accel3d.core.validate import check_float, check_int, check_pair, check_str, count_nonfinite

State = Tensor | dict[str, Tensor]  # one tensor (SLaT) or a dict of token groups (SS)

# SAM3D's own SS settings (its guidance interval [0, 500] in t * 1000 units: the noisy half); the SLaT
# numbers are the (25 steps, CFG 1 = guidance off, no rescale). SAM3D's released pipeline samples
# SLaT with strength 5 and rescale 3 instead.
SS_SAMPLER_DEFAULTS: dict[str, Any] = {"steps": 25, "cfg_strength": 7.0, "rescale": 3.0, "cfg_interval": (0.0, 0.5)}
SLAT_SAMPLER_DEFAULTS: dict[str, Any] = {"steps": 25, "cfg_strength": 0.0, "rescale": 1.0}

# The largest guidance strength taken. Strengths in use stay far below it (SAM3D's SS flow 7, its SLaT flow 5, the
# largest SDS guidance in common use 100); far above it the guided velocity (1 + s) v_cond - s v_uncond is the two
# passes' rounding error magnified, and near 1e38 it overflows float32.
MAX_CFG_STRENGTH = 1000.0


def rescale_time(t: Tensor, rescale: float) -> Tensor:
    """``t / (1 + (rescale - 1) (1 - t))``; the identity at ``rescale = 1``."""
    return t / (1 + (rescale - 1) * (1 - t))


def time_schedule(steps: int, rescale: float) -> Tensor:
    """The ``steps + 1`` times from 0 to 1 (float32), rescaled."""
    return rescale_time(torch.linspace(0, 1, steps + 1), rescale)


def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` tensor-wise to one or more states of the same structure (dicts key by key)."""
    if isinstance(states[0], Mapping):
        return {k: fn(*(s[k] for s in states)) for k in states[0]}
    return fn(*states)


class FlowSampler:
    """Euler sampling of a flow model ``model(x, t, cond, **model_kwargs) -> velocity`` (same structure as ``x``).

    Args:
        model: the velocity network (an ``SSFlowTransformer``, ``SLaTFlowTransformer`` or any module
            with that call signature).
        steps: Euler steps.
        cfg_strength: ``s`` in ``(1 + s) v_cond - s v_uncond``; 0 = conditional only.
        rescale: ``r`` of the time rescaling; 1 = uniform steps.
        cfg_interval: guidance applies when ``lo <= t <= hi`` (closed, in [0, 1] time); outside it the
            velocity is the conditional one. Default: the whole range. SAM3D passes
            ``interval=[0, 500]`` in its ``t * 1000`` units, i.e. ``(0.0, 0.5)`` here, and applies
            no guidance at all when it passes none.
        token_groups: stream name -> keys of ``x`` (default: ``model.token_groups``), so that
            accelerators never hard-code names.
        name: what an error names the sampler by (the pipeline's stage name: ``ss_sampler`` and
            ``slat_sampler`` from :meth:`ss` and :meth:`slat`).

    Example::

        sampler = FlowSampler.ss(ss_flow)                         # 25 steps, strength 7, rescale 3
        x = sampler.sample(cond, torch.Generator().manual_seed(0))  # dict of token groups
        slat = FlowSampler.slat(slat_flow).sample(cond, gen, shape=(1, n, 8), coords=coords, mask=mask)
    """

    def __init__(
        self,
        model: nn.Module | Callable[..., State],
        steps: int = SS_SAMPLER_DEFAULTS["steps"],
        cfg_strength: float = SS_SAMPLER_DEFAULTS["cfg_strength"],
        rescale: float = SS_SAMPLER_DEFAULTS["rescale"],
        cfg_interval: tuple[float, float] = (0.0, 1.0),
        token_groups: Mapping[str, tuple[str, ...]] | None = None,
        name: str = "flow_sampler",
    ) -> None:
        if not callable(model):
            raise TypeError(f"model: expected a velocity model called as model(x, t, cond), got {type(model).__name__}")
        self.model = model
        self.steps = check_int("steps", steps, low=1)
        self.cfg_strength = check_float("cfg_strength", cfg_strength, low=0.0, high=MAX_CFG_STRENGTH)
        self.rescale = check_float("rescale", rescale, low=0.0, low_open=True, high=1e6)
        self.cfg_interval = check_pair("cfg_interval", cfg_interval, low=0.0, high=1.0)
        groups = token_groups if token_groups is not None else getattr(model, "token_groups", None)
        if groups is None:
            raise ValueError("token_groups: the model declares none; pass token_groups={'name': (keys of x, ...)}")
        self.token_groups: dict[str, tuple[str, ...]] = {str(g): tuple(keys) for g, keys in groups.items()}
        self.name = check_str("name", name)

    @classmethod
    def ss(cls, model: nn.Module, **overrides: Any) -> FlowSampler:
        """The SS sampler with SAM3D's settings (25 steps, strength 7 for t <= 0.5, rescale 3), ``overrides`` on top."""
        return cls(model, **{**SS_SAMPLER_DEFAULTS, "name": "ss_sampler", **overrides})

    @classmethod
    def slat(cls, model: nn.Module, **overrides: Any) -> FlowSampler:
        """The SLaT sampler with the issue's settings (25 steps, no guidance, rescale 1), ``overrides`` on top."""
        return cls(model, **{**SLAT_SAMPLER_DEFAULTS, "name": "slat_sampler", **overrides})

    @property
    def timesteps(self) -> Tensor:
        return time_schedule(self.steps, self.rescale)

    def guidance_active(self, t: float) -> bool:
        lo, hi = self.cfg_interval
        return self.cfg_strength > 0 and lo <= t <= hi

    @staticmethod
    def unconditional(cond: Tensor) -> Tensor:
        """The "no condition" input of CFG: all-zero condition tokens (SAM3D's ``zeros`` handling)."""
        return torch.zeros_like(cond)

    def velocity(self, x: State, t: float, cond: Tensor, step: int, **model_kwargs: Any) -> State:
        """The guided velocity at ``(x, t)``: the conditional pass, plus the unconditional one when guidance is on.

        ``step`` is the Euler step's index (0 first); ``model_kwargs`` (the SLaT's ``coords`` and
        ``mask``) go unchanged to both passes. This is the one call accelerators wrap.
        """
        v_cond = self.model(x, t, cond, **model_kwargs)
        if not self.guidance_active(t):
            return v_cond
        v_uncond = self.model(x, t, self.unconditional(cond), **model_kwargs)
        s = self.cfg_strength
        return map_state(lambda c, u: (1 + s) * c - s * u, v_cond, v_uncond)

    def noise(
        self, shape: tuple[int, ...] | Mapping[str, tuple[int, ...]], generator: torch.Generator, device: Any = None, dtype: Any = None
    ) -> State:
        """Standard normal initial state drawn from ``generator`` (dict keys in the order given)."""
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a seeded torch.Generator, got {type(generator).__name__}")
        draw = lambda s: torch.randn(tuple(s), generator=generator, device=device, dtype=dtype or torch.float32)
        return {k: draw(s) for k, s in shape.items()} if isinstance(shape, Mapping) else draw(shape)

    def sample(
        self,
        cond: Tensor,
        generator: torch.Generator | None = None,
        shape: tuple[int, ...] | Mapping[str, tuple[int, ...]] | None = None,
        noise: State | None = None,
        callback: Callable[[int, float, State, State], None] | None = None,
        **model_kwargs: Any,
    ) -> State:
        """Integrate from noise (t = 0) to data (t = 1).

        The initial state is ``noise`` if given, else drawn from ``generator`` with ``shape``
        (default: ``model.token_shapes`` per sample, batch = ``cond.shape[0]``). ``callback(step, t, x,
        v)`` is called after each velocity (to record trajectories).

        Raises ``FloatingPointError``, naming this sampler, the step (1 first) and the state's key, where
        the initial state, a velocity (what ``self.velocity``, wrapped by accelerators or not, returned)
        or the state an Euler step makes holds NaN or inf: the run stops at that step.
        """
        if noise is None:
            if generator is None:
                raise ValueError("generator: expected a seeded torch.Generator (or pass noise=); the global RNG is never used")
            if shape is None:
                shapes = getattr(self.model, "token_shapes", None)
                if shapes is None:
                    raise ValueError("shape: the model declares no token_shapes; pass shape=(B, N, C) or a dict of them")
                shape = {k: (cond.shape[0], *s) for k, s in shapes.items()}
            noise = self.noise(shape, generator, device=cond.device, dtype=cond.dtype)
        x = noise
        self._check_finite(x, "the initial noise", "")
        times = self.timesteps.tolist()
        with torch.no_grad():
            for step in range(self.steps):
                t, dt = times[step], times[step + 1] - times[step]
                v = self.velocity(x, t, cond, step, **model_kwargs)
                self._check_finite(v, "the velocity", f" at step {step + 1} of {self.steps}", t)
                if callback is not None:
                    callback(step, t, x, v)
                x = map_state(lambda a, b, dt=dt: a + dt * b, x, v)
                self._check_finite(x, "the state", f" after step {step + 1} of {self.steps}", t)
        return x

    def _check_finite(self, state: State, what: str, when: str, t: float | None = None) -> None:
        """Raise ``FloatingPointError`` naming the sampler, ``what`` (and its key), ``when`` and ``t`` if a tensor of
        ``state`` holds NaN or inf: one ``isfinite(...).all()`` per tensor, the count only once one fails."""
        leaves = state.items() if isinstance(state, Mapping) else (("", state),)
        for key, leaf in leaves:
            tensor = state_tensors(leaf)
            if not (bad := count_nonfinite(tensor)):
                continue
            of = f" of {key!r}" if key else ""
            if t is None:
                cause = "the noise passed in"
            else:
                guidance = f"guidance strength {self.cfg_strength:g}" if self.guidance_active(t) else "no guidance at this t"
                cause = f"t={t:.3g}, {guidance}: an overflowing guidance strength or checkpoint?"
            raise FloatingPointError(f"{self.name}: {what}{of}{when} holds {bad} NaN or inf values of {tensor.numel()} ({cause})")
