"""Flow states as the pruning accelerators see them: token groups of plain tensors.

A sampler's state (and its velocity) is one tensor, a dict of tensors (SAM 3D Objects'
shape + layout streams) or a sparse tensor with ``.feats`` (TRELLIS / SAM3D
``SparseTensor``). Its ``token_groups`` (``{group: (keys, ...)}``, an empty tuple meaning the
whole state) say which parts belong together. These helpers take the tensors out and put
new ones back in the same structure, so the accelerators do arithmetic on tensors only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from accel3d.core.flow_state import state_tensors, with_tensor


def group_leaves(state: Any, token_groups: Mapping[str, tuple[str, ...]]) -> dict[str, dict[str, Tensor]]:
    """``{group: {key: tensor}}``; the whole-state group uses the key ``""``.

    Example::

        group_leaves({"shape": s, "rotation": r}, {"shape": ("shape",), "layout": ("rotation",)})
        # {"shape": {"shape": s}, "layout": {"rotation": r}}
    """
    out: dict[str, dict[str, Tensor]] = {}
    for group, keys in token_groups.items():
        if keys:
            if not isinstance(state, Mapping):
                raise ValueError(f"token_groups: group {group!r} names keys {list(keys)} but the state is not a dict")
            missing = [k for k in keys if k not in state]
            if missing:
                raise ValueError(f"token_groups: group {group!r} names {missing}, not keys of the state {sorted(state)}")
            out[group] = {k: state_tensors(state[k]) for k in keys}
        else:
            out[group] = {"": state_tensors(state)}
    return out


def rebuild(template: Any, leaves: Mapping[str, Mapping[str, Tensor]]) -> Any:
    """The inverse of :func:`group_leaves`: ``template``'s structure holding the tensors in ``leaves``."""
    flat = {k: t for group in leaves.values() for k, t in group.items()}
    if "" in flat:
        return with_tensor(template, flat[""])
    return {k: (with_tensor(v, flat[k]) if k in flat else v) for k, v in template.items()}


def signature(leaves: Mapping[str, Mapping[str, Tensor]]) -> tuple:
    """Shapes, dtypes and devices of every leaf: two states with the same signature can be mixed."""
    return tuple((g, k, tuple(t.shape), t.dtype, t.device) for g, ks in leaves.items() for k, t in ks.items())


def finite(leaves: Mapping[str, Mapping[str, Tensor]]) -> bool:
    """Whether every value of every leaf is finite (a NaN velocity is never cached)."""
    return all(bool(torch.isfinite(t).all()) for ks in leaves.values() for t in ks.values())


def target_steps(target: Any) -> int | None:
    """The step count of the trajectory the target samples (``FlowSampler.steps``, an adapter's ``steps``), if known."""
    steps = getattr(target, "steps", None)
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None


def token_groups_of(target: Any, name: str) -> dict[str, tuple[str, ...]]:
    """The target's declared token groups, or an error naming the accelerator."""
    groups = getattr(target, "token_groups", None)
    if not isinstance(groups, Mapping) or not groups:
        raise TypeError(f"{name}: expected a flow sampler stage with token_groups (the pipeline's), got {type(target).__name__}")
    if not callable(getattr(target, "velocity", None)):
        raise TypeError(f"{name}: expected a flow sampler stage with a velocity(x, t, cond, step, ...) method, got {type(target).__name__}")
    return {str(g): tuple(keys) for g, keys in groups.items()}
