"""A small differentiable 3D scene for score distillation (SDS) on the CPU.

The scene is rendered Latent-NeRF style: a dense voxel grid stores ``C`` feature
channels (default 4, the latent channels of a Stable Diffusion U-Net) plus a
density, and the volume renderer produces a ``C``-channel image at the U-Net's
latent resolution (e.g. 32x32) directly, with no VAE in the loop.
This module holds the voxel field, its volume renderer, the turntable render and
the density mesh; cameras and rays live in :mod:`accel3d.models.sds.cameras`,
the image output in :mod:`accel3d.models.sds.images`, all importable from here.

Conventions (shared by every function here and in ``cameras`` and ``images``):

* World: right-handed, **z up**. The scene lives in the cube ``[-bound, bound]^3``.
* Cameras always look at the origin with world up ``+z``. ``azimuth`` (degrees)
  0 puts the camera on ``+x`` looking towards the origin; it increases
  counter-clockwise seen from above (azimuth 90 puts the camera on ``+y``).
  ``elevation`` (degrees) is positive above the equator (``z > 0``); ``radius``
  is the distance to the origin in scene units; ``fovy`` is the vertical field
  of view in degrees. The camera position is
  ``radius * (cos(el) cos(az), cos(el) sin(az), sin(el))``.
* Images: row 0 is the top of the picture (the ``+z`` side at elevation 0) and
  column 0 the left; the camera's right vector is ``(-sin(az), cos(az), 0)``, so
  from azimuth 0 the ``+y`` side of the scene is on the right of the image.
* Voxels: parameters are stored as ``(1, ch, Z, Y, X)``, i.e. as
  ``grid_sample``'s ``(D, H, W)`` with its grid's last dimension ``(x, y, z)``;
  voxel index ``i`` along an axis sits at world coordinate
  ``-bound + 2 * bound * i / (R - 1)`` (``align_corners=True``).
  :meth:`VoxelField.density_grid` returns the density permuted to ``(x, y, z)``
  index order, which is what :func:`density_mesh` expects.

Example::

    field = VoxelField(resolution=32, channels=4)
    cams = CameraSampler(seed=0).sample(1)
    out = field.render(cams, 32, 32)  # {"image": (1, 4, 32, 32), "alpha": ..., "depth": ...}
    save_turntable(turntable(field), "outputs/turntable.png")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import trimesh
from torch import Tensor

from accel3d.core.validate import check_float, check_int, check_seed
from accel3d.models.sds.cameras import Cameras, CameraSampler, look_at_rays
from accel3d.models.sds.images import save_gif, save_turntable, to_rgb

__all__ = [  # cameras and image output live in cameras.py and images.py, re-exported here
    "CameraSampler",
    "Cameras",
    "VoxelField",
    "density_mesh",
    "look_at_rays",
    "save_gif",
    "save_turntable",
    "to_rgb",
    "turntable",
    "turntable_cameras",
]

_INIT_STD = 0.01  # parameters start near zero so the fixed blob decides the initial shape
_RAY_EPS = 1e-9  # stands in for a zero direction component in the slab test


class VoxelField(torch.nn.Module):
    """A dense voxel grid of density and ``channels`` features inside ``[-bound, bound]^3``.

    ``density`` (1, 1, R, R, R) is a pre-activation; the rendered density is
    ``softplus(density + blob)`` where ``blob = blob_density * (1 - |x| / blob_radius)``
    is a fixed buffer, so the optimisation starts from a ball at the centre rather
    than from empty space (as in Magic3D / threestudio). ``features``
    (1, C, R, R, R) are the latent channels. Both are stored in ``(z, y, x)``
    index order (``grid_sample``'s ``(D, H, W)``); see the module docstring.
    ``background`` is a fixed (C,) buffer of zeros composited behind the scene.

    Example::

        field = VoxelField(resolution=32, channels=4)
        out = field.render(CameraSampler().sample(2), 32, 32)
        loss = out["image"].square().mean()
        loss.backward()  # gradients reach field.density and field.features
    """

    def __init__(
        self,
        resolution: int = 32,
        channels: int = 4,
        bound: float = 1.0,
        blob_density: float = 10.0,
        blob_radius: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_int("resolution", resolution, low=2)
        check_int("channels", channels, low=1)
        check_float("bound", bound, low=0.0, low_open=True, high=1e6)
        check_float("blob_density", blob_density, low=-1e6, high=1e6)
        check_float("blob_radius", blob_radius, low=0.0, low_open=True)
        check_seed("seed", seed)
        self.resolution = resolution
        self.channels = channels
        self.bound = float(bound)
        gen = torch.Generator().manual_seed(seed)
        shape = (resolution,) * 3
        self.density = torch.nn.Parameter(_INIT_STD * torch.randn((1, 1, *shape), generator=gen))
        self.features = torch.nn.Parameter(_INIT_STD * torch.randn((1, channels, *shape), generator=gen))
        coords = torch.linspace(-self.bound, self.bound, resolution)
        z, y, x = torch.meshgrid(coords, coords, coords, indexing="ij")  # storage order (z, y, x)
        dist = torch.sqrt(x * x + y * y + z * z)
        self.register_buffer("blob", (blob_density * (1.0 - dist / blob_radius))[None, None])
        self.register_buffer("background", torch.zeros(channels))

    def _sample(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Trilinear density (...) and features (C, ...) at world points (..., 3)."""
        # one grid_sample over density and features together: half the passes over the sample points
        volume = torch.cat([self.density + self.blob, self.features], dim=1)
        grid = (points / self.bound).reshape(1, 1, 1, -1, 3)  # last dim (x, y, z) indexes (W, H, D)
        values = F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        values = values.reshape(1 + self.channels, *points.shape[:-1])
        return F.softplus(values[0]), values[1:]

    def render(self, cameras: Cameras, height: int, width: int, num_samples: int = 64) -> dict[str, Tensor]:
        """Volume-render ``cameras``: ``{"image": (n, C, H, W), "alpha": (n, 1, H, W), "depth": (n, 1, H, W)}``.

        Each ray's segment inside the cube is split into ``num_samples`` equal
        parts sampled at their midpoints (deterministic, so runs reproduce) and
        alpha-composited with the standard NeRF quadrature; rays that miss the
        cube get alpha 0 and show the background. ``depth`` is the expected
        distance from the camera, ``sum(w_i t_i)``, not divided by alpha (0 where
        nothing is hit); divide by alpha for the depth of the visible surface.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
        device = self.density.device
        origins, dirs = look_at_rays(cameras, height, width)
        origins, dirs = origins.to(device), dirs.to(device)
        n = len(cameras)
        origins, dirs = origins.reshape(n, -1, 3), dirs.reshape(n, -1, 3)
        # slab method: entry/exit distances of the cube, clamped to start at the camera
        safe = torch.where(dirs.abs() < _RAY_EPS, torch.full_like(dirs, _RAY_EPS), dirs)
        t0 = (-self.bound - origins) / safe
        t1 = (self.bound - origins) / safe
        t_near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0.0)
        t_far = torch.maximum(t0, t1).amin(dim=-1)
        length = (t_far - t_near).clamp(min=0.0)  # 0 for rays that miss: their deltas vanish, so alpha is 0
        delta = length / num_samples  # (n, HW)
        steps = (torch.arange(num_samples, device=device, dtype=torch.float32) + 0.5) / num_samples
        t = t_near[..., None] + length[..., None] * steps  # (n, HW, S)
        points = origins[:, :, None, :] + t[..., None] * dirs[:, :, None, :]
        sigma, feats = self._sample(points)  # (n, HW, S), (C, n, HW, S)
        optical = sigma * delta[..., None]
        # exclusive cumulative sum: the transmittance reaching sample i excludes sample i itself
        before = torch.cumsum(F.pad(optical[..., :-1], (1, 0)), dim=-1)
        weights = (1.0 - torch.exp(-optical)) * torch.exp(-before)
        # the weights telescope to this; computing it directly keeps alpha within [0, 1] despite rounding
        alpha = 1.0 - torch.exp(-(before[..., -1] + optical[..., -1]))
        image = torch.einsum("cnrs,nrs->ncr", feats, weights) + (1.0 - alpha)[:, None, :] * self.background[None, :, None]
        depth = (weights * t).sum(dim=-1)
        return {
            "image": image.reshape(n, self.channels, height, width),
            "alpha": alpha.reshape(n, 1, height, width),
            "depth": depth.reshape(n, 1, height, width),
        }

    def density_grid(self) -> Tensor:
        """The activated density at the voxels, detached, shape (R, R, R) in ``(x, y, z)`` index order."""
        with torch.no_grad():
            return F.softplus(self.density + self.blob)[0, 0].permute(2, 1, 0).contiguous()


def turntable(
    field: VoxelField, views: int = 8, elevation: float = 15.0, radius: float = 1.8, fovy: float = 50.0, size: int = 64
) -> Tensor:
    """Render ``views`` cameras evenly spaced in azimuth (starting at 0): (views, C, size, size), without grad."""
    check_int("size", size, low=1)
    cams = turntable_cameras(views, elevation, radius, fovy)
    with torch.no_grad():
        return field.render(cams, size, size)["image"]


def turntable_cameras(views: int = 8, elevation: float = 15.0, radius: float = 1.8, fovy: float = 50.0) -> Cameras:
    """``views`` cameras evenly spaced in azimuth, starting at 0, at one elevation, radius and field of view."""
    check_int("views", views, low=1)
    check_float("elevation", elevation, low=-90.0, high=90.0)
    check_float("radius", radius, low=0.0, low_open=True)
    check_float("fovy", fovy, low=0.0, high=180.0, low_open=True, high_open=True)
    return Cameras(
        azimuth=torch.arange(views, dtype=torch.float32) * (360.0 / views),
        elevation=torch.full((views,), float(elevation)),
        radius=torch.full((views,), float(radius)),
        fovy=torch.full((views,), float(fovy)),
    )


def density_mesh(field: VoxelField, level: float | None = None) -> trimesh.Trimesh:
    """Marching cubes on :meth:`VoxelField.density_grid` at ``level`` (None: half the max density).

    Vertices are in world coordinates within ``[-bound, bound]^3``, in the same
    frame the renderer uses; faces wind outward (positive volume when closed).
    Raises ValueError when ``level`` is not strictly between the grid's min and max.
    """
    from skimage.measure import marching_cubes

    grid = field.density_grid().cpu().numpy()
    low, high = float(grid.min()), float(grid.max())
    level = 0.5 * high if level is None else check_float("level", level)
    if not (low < level < high):
        raise ValueError(f"level: {level:g} gives no surface; the density ranges over [{low:g}, {high:g}]")
    spacing = (2.0 * field.bound / (field.resolution - 1),) * 3
    # density rises inward, so "ascent" winds the faces outward
    verts, faces, _, _ = marching_cubes(grid, level, spacing=spacing, gradient_direction="ascent", method="lewiner")
    return trimesh.Trimesh(verts - field.bound, faces, process=True)
