"""Flow states as the pruning accelerators see them: token groups of plain tensors.

The stage contract and the grouping of a state into ``{group: {key: tensor}}`` are the core's
(:mod:`accel3d.core.flow_stage`). These helpers put new tensors back into a state's structure and
compare states, so the accelerators do arithmetic on tensors only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from accel3d.core.flow_stage import with_tensor


def rebuild(template: Any, leaves: Mapping[str, Mapping[str, Tensor]]) -> Any:
    """The inverse of :func:`accel3d.core.flow_stage.group_tensors`: ``template``'s structure holding the tensors in ``leaves``."""
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
