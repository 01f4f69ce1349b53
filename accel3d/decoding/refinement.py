"""Which points of a finer level to decode: the refinement rules of hierarchical decoding.

Two rules, both on the field made "positive inside, surface at 0" by the decoder:

- ``field`` units (FlashVDM's): refine where the sign changes between face neighbours or where
  ``|v| < band``, then grow that by ``dilation`` 3x3x3 steps. It is exact only when the band and the
  dilation suit the field's sharpness, which they were tuned for on one model.
- ``voxels`` (the default): the band is a distance, ``band`` voxels of the current level, turned into
  field units through the field's slope ``L`` measured on the decoded samples (the largest finite
  difference between decoded face neighbours, times ``slope_margin``). A decoded point with
  ``|v| >= band h L`` is at least ``band h`` away from any surface if ``L`` bounds the slope; with
  ``band >= sqrt(3)`` (a cell's diagonal) every cell that holds surface has all its corners flagged,
  so every finer point in it is decoded, at every level, however thin the part. A saturated field
  (a clamped SDF) certifies only ``max|v| / L`` of distance: by how that compares with the voxel,
  :func:`voxel_band_mask` adds one dilation or flags the saturated points too, which is the
  dilation chosen by the field's measured sharpness instead of by hand.

The slope bound only has to hold along the path from a sample to a surface within its band, so by
default (``slope="local"``) each unsaturated sample reads its band through the steepest gradient
estimated within the band's reach of it (:func:`local_slope`). A learned field that is steep in a
few places (the shipped VAE: 50 per unit at most, 7 at the median) then keeps a narrow band
everywhere else. The rule's choice and the saturated samples, which certify a distance only
through the field's largest slope, keep the global bound.

A field that jumps across its whole range within one edge (a +-1 occupancy, or a clamped SDF whose
truncation is below half a voxel), or shows no slope at all (constant on every decoded sample, which
a part thinner than a voxel between the samples would also give), carries no distance information
at that level: the decoder then decodes the target level densely (:func:`is_unresolved`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from accel3d.core.validate import check_float, check_int
from accel3d.decoding.config import SQRT3


def sign_changes(values: Tensor) -> Tensor:
    """Points with a face neighbour on the other side of 0."""
    inside = values > 0
    mask = torch.zeros_like(inside)
    for dim in range(3):
        n = inside.shape[dim]
        change = inside.narrow(dim, 0, n - 1) != inside.narrow(dim, 1, n - 1)
        mask.narrow(dim, 0, n - 1).logical_or_(change)
        mask.narrow(dim, 1, n - 1).logical_or_(change)
    return mask


def dilate(mask: Tensor, steps: int) -> Tensor:
    for _ in range(steps):
        mask = F.max_pool3d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0].bool()
    return mask


def refinement_mask(values: Tensor, level: float, band: float | None, dilation: int) -> Tensor:
    """Points to refine on a grid (``field`` units): a sign change with a face neighbour, or ``|v - level| < band``."""
    level = check_float("level", level)
    band = check_float("band", band, low=0.0, allow_none=True)
    check_int("dilation", dilation, low=0)
    return field_band_mask(values - level, band, dilation)[0]


def largest_step(values: Tensor, decoded: Tensor) -> float:
    """The largest ``|v_i - v_j|`` over face neighbours that were both decoded (0 for none)."""
    best = 0.0
    for dim in range(3):
        n = values.shape[dim]
        both = decoded.narrow(dim, 0, n - 1) & decoded.narrow(dim, 1, n - 1)
        if both.any():
            diff = (values.narrow(dim, 0, n - 1) - values.narrow(dim, 1, n - 1)).abs()
            best = max(best, float(diff[both].max()))
    return best


def local_slope(values: Tensor, spacing: float, radius: int) -> Tensor:
    """A per-point slope bound: the largest gradient norm estimated within at least ``radius`` voxels of each point.

    At each point the steeper of its two face differences per axis gives one component; their norm,
    over ``spacing``, bounds the gradient there (an axis difference alone under-reads a diagonal
    slope by up to ``sqrt(3)``). The max is then taken over blocks of ``radius``^3 points and each
    block's 3x3x3 neighbours (a window reaching ``radius`` to ``3 radius - 1`` voxels from the point,
    at a fraction of the cost of a sliding window), so it bounds the slope along any path that stays
    within ``radius`` voxels of the point.
    """
    squared = torch.zeros_like(values)
    for dim in range(3):
        n = values.shape[dim]
        diff = (values.narrow(dim, 1, n - 1) - values.narrow(dim, 0, n - 1)).abs()
        steepest = torch.zeros_like(values)
        steepest.narrow(dim, 0, n - 1).copy_(diff)
        steepest.narrow(dim, 1, n - 1).copy_(torch.maximum(steepest.narrow(dim, 1, n - 1), diff))
        squared += steepest.square()
    norm = (squared.sqrt_() / spacing)[None, None]
    blocks = F.max_pool3d(norm, radius, stride=radius, ceil_mode=True)
    for kernel in ((3, 1, 1), (1, 3, 1), (1, 1, 3)):  # each block's neighbours, one axis at a time
        blocks = F.max_pool3d(blocks, kernel, stride=1, padding=tuple(k // 2 for k in kernel))
    for dim in (2, 3, 4):
        blocks = blocks.repeat_interleave(radius, dim=dim)
    n = values.shape
    return blocks[0, 0, : n[0], : n[1], : n[2]]


def is_unresolved(step: float, values: Tensor, decoded: Tensor) -> bool:
    """The field crosses (nearly) its whole decoded range within one edge: a step, not a ramp, at this level."""
    known = values[decoded]
    if known.numel() == 0 or not ((known > 0).any() and (known <= 0).any()):
        return False
    return step >= 0.9 * float(known.max() - known.min())


def voxel_band_mask(
    values: Tensor,
    decoded: Tensor,
    spacing: float,
    slope: float,
    band: float,
    dilation: int = 0,
    local: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The ``voxels`` rule on one level: the points to refine and how many each part of the rule flagged.

    ``values`` positive inside with the surface at 0; ``slope`` the field's slope bound ``L`` (field
    units per world unit, margin included); ``spacing`` this level's voxel size ``h``; ``band`` in voxels.
    A decoded value ``v`` puts the surface at least ``|v| / L`` away, except a saturated one
    (``|v|`` at the field's maximum), which certifies only ``reach = max|v| / L``. By that reach:

    - ``reach >= band h``: the band alone (every corner of a cell with surface is in it);
    - ``reach >= sqrt(3) h / 2`` (half a cell's diagonal): the band plus one dilation, because every
      cell with surface has a corner within half a diagonal of it, so unsaturated and flagged;
    - less: a part could hide between saturated samples, so they are all flagged.
    """
    changes = sign_changes(values)
    threshold = band * spacing * (slope if local is None else local)
    magnitude = values.abs()
    saturated_at = 0.99 * float(magnitude[decoded].max()) if decoded.any() else 0.0  # values this high count as saturated
    reach = saturated_at / slope if slope > 0 else math.inf  # the distance any unsaturated value stays within
    saturated = decoded & (magnitude >= saturated_at) & ~changes
    near = decoded & (magnitude <= threshold) & ~changes & ~saturated
    if reach > band * spacing:
        rule, steps, flag_saturated = "band", 0, False
    elif reach > SQRT3 / 2 * spacing:
        rule, steps, flag_saturated = "band+dilation", 1, False
    else:
        rule, steps, flag_saturated = "saturated", 0, True
    seeds = changes | near | (saturated if flag_saturated else torch.zeros_like(near))
    mask = dilate(seeds, dilation + steps)
    counts = {
        "rule": rule,
        "sign_change": int(changes.sum()),
        "band": int(near.sum()),
        "saturated": int(saturated.sum()) if flag_saturated else 0,
        "dilation": int((mask & ~seeds).sum()),
        "band_field_units": threshold if local is None else float(threshold[near].max()) if near.any() else 0.0,
        "reach": reach,
    }
    return mask, counts


def field_band_mask(values: Tensor, band: float | None, dilation: int) -> tuple[Tensor, dict[str, int]]:
    """The ``field`` rule on one level, with the same counts as :func:`voxel_band_mask`."""
    changes = sign_changes(values)
    near = (values.abs() < band) & ~changes if band else torch.zeros_like(changes)
    mask = dilate(changes | near, dilation)
    counts = {
        "sign_change": int(changes.sum()),
        "band": int(near.sum()),
        "saturated": 0,
        "dilation": int((mask & ~(changes | near)).sum()),
        "band_field_units": band or 0.0,
    }
    return mask, counts
