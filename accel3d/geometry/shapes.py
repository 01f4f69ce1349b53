"""Analytic signed distance fields, positive inside, as query functions.

Each returns ``f(points[N, 3]) -> values[N]`` and can be decoded by any volume
decoder, which makes them exact references for tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Field = Callable[[Tensor], Tensor]


def sphere(radius: float = 0.6, center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Field:
    c = torch.tensor(center)
    return lambda p: radius - (p - c.to(p)).norm(dim=-1)


def torus(major: float = 0.55, minor: float = 0.2) -> Field:
    def f(p: Tensor) -> Tensor:
        ring = p[:, [0, 2]].norm(dim=-1) - major
        return minor - torch.stack([ring, p[:, 1]], dim=-1).norm(dim=-1)

    return f


def box(half_extents: tuple[float, float, float] = (0.5, 0.4, 0.3)) -> Field:
    h = torch.tensor(half_extents)

    def f(p: Tensor) -> Tensor:
        q = p.abs() - h.to(p)
        outside = q.clamp(min=0).norm(dim=-1)
        inside = q.max(dim=-1).values.clamp(max=0)
        return -(outside + inside)

    return f


def thin_plate(thickness: float = 0.01, half_size: float = 0.7) -> Field:
    """A square plate of the given thickness, normal to z: thinner than a coarse voxel."""
    return box((half_size, half_size, thickness / 2))


SHAPES: dict[str, Callable[[], Field]] = {"sphere": sphere, "torus": torus, "box": box, "thin_plate": thin_plate}
