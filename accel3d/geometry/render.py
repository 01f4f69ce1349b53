"""CPU rendering of a posed mesh to an RGB image and an object mask, object crops and random poses.

A z-buffer triangle rasteriser in numpy, with no OpenGL: every triangle is expanded
to the pixels of its screen bounding box (vectorised over all triangles at once, in
chunks that bound memory), the pixel centres inside it keep their perspective-correct
depth, and the nearest triangle wins each pixel. Shading is flat Lambert (one normal
per triangle, two-sided, so open meshes shade from both sides) times one flat colour
per object, plus an ambient term. A 64x64 view of a 5,000-face mesh takes a few ms.

Camera frame (OpenCV convention): the camera sits at the origin and looks down **+z**;
**+x** points to the right of the image and **+y** points down it::

            z (forward, into the scene)
           /
          /
    (0,0,0)------> x  (image right, column index grows)
         |
         |
         v  y  (image down, row index grows)

    image (size x size pixels), row 0 at the top:

    (0,0) +-----------------+  u = focal * x / z + size / 2    (column, pixels)
          |        .        |  v = focal * y / z + size / 2    (row, pixels)
          |      (c,c)      |  focal = (size / 2) / tan(fov / 2),  c = size / 2
          |                 |  pixel (row i, column j) covers [j, j+1) x [i, i+1);
          +-----------------+  its centre (j + 0.5, i + 0.5) is what is sampled

Images are square and ``fov`` is the full field of view of either side (default 50
degrees). A visible object therefore has ``z > 0``; an object at ``+x`` appears in the
right half of the image (larger column index), one at ``+y`` in the lower half.

Pose: a mesh point ``p`` in its canonical frame is placed at
``world = rotation @ (scale * p) + translation`` (scale per object axis, applied before
the rotation; a scalar scale is isotropic). With ``rotation = I`` the object's ``+y``
axis points *down* the image; :func:`default_pose` turns it upright (180 degrees about
x, so canonical ``+y`` is image-up and canonical ``+z`` faces the camera).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from accel3d.geometry.camera import (  # re-exported: the camera, the pose and the poses live there
    CANONICAL_RADIUS,
    DEFAULT_FOV_DEGREES,
    Camera,
    Pose,
    check_pose,
    default_pose,
    random_pose,
)
from accel3d.geometry.meshes import check_mesh

__all__ = [
    "CANONICAL_RADIUS",
    "DEFAULT_FOV_DEGREES",
    "Camera",
    "Crop",
    "Pose",
    "Render",
    "covered_pixels",
    "crop_intrinsics",
    "crop_to_mask",
    "default_pose",
    "random_pose",
    "render",
    "render_crop",
]

DEFAULT_LIGHT = (-0.3, -0.5, -1.0)  # toward the light, camera frame: from the upper left, behind the camera
MAX_PAIRS_PER_CHUNK = 2_000_000  # (triangle, pixel) candidates held at once: bounds the temporaries to ~100 MB


class Render(NamedTuple):
    """A rendered view: ``rgb`` float32 (3, H, W) in [0, 1], ``mask`` bool (H, W), ``depth`` float32 (H, W), +inf off the object.

    >>> rgb, mask, depth = render(trimesh.creation.box(), default_pose(), Camera(size=32))
    >>> bool(torch.isinf(depth[~mask]).all()), bool((depth[mask] > 2).all())
    (True, True)
    """

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


class Crop(NamedTuple):
    """An object crop: ``rgb`` (3, S, S), ``mask`` (S, S) and ``box``, the square ``(x0, y0, x1, y1)`` it covers.

    ``box`` is in the full image's pixel-edge coordinates (column ``x``, row ``y``; it may
    reach past the image, where the crop shows the background). Crop pixel ``(i, j)``
    shows the full image's point ``(x0 + (j + 0.5) * (x1 - x0) / S, y0 + (i + 0.5) * (y1 - y0) / S)``;
    :func:`crop_intrinsics` gives the camera matrix of the crop itself.

    >>> view = render(trimesh.creation.box(), default_pose(), Camera(size=64))
    >>> rgb, mask, (x0, y0, x1, y1) = crop_to_mask(view.rgb, view.mask, size=32)
    >>> rgb.shape, x1 - x0 == y1 - y0
    (torch.Size([3, 32, 32]), True)
    """

    rgb: torch.Tensor
    mask: torch.Tensor
    box: tuple[int, int, int, int]


def covered_pixels(
    uv: np.ndarray, width: int, height: int, max_pairs: int = MAX_PAIRS_PER_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Every (triangle, pixel) pair whose pixel centre lies in the 2D triangle, in chunks of at most ``max_pairs`` candidates.

    ``uv`` (F, 3, 2): triangles in pixel-edge coordinates (column, row), so pixel
    ``(px, py)`` has its centre at ``(px + 0.5, py + 0.5)``, on a ``width`` x ``height``
    grid. Each triangle is expanded to the pixels of its bounding box, which are then
    tested with edge functions. Yields ``(face, px, py, weights)`` with ``weights`` (n, 3)
    the centre's barycentric coordinates (the same for either winding); degenerate
    triangles yield nothing. A centre on an edge shared by two triangles goes to both.

    >>> tri = np.array([[[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]])
    >>> [len(face) for face, px, py, w in covered_pixels(tri, 8, 8)]  # the centres with x + y <= 4
    [10]
    """
    a, b, c = uv[:, 0], uv[:, 1], uv[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    lo = np.ceil(uv.min(axis=1) - 0.5).clip(0, [width, height]).astype(np.int64)  # first pixel whose centre is >= the min
    hi = np.floor(uv.max(axis=1) - 0.5).clip(-1, [width - 1, height - 1]).astype(np.int64)
    span_x, span_y = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    keep = np.flatnonzero((span_x > 0) & (span_y > 0) & (np.abs(area) > 1e-12))
    counts = span_x[keep] * span_y[keep]
    ends = np.cumsum(counts)
    start = 0
    while start < len(keep):
        # the longest run of triangles whose candidates fit in one chunk (at least one triangle)
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + max_pairs, side="right")))
        faces, n = keep[start:stop], counts[start:stop]
        start = stop
        face = np.repeat(faces, n)
        local = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        w = span_x[face]
        px = lo[face, 0] + local % w
        py = lo[face, 1] + local // w
        x, y = px + 0.5, py + 0.5
        fa, fb, fc = a[face], b[face], c[face]
        inv_area = 1.0 / area[face]
        # barycentric weights by edge functions, normalised by the signed area (either winding)
        l0 = ((fb[:, 0] - x) * (fc[:, 1] - y) - (fb[:, 1] - y) * (fc[:, 0] - x)) * inv_area
        l1 = ((fc[:, 0] - x) * (fa[:, 1] - y) - (fc[:, 1] - y) * (fa[:, 0] - x)) * inv_area
        l2 = 1.0 - l0 - l1
        inside = (l0 >= 0) & (l1 >= 0) & (l2 >= -1e-12)
        yield face[inside], px[inside], py[inside], np.stack([l0[inside], l1[inside], l2[inside]], axis=1)


def _rasterize(tri: np.ndarray, camera: Camera, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest triangle per pixel: ``face`` (size*size,) int, -1 on the background, and ``inv_depth`` (1/z, 0 there).

    ``tri`` (F, 3, 3) camera-frame triangles, all with z > 0.
    """
    focal = (size / 2) / math.tan(math.radians(camera.fov_degrees) / 2)
    z = tri[..., 2]
    uv = focal * tri[..., :2] / z[..., None] + size / 2  # (F, 3, 2), pixel-edge coordinates
    best_inv = np.zeros(size * size)
    best_face = np.full(size * size, -1, dtype=np.int64)
    for face, px, py, weights in covered_pixels(uv, size, size):
        inv = (weights / z[face]).sum(axis=1)  # 1/z is linear in screen space
        pixel = py * size + px
        order = np.lexsort((-inv, pixel))  # by pixel, nearest first; stable, so ties go to the lower face index
        pixel, inv, face = pixel[order], inv[order], face[order]
        first = np.ones(len(pixel), dtype=bool)
        first[1:] = pixel[1:] != pixel[:-1]
        pixel, inv, face = pixel[first], inv[first], face[first]
        nearer = inv > best_inv[pixel]
        best_inv[pixel[nearer]] = inv[nearer]
        best_face[pixel[nearer]] = face[nearer]
    return best_face, best_inv


def render(
    mesh: trimesh.Trimesh,
    pose: Pose | tuple,
    camera: Camera | None = None,
    color: tuple[float, float, float] | torch.Tensor = (0.8, 0.8, 0.8),
    background: float | tuple[float, float, float] = 1.0,
    light: tuple[float, float, float] = DEFAULT_LIGHT,
    ambient: float = 0.25,
    supersample: int = 1,
) -> Render:
    """Render ``mesh`` placed by ``pose`` (see the module docstring for the frames) with flat Lambert shading.

    A pixel's colour is ``color * (ambient + (1 - ambient) * max(0, n . l))`` for the
    nearest triangle's normal ``n`` (turned toward the camera) and the unit direction
    ``light`` toward the light, in the camera frame; off the object it is ``background``.
    ``supersample`` renders at ``k`` times the size and averages ``k x k`` blocks (the mask
    keeps the pixels at least half covered). Deterministic: the same call gives the same image.

    Raises ``ValueError`` naming ``mesh`` (no faces, non-finite vertices), ``pose`` (not a
    rotation, NaN/inf, non-positive scale, a vertex behind the near plane, or nothing in
    view), ``color``/``background`` (outside [0, 1]) or ``supersample``.

    >>> from accel3d.geometry.meshes import BUNDLED_MESH, load_mesh, normalize_mesh
    >>> view = render(normalize_mesh(load_mesh(BUNDLED_MESH)), default_pose(), Camera(size=64))
    >>> view.rgb.shape, view.mask.dtype, bool(view.mask.any())
    (torch.Size([3, 64, 64]), torch.bool, True)
    """
    camera = camera or Camera()
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"mesh must be a trimesh.Trimesh with faces; got {type(mesh).__name__} with no faces")
    check_mesh(mesh, "mesh")
    rot, trans, sc = check_pose(pose)
    col = np.asarray(color.detach().cpu() if isinstance(color, torch.Tensor) else color, dtype=np.float64).reshape(-1)
    if col.shape != (3,) or not (np.isfinite(col).all() and (col >= 0).all() and (col <= 1).all()):
        raise ValueError(f"color must be 3 values in [0, 1], got {col.tolist()}")
    bg = np.broadcast_to(np.asarray(background, dtype=np.float64).reshape(-1), (3,))
    if not (np.isfinite(bg).all() and (bg >= 0).all() and (bg <= 1).all()):
        raise ValueError(f"background must be a value or 3 values in [0, 1], got {np.asarray(background).tolist()}")
    if not (isinstance(supersample, int) and supersample >= 1):
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")

    vertices = (np.asarray(mesh.vertices, dtype=np.float64) * sc) @ rot.T + trans
    used = vertices[np.unique(mesh.faces)]
    if used[:, 2].max() <= camera.near:
        raise ValueError(f"pose puts the object behind the camera (largest depth z={used[:, 2].max():.3g}); the camera looks down +z")
    if used[:, 2].min() < camera.near:
        raise ValueError(
            f"pose puts part of the object behind the camera's near plane (z={used[:, 2].min():.3g} < near={camera.near}); "
            "move it further along +z"
        )
    tri = vertices[mesh.faces]  # (F, 3, 3)
    size = camera.size * supersample
    face, inv = _rasterize(tri, camera, size)
    hit = face >= 0
    if not hit.any():
        raise ValueError(
            f"pose places the object wholly outside the {camera.size}x{camera.size} view (translation {trans.round(3).tolist()}); "
            "the mask is empty"
        )

    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True).clip(1e-30)
    toward_camera = -tri.mean(axis=1)
    normal *= np.where((normal * toward_camera).sum(1) < 0, -1.0, 1.0)[:, None]  # two-sided: face the viewer
    direction = np.asarray(light, dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    shade = ambient + (1 - ambient) * np.clip(normal @ direction, 0.0, None)  # (F,)

    rgb = np.empty((size * size, 3))
    rgb[:] = bg
    rgb[hit] = col * shade[face[hit], None]
    depth = np.full(size * size, np.inf)
    depth[hit] = 1.0 / inv[hit]
    rgb_t = torch.as_tensor(rgb.T.reshape(3, size, size), dtype=torch.float32)
    hit_t = torch.as_tensor(hit.reshape(size, size))
    depth_t = torch.as_tensor(depth.reshape(size, size), dtype=torch.float32)
    if supersample > 1:
        k = supersample
        rgb_t = F.avg_pool2d(rgb_t[None], k)[0]
        coverage = F.avg_pool2d(hit_t[None, None].float(), k)[0, 0]
        finite = torch.where(hit_t, depth_t, torch.zeros(()))
        depth_t = torch.where(coverage > 0, F.avg_pool2d(finite[None, None], k)[0, 0] / coverage.clamp(min=1e-9), torch.inf)
        hit_t = coverage >= 0.5
        depth_t = torch.where(hit_t, depth_t, torch.inf)
        if not hit_t.any():
            raise ValueError("pose leaves the object under half a pixel in every pixel: the mask is empty; move it closer")
    return Render(rgb_t, hit_t, depth_t)


def crop_to_mask(
    rgb: torch.Tensor,
    mask: torch.Tensor,
    size: int = 64,
    margin: float = 0.1,
    background: float | tuple[float, float, float] = 1.0,
) -> Crop:
    """Crop a square around ``mask``'s bounding box, widened by ``margin`` of its side on each side, resized to ``size``.

    The box is centred on the bounding box, its side ``ceil(max(w, h) * (1 + 2 * margin))``
    whole pixels (at least 1); where it reaches past the image the crop shows ``background``.
    Resizing is bilinear with antialiasing; the crop's mask is the resized mask's > 0.5.

    >>> rgb, mask = torch.zeros(3, 32, 32), torch.zeros(32, 32, dtype=torch.bool)
    >>> mask[10:20, 12:16] = True
    >>> crop_to_mask(rgb, mask, size=16, margin=0.0).box
    (9, 10, 19, 20)
    """
    if not isinstance(rgb, torch.Tensor) or rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"rgb must be a (3, H, W) tensor, got {getattr(rgb, 'shape', type(rgb).__name__)}")
    if not isinstance(mask, torch.Tensor) or mask.shape != rgb.shape[1:]:
        raise ValueError(f"mask must be an (H, W) tensor matching rgb {tuple(rgb.shape[1:])}, got {getattr(mask, 'shape', None)}")
    if not (isinstance(size, int) and size >= 1):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a non-negative number, got {margin!r}")
    mask = mask.bool()
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    if len(rows) == 0:
        raise ValueError("mask is empty: there is no object to crop")
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    side = max(1, math.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
    bx = int(math.floor((x0 + x1 - side) / 2))
    by = int(math.floor((y0 + y1 - side) / 2))
    height, width = mask.shape
    pad = (max(0, -bx), max(0, bx + side - width), max(0, -by), max(0, by + side - height))  # left, right, top, bottom
    bg = torch.as_tensor(background, dtype=rgb.dtype).reshape(-1, 1, 1).expand(3, 1, 1)
    image = torch.cat([rgb, mask[None].to(rgb.dtype)])
    if any(pad):
        canvas = torch.cat([bg, torch.zeros(1, 1, 1, dtype=rgb.dtype)]).expand(4, height + pad[2] + pad[3], width + pad[0] + pad[1]).clone()
        canvas[:, pad[2] : pad[2] + height, pad[0] : pad[0] + width] = image
        image = canvas
    ox, oy = bx + pad[0], by + pad[2]
    window = image[:, oy : oy + side, ox : ox + side]
    if side != size:
        window = F.interpolate(window[None], size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)[0]
    return Crop(window[:3].clamp(0, 1), window[3] > 0.5, (bx, by, bx + side, by + side))


def crop_intrinsics(camera: Camera, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The 3x3 camera matrix of a ``size``-pixel crop of ``box`` (see :class:`Crop`), in the crop's pixel-edge coordinates.

    >>> K = crop_intrinsics(Camera(size=128), (32, 32, 96, 96), 64)
    >>> bool(K[0, 0] == Camera(size=128).focal), float(K[0, 2])
    (True, 32.0)
    """
    x0, y0, x1, y1 = box
    k = size / (x1 - x0)
    K = camera.intrinsics.copy()
    K[0, 0] *= k
    K[1, 1] *= k
    K[0, 2] = (K[0, 2] - x0) * k
    K[1, 2] = (K[1, 2] - y0) * k
    return K


def render_crop(
    mesh: trimesh.Trimesh,
    pose: Pose | tuple,
    camera: Camera | None = None,
    size: int = 64,
    margin: float = 0.1,
    **shading,
) -> Crop:
    """:func:`render` then :func:`crop_to_mask`: the object crop a SAM 3D Objects-style model takes.

    ``shading`` goes to :func:`render` (``color``, ``background``, ``light``, ``ambient``, ``supersample``).

    >>> import trimesh
    >>> crop = render_crop(trimesh.creation.icosphere(radius=0.5), default_pose(), Camera(size=96), size=32)
    >>> crop.rgb.shape, crop.mask.shape
    (torch.Size([3, 32, 32]), torch.Size([32, 32]))
    """
    view = render(mesh, pose, camera, **shading)
    return crop_to_mask(view.rgb, view.mask, size, margin, background=shading.get("background", 1.0))
