"""Surface extraction (scikit-image marching cubes), mesh export and a CPU preview."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import trimesh

from accel3d.core.io import atomic_write
from accel3d.core.validate import check_choice, check_float
from accel3d.geometry.volume import VolumeGrid, check_bound

MESH_FORMATS = ("glb", "ply", "obj")


def extract_mesh(grid: VolumeGrid, level: float | None = None, inside: str | None = None) -> trimesh.Trimesh:
    """Marching cubes on ``grid`` into a ``trimesh.Trimesh`` in world coordinates.

    ``level`` and ``inside`` default to the grid's own (the decoder's sign convention).
    Faces wind counter-clockwise seen from outside (normals point out). A field
    with no surface gives an empty mesh and a warning; NaN raises.
    """
    from skimage.measure import marching_cubes

    if not isinstance(grid, VolumeGrid):
        raise TypeError(f"grid: expected a VolumeGrid (from a volume decoder), got {type(grid).__name__}")
    check_bound(grid.bound)
    values = grid.values.numpy() if isinstance(grid.values, torch.Tensor) else np.asarray(grid.values)
    level = check_float("level", grid.level if level is None else level)
    inside = check_choice("inside", grid.inside if inside is None else inside, ("positive", "negative"))
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"grid: {bad} NaN or inf values; fill undecoded points before extracting a surface")
    if values.shape != (grid.resolution + 1,) * 3 or grid.bound <= 0:
        raise ValueError(f"grid: expected values of shape {(grid.resolution + 1,) * 3} and bound > 0, got {values.shape} and {grid.bound}")
    if not (values.min() < level < values.max()):
        side = "inside" if (values.min() > level) == (inside == "positive") else "outside"
        warnings.warn(
            f"extract_mesh: the field has no surface at level {level} (everything is {side}); returning an empty mesh", stacklevel=2
        )
        return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    spacing = (2 * grid.bound / grid.resolution,) * 3
    # skimage's default ("descent") winds faces for objects whose values fall inward;
    # ours rise inward when inside is positive, so ask for "ascent" (tested: volume > 0).
    direction = "ascent" if inside == "positive" else "descent"
    verts, faces, _, _ = marching_cubes(values, level, spacing=spacing, gradient_direction=direction, method="lewiner")
    return trimesh.Trimesh(verts - grid.bound, faces, process=False)


def export_mesh(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write ``mesh`` as GLB, PLY or OBJ (by suffix), whole or not at all."""
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"mesh: expected a trimesh.Trimesh, got {type(mesh).__name__}")
    if not isinstance(path, str | Path) or not str(path):
        raise TypeError(f"path: expected a file path, got {path!r}")
    if not np.isfinite(mesh.vertices).all():
        raise ValueError("mesh: has NaN or inf vertices; refusing to write it")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path: '{path}' is a folder; expected a mesh file name")
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in MESH_FORMATS:
        raise ValueError(f"path: expected a mesh file ending in one of {MESH_FORMATS}, got '{path.name}'")
    with atomic_write(path) as tmp:
        mesh.export(tmp, file_type=fmt)
    return path


def render_preview(
    meshes: dict[str, trimesh.Trimesh],
    path: str | Path,
    size: float = 4.0,
    max_faces: int = 400_000,
    captions: dict[str, str] | None = None,
) -> Path:
    """Save a PNG with one Lambert-shaded view per mesh, side by side (matplotlib, no GPU).

    ``captions`` maps a mesh's title to a line printed under it (its time and fidelity, say)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    fig, axes = plt.subplots(1, len(meshes), figsize=(size * len(meshes), size), squeeze=False)
    view = _view_rotation(azimuth=35.0, elevation=20.0)
    light = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])
    for ax, (title, mesh) in zip(axes[0], meshes.items()):
        ax.set_title(f"{title}\n{len(mesh.faces):,} faces", fontsize=10)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        caption = (captions or {}).get(title)
        if caption:  # " · "-joined figures, one per line so that they fit under the view
            ax.text(0.5, -0.01, caption.replace(" · ", "\n"), transform=ax.transAxes, ha="center", va="top", fontsize=9)
        if len(mesh.faces) == 0:
            ax.text(0, 0, "empty mesh", ha="center", va="center")
            continue
        faces = mesh.faces
        if len(faces) > max_faces:  # keep the picture quick; it is a preview, not the result
            faces = faces[np.random.default_rng(0).choice(len(faces), max_faces, replace=False)]
        tri = mesh.vertices[faces] @ view.T  # camera looks down -z
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
        visible = normals[:, 2] > 0
        tri, normals = tri[visible], normals[visible]
        order = np.argsort(tri[:, :, 2].mean(axis=1))  # painter's algorithm: far to near
        shade = 0.25 + 0.75 * np.clip(normals[order] @ light, 0, 1)
        colors = np.stack([0.55 * shade, 0.7 * shade, 0.9 * shade, np.ones_like(shade)], axis=1)
        ax.add_collection(PolyCollection(tri[order, :, :2], facecolors=colors, edgecolors="none", antialiased=False))
    try:
        fig.tight_layout()
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")  # the captions sit below the axes
    finally:
        plt.close(fig)
    return Path(path)


def _view_rotation(azimuth: float, elevation: float) -> np.ndarray:
    a, e = np.radians(azimuth), np.radians(elevation)
    yaw = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    pitch = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return pitch @ yaw
