"""The ``image_to_3d`` preview: the input crop and its mask, then each mesh as the input camera sees it.

The meshes are in the predicted pose, in the camera frame of the input (OpenCV axes:
``+x`` right, ``+y`` down, looking down ``+z``), so each is drawn from that camera
(perspective through the crop's intrinsics, flat Lambert shading, painter's algorithm)
on one shared frame that holds the crop (its outline dashed) and every mesh: the mesh
overlays the input where the pose is right, and a pose that drifts between the
unaccelerated and the accelerated run shows as a shift. Where a mesh reaches behind
the camera the view falls back to an orthographic one along ``+z``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh

from accel3d.core.io import atomic_write

LIGHT = np.array([-0.3, -0.5, -1.0]) / np.linalg.norm([-0.3, -0.5, -1.0])  # toward the light, camera frame
MAX_FACES = 200_000


def _project(vertices: np.ndarray, K: np.ndarray | None) -> np.ndarray:
    """Camera-frame vertices -> picture coordinates (x right, y up): crop pixels through ``K``, or orthographic (None)."""
    if K is None:
        return vertices[:, :2] * np.array([1.0, -1.0])
    uv = vertices[:, :2] / vertices[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
    return uv * np.array([1.0, -1.0])


def _limits(meshes: list[trimesh.Trimesh], K: np.ndarray | None, size: int) -> tuple[np.ndarray, float]:
    points = [_project(np.asarray(m.vertices), K) for m in meshes if len(m.faces)]
    if K is not None:
        points.append(np.array([[0.0, 0.0], [size, -size]]))  # the crop's frame
    if not points:
        return np.zeros(2), 1.0
    allp = np.concatenate(points)
    lo, hi = allp.min(0), allp.max(0)
    return (lo + hi) / 2, max(float((hi - lo).max()) / 2 * 1.05, 1e-6)


def _draw_mesh(ax, mesh: trimesh.Trimesh, K: np.ndarray | None, size: int, centre: np.ndarray, half: float) -> None:
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Rectangle

    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    if K is not None:
        ax.add_patch(Rectangle((0, -size), size, size, fill=False, linestyle="--", linewidth=0.8, edgecolor="0.6"))
    if len(mesh.faces) == 0:
        ax.text(centre[0], centre[1], "empty mesh", ha="center", va="center")
        return
    faces = np.asarray(mesh.faces)
    if len(faces) > MAX_FACES:  # a preview, not the result: keep it quick
        faces = faces[np.random.default_rng(0).choice(len(faces), MAX_FACES, replace=False)]
    tri = np.asarray(mesh.vertices)[faces]  # (F, 3, 3), camera frame
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    toward = -tri.mean(axis=1) if K is not None else np.tile([0.0, 0.0, -1.0], (len(tri), 1))
    normals *= np.where((normals * toward).sum(1) < 0, -1.0, 1.0)[:, None]  # two-sided
    shade = 0.25 + 0.75 * np.clip(normals @ LIGHT, 0, 1)
    order = np.argsort(-tri[:, :, 2].mean(axis=1))  # far to near
    flat = _project(tri[order].reshape(-1, 3), K).reshape(-1, 3, 2)
    s = shade[order]
    colors = np.stack([0.55 * s, 0.7 * s, 0.9 * s, np.ones_like(s)], axis=1)
    ax.add_collection(PolyCollection(flat, facecolors=colors, edgecolors="none", antialiased=False))


def save_preview(
    image: torch.Tensor,
    mask: torch.Tensor,
    meshes: dict[str, trimesh.Trimesh],
    path: str | Path,
    captions: dict[str, str] | None = None,
    intrinsics: np.ndarray | None = None,
    size: float = 3.2,
) -> Path:
    """Write a PNG: input crop, mask, then one panel per mesh with its title, face count and caption.

    ``captions`` maps a mesh's title to a `` · ``-joined line (time, speedup, fidelity), printed under it one
    figure per line. ``intrinsics``: the crop's 3x3 camera matrix (None: an orthographic view along +z).

    Example::

        save_preview(inputs.image, inputs.mask, {"unaccelerated": base.mesh, "stack: x": fast.mesh}, "preview.png",
                     captions={"stack: x": "total 1.20 s (2.00x) · fscore 0.98"})
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mesh_list = list(meshes.values())
    in_front = all(len(m.faces) == 0 or float(np.asarray(m.vertices)[:, 2].min()) > 0.05 for m in mesh_list)
    K = np.asarray(intrinsics, dtype=np.float64) if intrinsics is not None and in_front else None
    crop = int(image.shape[-1])
    centre, half = _limits(mesh_list, K, crop)
    fig, axes = plt.subplots(1, 2 + len(meshes), figsize=(size * (2 + len(meshes)), size), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image.detach().permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    axes[0].set_title(f"input {image.shape[2]}x{image.shape[1]}", fontsize=10)
    axes[1].imshow(mask.detach().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title(f"mask ({int(mask.sum())} px)", fontsize=10)
    view = "input camera" if K is not None else "orthographic along +z"
    for ax, (title, mesh) in zip(axes[2:], meshes.items()):
        ax.set_title(f"{title}\n{len(mesh.faces):,} faces, {view}", fontsize=10)
        ax.set_aspect("equal")
        _draw_mesh(ax, mesh, K, crop, centre, half)
        caption = (captions or {}).get(title)
        if caption:
            ax.text(0.5, -0.01, caption.replace(" · ", "\n"), transform=ax.transAxes, ha="center", va="top", fontsize=9)
    for ax in axes:
        ax.axis("off")
    try:
        fig.tight_layout()
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)
