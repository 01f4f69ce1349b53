"""Cameras of the SDS scene: look-at-the-origin camera batches, random camera sampling, pinhole rays.

The axes and angle conventions are those of :mod:`accel3d.models.sds.scene` (z up, azimuth 0 on
``+x``, row 0 of an image at the top).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from accel3d.core.validate import check_pair, check_seed


@dataclass
class Cameras:
    """A batch of ``n`` look-at-the-origin cameras, one float32 tensor of shape (n,) per field.

    ``azimuth`` and ``elevation`` are in degrees, ``radius`` in scene units,
    ``fovy`` (vertical field of view) in degrees; see :mod:`accel3d.models.sds.scene` for
    the axes. Lists and numbers are converted to float32 tensors.

    Example::

        cams = Cameras(azimuth=torch.tensor([0.0, 90.0]), elevation=torch.zeros(2),
                       radius=torch.full((2,), 1.8), fovy=torch.full((2,), 50.0))
        len(cams)  # 2
        cams[1:]   # the second camera alone, still a Cameras batch
    """

    azimuth: Tensor
    elevation: Tensor
    radius: Tensor
    fovy: Tensor

    def __post_init__(self) -> None:
        names = ("azimuth", "elevation", "radius", "fovy")
        for name in names:
            value = torch.as_tensor(getattr(self, name), dtype=torch.float32)
            if value.ndim != 1:
                raise ValueError(f"{name}: expected a tensor of shape (n,), got shape {tuple(value.shape)}")
            setattr(self, name, value)
        lengths = {name: len(getattr(self, name)) for name in names}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"cameras: expected azimuth, elevation, radius and fovy of the same length, got {lengths}")

    def __len__(self) -> int:
        return len(self.azimuth)

    def __getitem__(self, index: int | slice | Tensor) -> Cameras:
        """The cameras at ``index`` (an int keeps a batch of one)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(self.azimuth[index], self.elevation[index], self.radius[index], self.fovy[index])


def _check_range(
    name: str, value: tuple[float, float], low: float | None = None, high: float | None = None, open_ends: bool = False
) -> None:
    lo, hi = check_pair(name, value)
    below = low is not None and (lo <= low if open_ends else lo < low)
    above = high is not None and (hi >= high if open_ends else hi > high)
    if below or above:
        if high is None:
            bounds = f"{'>' if open_ends else '>='} {low}"
        else:
            brackets = "()" if open_ends else "[]"
            bounds = f"within {brackets[0]}{low}, {high}{brackets[1]}"
        raise ValueError(f"{name}: expected values {bounds}, got {value!r}")


class CameraSampler:
    """Random look-at cameras drawn uniformly from ranges, like threestudio's random camera data.

    Each range is a ``(low, high)`` pair; draws come from the sampler's own
    ``torch.Generator``, so a sampler built with the same seed yields the same
    sequence of cameras.

    Example::

        sampler = CameraSampler(elevation_range=(0.0, 30.0), seed=1)
        cams = sampler.sample(4)  # Cameras with 4 entries
    """

    def __init__(
        self,
        azimuth_range: tuple[float, float] = (-180.0, 180.0),
        elevation_range: tuple[float, float] = (-10.0, 45.0),
        radius_range: tuple[float, float] = (1.5, 2.0),
        fovy_range: tuple[float, float] = (40.0, 70.0),
        seed: int = 0,
    ) -> None:
        _check_range("azimuth_range", azimuth_range, -3600.0, 3600.0)  # ten turns either way is plenty
        _check_range("elevation_range", elevation_range, -90.0, 90.0)
        _check_range("radius_range", radius_range, 0.0, None, open_ends=True)
        _check_range("fovy_range", fovy_range, 0.0, 180.0, open_ends=True)
        check_seed("seed", seed)
        self.ranges = {
            "azimuth": tuple(map(float, azimuth_range)),
            "elevation": tuple(map(float, elevation_range)),
            "radius": tuple(map(float, radius_range)),
            "fovy": tuple(map(float, fovy_range)),
        }
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, n: int = 1) -> Cameras:
        """Draw ``n`` cameras, each field uniformly within its range."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        values = {}
        for name, (lo, hi) in self.ranges.items():
            values[name] = lo + (hi - lo) * torch.rand(n, generator=self.generator, dtype=torch.float32)
        return Cameras(**values)


def _camera_frames(cameras: Cameras) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Camera positions and the forward, right, up unit vectors, each (n, 3)."""
    az = torch.deg2rad(cameras.azimuth)
    el = torch.deg2rad(cameras.elevation)
    direction = torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], dim=-1)
    position = cameras.radius[:, None] * direction
    forward = -direction
    # cross(forward, +z) normalised, written out so it stays defined at elevation +-90 (looking straight down/up)
    right = torch.stack([-torch.sin(az), torch.cos(az), torch.zeros_like(az)], dim=-1)
    up = torch.linalg.cross(right, forward)
    return position, forward, right, up


def look_at_rays(cameras: Cameras, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pinhole rays through pixel centres: origins and unit directions, each (n, height, width, 3).

    The vertical field of view ``fovy`` spans the image height; pixels are
    square. Row 0 is the top of the image, column 0 the left.
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    position, forward, right, up = _camera_frames(cameras)
    tan_half = torch.tan(torch.deg2rad(cameras.fovy) / 2)[:, None, None]  # (n, 1, 1)
    # normalised image-plane coordinates of pixel centres: v is +1 at the top edge, u is +1 at the right edge
    v = 1.0 - 2.0 * (torch.arange(height, dtype=torch.float32) + 0.5) / height
    u = (2.0 * (torch.arange(width, dtype=torch.float32) + 0.5) / width - 1.0) * (width / height)
    vv, uu = torch.meshgrid(v, u, indexing="ij")  # (H, W)
    dirs = (
        forward[:, None, None, :] + (uu * tan_half)[..., None] * right[:, None, None, :] + (vv * tan_half)[..., None] * up[:, None, None, :]
    )
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = position[:, None, None, :].expand_as(dirs)
    return origins, dirs
