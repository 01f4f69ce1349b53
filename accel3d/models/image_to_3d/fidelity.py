"""Fidelity of an accelerated ``image_to_3d`` run against the unaccelerated one (DESIGN.md, "pruning").

- velocity relative error per stage: the mean over steps of ``|v_acc - v_base| / |v_base|``
  (Frobenius norms over the whole state), for the SS flow in all and per token group,
  and for the SLaT flow;
- SS occupancy IoU (the structure before any token cap);
- layout error: rotation angle (degrees), translation distance (world units), scale ratio
  (the largest per-axis ``max(a/b, b/a)``: 1 is the same scale);
- Chamfer distance and F-score at ``fscore_threshold`` between the final meshes, in the
  predicted pose (:func:`accel3d.geometry.metrics.chamfer_and_fscore`).

The SLaT tokens of two runs are matched by voxel: where the accelerated structure has
other voxels than the unaccelerated one (a different occupancy, or token aggregation),
a voxel that one run lacks counts with a zero velocity there, so the error stays a
relative error of the unaccelerated velocity field. Two empty structures agree (error 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from accel3d.core.flow_stage import group_tensors
from accel3d.models.image_to_3d.stages import Layout, rotation_angle_degrees


def _relative(diff: float, base: float) -> float:
    if base == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / base


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1).double() for t in tensors]) if tensors else torch.zeros(0, dtype=torch.float64)


def ss_velocity_errors(
    base: Sequence[Mapping[str, Tensor]], other: Sequence[Mapping[str, Tensor]], token_groups: Mapping[str, tuple[str, ...]]
) -> dict[str, float]:
    """``{"all": e, group: e, ...}``: the mean over the common steps of each relative error."""
    steps = min(len(base), len(other))
    sums = {"all": 0.0, **{g: 0.0 for g in token_groups}}
    for vb, vo in zip(base[:steps], other[:steps]):
        gb, go = group_tensors(dict(vb), token_groups), group_tensors(dict(vo), token_groups)
        for g in token_groups:
            b, o = _flat(list(gb[g].values())), _flat(list(go[g].values()))
            sums[g] += _relative(float((o - b).norm()), float(b.norm()))
        b, o = _flat(list(vb.values())), _flat([vo[k] for k in vb])
        sums["all"] += _relative(float((o - b).norm()), float(b.norm()))
    return {k: v / steps if steps else 0.0 for k, v in sums.items()}


def _keys(coords: Tensor, resolution: int) -> Tensor:
    c = coords.long()
    return (c[:, 0] * resolution + c[:, 1]) * resolution + c[:, 2]


def slat_velocity_error(
    base: Sequence[Tensor], base_coords: Tensor, other: Sequence[Tensor], other_coords: Tensor, resolution: int
) -> float:
    """Mean over the common steps of the relative error of the SLaT velocities ``[N, C]``, matched by voxel."""
    steps = min(len(base), len(other))
    if steps == 0:
        return 0.0 if len(base) == len(other) else math.inf
    same = base_coords.shape == other_coords.shape and torch.equal(base_coords, other_coords)
    if not same:
        kb, ko = _keys(base_coords, resolution), _keys(other_coords, resolution)
        union = torch.unique(torch.cat([kb, ko]))
        ib, io = torch.searchsorted(union, kb), torch.searchsorted(union, ko)
    total = 0.0
    for vb, vo in zip(base[:steps], other[:steps]):
        vb, vo = vb.double(), vo.double()
        if not same:
            full_b = torch.zeros(len(union), vb.shape[1], dtype=torch.float64)
            full_o = torch.zeros(len(union), vo.shape[1], dtype=torch.float64)
            full_b[ib], full_o[io] = vb, vo
            vb, vo = full_b, full_o
        total += _relative(float((vo - vb).norm()), float(vb.norm()))
    return total / steps


def layout_errors(base: Layout, other: Layout) -> dict[str, float]:
    """Rotation angle in degrees, translation distance and the largest per-axis scale ratio (>= 1, 1: the same)."""
    ratio = torch.maximum(other.scale / base.scale, base.scale / other.scale)
    return {
        "rotation_deg": rotation_angle_degrees(base.rotation, other.rotation),
        "translation_error": float((other.translation.double() - base.translation.double()).norm()),
        "scale_ratio": float(ratio.max()),
    }
