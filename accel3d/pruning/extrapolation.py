"""Step schedules and Taylor (polynomial) extrapolation of velocities in step units.

Fast-SAM3D's SS step cache evaluates the model on a schedule and extrapolates the
velocity in between from the last full evaluations. The paper writes the first-order
rule in its count-down time ``t`` with ``nabla v = (v_t - v_{t+k}) / k``; in the step
index ``s`` that this module uses (0 first) it is the line through the last two full
evaluations ``(a, v_a)``, ``(b, v_b)``::

    v(s) = v_b + (s - b) (v_b - v_a) / (b - a)

which is exact on a velocity that changes linearly with the step. Order 2 is the
parabola through the last three (exact on quadratics).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from accel3d.core.validate import check_int


def is_full_step(step: int, steps: int | None, warmup: int, stride: int) -> bool:
    """Whether ``step`` is evaluated in full: during warm-up, then every ``stride``-th step, and at the last step.

    After the warm-up, ``stride - 1`` steps are extrapolated before each full one (as Fast-SAM3D's
    code counts: full iff ``step < warmup`` or ``(step - warmup + 1) % stride == 0``), so the
    first step after the warm-up is already a cached one. ``steps`` None (the sampler does not
    say how many) leaves the last step to the stride.

    Example::

        [s for s in range(25) if is_full_step(s, 25, warmup=2, stride=3)]
        # [0, 1, 4, 7, 10, 13, 16, 19, 22, 24]
    """
    if step < warmup or (step - warmup + 1) % stride == 0:
        return True
    return steps is not None and step >= steps - 1


def full_steps(steps: int, warmup: int, stride: int) -> list[int]:
    """The steps :func:`is_full_step` evaluates in a trajectory of ``steps``."""
    check_int("steps", steps, low=1)
    return [s for s in range(steps) if is_full_step(s, steps, warmup, stride)]


def lagrange_weights(known: Sequence[int], step: int) -> list[float]:
    """Weights ``w_j`` with ``v(step) = sum_j w_j v(known[j])`` for the polynomial through the known steps."""
    weights = []
    for j, sj in enumerate(known):
        w = 1.0
        for m, sm in enumerate(known):
            if m != j:
                w *= (step - sm) / (sj - sm)
        weights.append(w)
    return weights


def extrapolate(history: Sequence[tuple[int, Tensor]], step: int, order: int) -> Tensor:
    """The order-``order`` Taylor extrapolation to ``step`` from the last ``order + 1`` of ``history`` ``[(step, v), ...]``.

    Fewer points than ``order + 1`` lower the order to what they allow (one point: the last value).

    Example::

        extrapolate([(2, v2), (5, v5)], 6, order=1)   # v5 + (6 - 5) (v5 - v2) / 3
    """
    if not history:
        raise ValueError("history: no full evaluation to extrapolate from")
    points = list(history)[-(order + 1) :]
    if len(points) == 1:
        return points[0][1]
    weights = lagrange_weights([s for s, _ in points], step)
    if len(points) == 2:  # the common case, written as the paper does: last value plus the step times the slope
        (a, va), (b, vb) = points
        return vb + (vb - va) * ((step - b) / (b - a))
    out = points[0][1] * weights[0]
    for w, (_, v) in zip(weights[1:], points[1:]):
        out = out + v * w
    return out
