"""A check that hierarchical decoding went right: query a seeded sample of the points it never decoded.

Each sampled point's true sign is compared with the sign of the value interpolated there. The
share that disagree estimates how much of the interpolated grid is wrong; above ``tolerance`` it
warns, and with ``refine`` it decodes every point around each miss (a cube of one coarsest voxel
on each side), so a part the refinement rule skipped is recovered where the sample found it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from accel3d.geometry.volume import lattice_points, query_field


def verify_grid(
    fn: Callable[[Tensor], Tensor],
    values: Tensor,
    decoded: Tensor,
    resolution: int,
    bound: float,
    fraction: float,
    tolerance: float,
    radius: int,
    refine: bool,
    seed: int,
    chunk_size: int,
    signed: Callable[[Tensor], Tensor],
) -> dict[str, float]:
    """Sample ``fraction`` of the undecoded points, count sign misses, warn above ``tolerance``, refine around them.

    Updates ``values`` and ``decoded`` in place when it refines. ``signed`` maps field values to
    "positive inside, surface at 0". Returns the figures (``queries`` is the check's whole cost).
    """
    flat_values, flat_decoded = values.view(-1), decoded.view(-1)
    undecoded = torch.nonzero(~flat_decoded).squeeze(1)
    if len(undecoded) == 0:
        return {"sampled": 0, "misses": 0, "miss_fraction": 0.0, "queries": 0, "refined": 0}
    count = min(len(undecoded), max(1, math.ceil(fraction * len(undecoded))))
    g = torch.Generator().manual_seed(seed)
    sample = undecoded[torch.randperm(len(undecoded), generator=g)[:count]]
    truth = query_field(fn, lattice_points(sample, resolution, bound), chunk_size, where="in the verification sample")
    miss = (signed(truth) > 0) != (signed(flat_values[sample]) > 0)
    flat_values[sample] = truth
    flat_decoded[sample] = True
    figures = {"sampled": count, "misses": int(miss.sum()), "miss_fraction": float(miss.float().mean()), "queries": count, "refined": 0}
    if figures["miss_fraction"] > tolerance:
        warnings.warn(
            f"hierarchical decoding: the verification sample found {figures['misses']} of {count} undecoded points "
            f"({figures['miss_fraction']:.2%}) on the wrong side of the surface (tolerance {tolerance:.2%})"
            + ("; decoding around them again" if refine else "; widen the band or lower min_resolution"),
            stacklevel=3,
        )
    if refine and figures["misses"]:
        n = resolution + 1
        around = torch.zeros(n, n, n, dtype=torch.bool)
        for i, j, k in torch.stack([sample[miss] // (n * n), (sample[miss] // n) % n, sample[miss] % n], 1).tolist():
            around[max(i - radius, 0) : i + radius + 1, max(j - radius, 0) : j + radius + 1, max(k - radius, 0) : k + radius + 1] = True
        todo = torch.nonzero(around.view(-1) & ~flat_decoded).squeeze(1)
        flat_values[todo] = query_field(fn, lattice_points(todo, resolution, bound), chunk_size, where="around the verification misses")
        flat_decoded[todo] = True
        figures["refined"] = len(todo)
        figures["queries"] += len(todo)
    return figures
