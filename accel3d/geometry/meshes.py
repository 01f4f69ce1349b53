"""Mesh loading, normalisation, surface sampling and inside/outside tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import trimesh

BUNDLED_MESH = Path(__file__).resolve().parents[1] / "assets" / "bunny.ply"
MAX_COORDINATE = 1e12  # squared distances and areas of larger coordinates overflow float64 arithmetic
MIN_EXTENT = 1e-6  # below trimesh's vertex-merge tolerance (1e-8) a mesh collapses to a point


def load_mesh(path: str | Path, name: str = "mesh") -> trimesh.Trimesh:
    """Read a triangle mesh with trimesh, or raise a ``ValueError`` naming the argument ``name`` and the file.

    The mesh is checked before trimesh processes it (processing would silently drop
    the faces of a NaN vertex): coordinates must be finite, and the mesh must have
    a surface (non-zero area, not every vertex in one place).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no file at '{path}'")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise ValueError(f"{name}: could not read '{path}' as a triangle mesh ({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{name}: '{path}' holds no triangles; expected a mesh file (PLY/OBJ/GLB/STL/OFF)")
    check_mesh(loaded, f"{name}: '{path}'")
    loaded.process()
    return loaded


def check_mesh(mesh: trimesh.Trimesh, what: str = "mesh") -> trimesh.Trimesh:
    """Refuse a mesh with non-finite vertices, faces pointing past the vertices, or no surface."""
    vertices = np.asarray(mesh.vertices)
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} has {int(bad.sum())} of {len(vertices)} vertices with NaN or inf coordinates")
    faces = np.asarray(mesh.faces)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"{what} has faces that index vertices outside [0, {len(vertices)})")
    used = vertices[np.unique(faces)] if len(faces) else vertices
    if len(used) and np.abs(used).max() > MAX_COORDINATE:
        raise ValueError(f"{what} has coordinates beyond {MAX_COORDINATE:g}; rescale it (only its shape matters)")
    extent = float(np.ptp(used, axis=0).max()) if len(used) else 0.0
    if extent <= MIN_EXTENT:
        raise ValueError(f"{what}: all vertices of its faces coincide (extent {extent:g}); there is no shape to encode")
    if not mesh.area > 1e-12 * extent**2:
        raise ValueError(f"{what} has zero surface area (every triangle is degenerate)")
    return mesh


def normalize_mesh(mesh: trimesh.Trimesh, extent: float = 0.9) -> trimesh.Trimesh:
    """Centre the bounding box at the origin and scale the longest half-side to ``extent``."""
    check_mesh(mesh)
    mesh = mesh.copy()
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(extent / (np.max(hi - lo) / 2))
    return mesh


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` area-weighted surface points and their face normals, as float32 tensors."""
    points, face_idx = trimesh.sample.sample_surface(mesh, count, seed=seed)
    normals = mesh.face_normals[face_idx]
    return torch.as_tensor(points, dtype=torch.float32), torch.as_tensor(normals, dtype=torch.float32)


@torch.no_grad()
def winding_number(mesh: trimesh.Trimesh, points: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Generalised winding number of ``points`` (N, 3): about 1 inside, 0 outside.

    Robust to small holes (the bunny's base), unlike ray parity tests.
    """
    tri = torch.tensor(mesh.triangles, dtype=torch.float32)  # copies: trimesh caches are read-only
    chunk = chunk or max(1, 2_000_000 // len(tri))  # bounds the (chunk, F, 3, 3) temporaries
    out = torch.empty(len(points), dtype=torch.float32)
    pts = points.to(torch.float32)
    for s in range(0, len(pts), chunk):
        rel = tri[None] - pts[s : s + chunk, None, None]  # (n, F, 3, 3)
        a, b, c = rel.unbind(2)
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[s : s + chunk] = torch.atan2(det, den).sum(-1) / (2 * math.pi)
    return out


def occupancy(mesh: trimesh.Trimesh, points: torch.Tensor) -> torch.Tensor:
    """Boolean inside test by winding number (> 0.5)."""
    return winding_number(mesh, points) > 0.5


def occupancy_grid(mesh: trimesh.Trimesh, resolution: int, bound: float, surface_samples: int = 400_000) -> np.ndarray:
    """Ground-truth occupancy on the ``(resolution+1)^3`` grid spanning ``[-bound, bound]^3``.

    The winding number is evaluated only near the surface; every connected region
    far from it shares one inside/outside label, found from a single voxel.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    from accel3d.geometry.grid import grid_points

    pts = grid_points(resolution, bound).reshape(-1, 3)
    surface, _ = trimesh.sample.sample_surface(mesh, surface_samples, seed=0)
    dist, _ = cKDTree(surface).query(pts.numpy(), workers=1)  # threaded queries segfault on Ctrl-C
    near = dist < 1.5 * (2 * bound / resolution)
    inside = np.zeros(len(pts), dtype=bool)
    inside[near] = occupancy(mesh, pts[near]).numpy()
    shape = (resolution + 1,) * 3
    labels, count = ndimage.label(~near.reshape(shape))
    labels = labels.reshape(-1)
    if count:
        ids, first = np.unique(labels, return_index=True)
        seeds = first[ids > 0]  # first voxel of each far region, in label order
        label_inside = occupancy(mesh, pts[torch.as_tensor(seeds)]).numpy()
        far = labels > 0
        inside[far] = label_inside[labels[far] - 1]
    return inside.reshape(shape)
