"""Shaded views of a mesh from the SDS scene's cameras: the novel-view model's training data and SDS's ground truth.

The mesh becomes a signed distance grid (:class:`~accel3d.geometry.mesh_fields.MeshSDF`) and is
sphere-traced in PyTorch along the rays of :func:`~accel3d.models.sds.cameras.look_at_rays`,
so the views use exactly the cameras, axes and image layout of the SDS scene. Shading is
Lambertian under one light fixed in the world (plus an ambient term), with one albedo per
object: a view-independent radiance, which a voxel field can reproduce. Images are RGB in
``[-1, 1]`` with the background at 0 (mid-grey), the value the SDS scene composites behind its
field.

Example::

    views = MeshViews(trimesh.creation.icosphere(radius=0.5), albedo=(0.8, 0.3, 0.2))
    cams = CameraSampler(fovy_range=(50.0, 50.0), seed=0).sample(4)
    images = views.render(cams, 32)     # (4, 3, 32, 32) in [-1, 1]
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from torch import Tensor

from accel3d.core.validate import check_float, check_int
from accel3d.geometry.mesh_fields import MeshSDF
from accel3d.models.sds.cameras import Cameras, look_at_rays

LIGHT = (0.4, 0.3, 0.866)  # world direction towards the light: above, in front of azimuth ~37 degrees
AMBIENT = 0.3
OBJECT_EXTENT = 0.55  # longest half-side of an object in the novel-view scenes (the SDS field fills [-1, 1]^3)
Y_UP_TO_Z_UP = trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0])  # mesh files are y-up, the scene z-up


def albedo_for(index: int) -> tuple[float, float, float]:
    """A distinct, saturated colour per object index (golden-ratio hues)."""
    hue = (0.61803398875 * index) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.65, 0.9)


def scene_mesh(mesh: trimesh.Trimesh, extent: float = OBJECT_EXTENT) -> trimesh.Trimesh:
    """A canonical-frame mesh (y up, centred) placed in the z-up scene at ``extent``."""
    mesh = mesh.copy()
    mesh.apply_transform(Y_UP_TO_Z_UP)
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(extent / (np.max(hi - lo) / 2))
    return mesh


class MeshViews:
    """Renders one mesh, shaded, from any batch of :class:`Cameras`.

    Example::

        views = MeshViews(scene_mesh(load_mesh(BUNDLED_MESH)), albedo=albedo_for(0))
        ref = views.render(Cameras([0.0], [15.0], [1.6], [50.0]), 32)   # (1, 3, 32, 32)
    """

    def __init__(
        self,
        mesh: trimesh.Trimesh,
        albedo: tuple[float, float, float] = (0.8, 0.8, 0.8),
        sdf_resolution: int = 128,
        supersample: int = 2,
        steps: int = 64,
    ) -> None:
        check_int("sdf_resolution", sdf_resolution, low=8)
        self.supersample = check_int("supersample", supersample, low=1)
        self.steps = check_int("steps", steps, low=1)
        if len(albedo) != 3:
            raise ValueError(f"albedo: expected an (r, g, b) triple in [0, 1], got {albedo!r}")
        for c in albedo:
            check_float("albedo", c, low=0.0, high=1.0)
        self.albedo = torch.tensor(albedo, dtype=torch.float32)
        self.sdf = MeshSDF(mesh, resolution=sdf_resolution, bound=1.0)
        self.cell = 2.0 / sdf_resolution

    def _distance(self, points: Tensor) -> Tensor:
        return -self.sdf(points.reshape(-1, 3)).reshape(points.shape[:-1])  # positive outside

    @torch.no_grad()
    def render(self, cameras: Cameras, size: int) -> Tensor:
        """``(n, 3, size, size)`` RGB in ``[-1, 1]``, background 0, supersampled and box-filtered."""
        check_int("size", size, low=1)
        side = size * self.supersample
        origins, dirs = look_at_rays(cameras, side, side)
        # start on the sphere of radius sqrt(3) that holds the SDF grid (cameras sit outside it)
        b = (origins * dirs).sum(-1)
        c = origins.square().sum(-1) - 3.0
        disc = (b * b - c).clamp(min=0.0)
        t = (-b - disc.sqrt()).clamp(min=0.0)
        far = -b + disc.sqrt()
        hit = torch.zeros_like(t, dtype=torch.bool)
        for _ in range(self.steps):
            d = self._distance(origins + t[..., None] * dirs)
            hit = hit | (d < 0.25 * self.cell)
            t = torch.where(hit, t, t + 0.9 * d.clamp(min=0.25 * self.cell))
        hit = hit & (t < far)
        points = origins + t[..., None] * dirs
        normals = self._normals(points)
        light = F.normalize(torch.tensor(LIGHT), dim=0)
        shade = AMBIENT + (1.0 - AMBIENT) * (normals @ light).clamp(min=0.0)
        rgb = self.albedo * shade[..., None]  # (n, H, W, 3) in [0, 1]
        image = torch.where(hit[..., None], 2.0 * rgb - 1.0, torch.zeros_like(rgb)).permute(0, 3, 1, 2)
        return F.avg_pool2d(image, self.supersample) if self.supersample > 1 else image

    def _normals(self, points: Tensor) -> Tensor:
        eps = self.cell
        grads = []
        for axis in range(3):
            offset = torch.zeros(3)
            offset[axis] = eps
            grads.append(self._distance(points + offset) - self._distance(points - offset))
        return F.normalize(torch.stack(grads, dim=-1), dim=-1)


def relative_pose(reference: Cameras, target: Cameras) -> Tensor:
    """Zero123's relative camera, ``(n, 4)``: (delta elevation in radians, sin and cos of delta azimuth, delta radius)."""
    d_el = torch.deg2rad(target.elevation - reference.elevation)
    d_az = torch.deg2rad(target.azimuth - reference.azimuth)
    return torch.stack([d_el, torch.sin(d_az), torch.cos(d_az), target.radius - reference.radius], dim=-1)
