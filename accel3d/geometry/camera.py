"""The camera and the pose of a rendered object: a fixed pinhole camera, an object's placement, and poses
(the default front view, random training views). The conventions are drawn in :mod:`accel3d.geometry.render`.

Example::

    from accel3d.geometry.camera import Camera, random_pose

    pose = random_pose(torch.Generator().manual_seed(0), Camera(size=64))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

DEFAULT_FOV_DEGREES = 50.0
CANONICAL_RADIUS = 0.9 * math.sqrt(3.0)  # bounding-sphere radius of a mesh after normalize_mesh (half-side 0.9)


@dataclass(frozen=True)
class Camera:
    """A fixed pinhole camera at the origin looking down +z (OpenCV axes; the conventions are drawn in accel3d.geometry.render).

    ``size``: the square image's side in pixels; ``fov_degrees``: its full field of view;
    ``near``: the smallest depth an object's vertex may have.

    >>> cam = Camera(size=64)
    >>> round(cam.focal, 2)  # pixels
    68.62
    >>> cam.project(np.array([[0.0, 0.0, 3.0]])).tolist()  # the optical axis hits the image centre
    [[32.0, 32.0]]
    """

    size: int = 128
    fov_degrees: float = DEFAULT_FOV_DEGREES
    near: float = 0.05

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size >= 1):
            raise ValueError(f"camera.size must be a positive integer (pixels), got {self.size!r}")
        if not (0.0 < float(self.fov_degrees) < 180.0):
            raise ValueError(f"camera.fov_degrees must lie in (0, 180), got {self.fov_degrees!r}")
        if not (math.isfinite(self.near) and self.near > 0):
            raise ValueError(f"camera.near must be a positive finite depth, got {self.near!r}")

    @property
    def focal(self) -> float:
        """Focal length in pixels: ``(size / 2) / tan(fov / 2)``."""
        return (self.size / 2) / math.tan(math.radians(self.fov_degrees) / 2)

    @property
    def intrinsics(self) -> np.ndarray:
        """The 3x3 matrix ``K`` with ``[u, v, 1] ~ K @ [x, y, z]`` (pixel-edge coordinates, see the module docstring)."""
        c = self.size / 2
        return np.array([[self.focal, 0.0, c], [0.0, self.focal, c], [0.0, 0.0, 1.0]])

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(u, v)`` (column, row) of camera-frame ``points`` (N, 3) with ``z > 0``."""
        points = np.asarray(points, dtype=np.float64)
        return self.focal * points[:, :2] / points[:, 2:3] + self.size / 2


class Pose(NamedTuple):
    """An object's placement, ``world = rotation @ (scale * p) + translation``; unpacks as ``(R, t, s)``.

    ``rotation`` (3, 3), ``translation`` (3,) and ``scale`` (3,) are float32 tensors.

    >>> R, t, s = default_pose()
    >>> t.tolist()
    [0.0, 0.0, 3.0]
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor


def default_pose(depth: float = 3.0) -> Pose:
    """The fixed front view used for a default input: upright (canonical +y up, +z toward the camera), centred.

    180 degrees about x maps canonical ``(x, y, z)`` to camera ``(x, -y, -z)``; then a
    30-degree turn about the camera's vertical axis shows the object three-quarter on.
    At ``depth=3`` a normalised mesh (half-side 0.9) spans about 60% of the image.

    >>> R, t, s = default_pose()
    >>> torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    True
    """
    flip = np.diag([1.0, -1.0, -1.0])
    a = math.radians(30.0)
    turn = np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    rotation = torch.as_tensor(turn @ flip, dtype=torch.float32)
    return Pose(rotation, torch.tensor([0.0, 0.0, float(depth)]), torch.ones(3))


def _random_rotation(generator: torch.Generator, max_degrees: float) -> torch.Tensor:
    """Uniform over SO(3) for ``max_degrees >= 180`` (a normalised Gaussian quaternion is Haar-distributed)."""
    if max_degrees >= 180.0:
        q = torch.randn(4, generator=generator, dtype=torch.float64)
        w, x, y, z = (q / q.norm()).tolist()
        return torch.tensor(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ],
            dtype=torch.float64,
        )
    axis = torch.randn(3, generator=generator, dtype=torch.float64)
    angle = math.radians(max_degrees) * (2 * torch.rand((), generator=generator, dtype=torch.float64).item() - 1)
    k = axis / axis.norm()
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross  # Rodrigues


def random_pose(
    generator: torch.Generator,
    camera: Camera | None = None,
    depth: tuple[float, float] = (3.0, 5.0),
    scale: tuple[float, float] = (0.6, 1.0),
    anisotropy: float = 0.25,
    max_degrees: float = 180.0,
    offset: float = 0.8,
    radius: float = CANONICAL_RADIUS,
) -> Pose:
    """A random placement of a normalised mesh that keeps it wholly in the camera's view.

    - rotation: uniform over SO(3) (``max_degrees=180``, what SAM 3D Objects predicts), or a
      random axis turned by an angle uniform in ``[-max_degrees, max_degrees]`` about the
      identity (a narrower distribution to start training from);
    - scale: a base uniform in ``scale``, times a per-axis factor uniform in
      ``[1 - anisotropy, 1 + anisotropy]``;
    - translation: depth ``z`` uniform in ``depth``; ``x`` and ``y`` uniform within ``offset``
      times the largest shift that keeps the object's bounding sphere (``radius`` times the
      largest scale; default that of ``normalize_mesh``'s box) inside the field of view (and
      ``z`` raised if that sphere would not fit at all).

    Every draw comes from ``generator``, so a seeded generator repeats its poses.

    >>> g = torch.Generator().manual_seed(0)
    >>> R, t, s = random_pose(g)
    >>> bool(torch.allclose(R @ R.T, torch.eye(3), atol=1e-5)), bool(t[2] >= 3.0), s.shape
    (True, True, torch.Size([3]))
    """
    camera = camera or Camera()
    if not (0 < depth[0] <= depth[1] and 0 < scale[0] <= scale[1] and 0 <= anisotropy < 1 and 0 <= offset <= 1):
        raise ValueError(
            f"random_pose: need 0 < depth[0] <= depth[1], 0 < scale[0] <= scale[1], 0 <= anisotropy < 1 and 0 <= offset <= 1; "
            f"got depth={depth}, scale={scale}, anisotropy={anisotropy}, offset={offset}"
        )
    uniform = lambda lo, hi, n=(): lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)  # noqa: E731
    rotation = _random_rotation(generator, max_degrees)
    s = uniform(*scale) * uniform(1 - anisotropy, 1 + anisotropy, (3,))
    half = math.radians(camera.fov_degrees) / 2
    r = radius * float(s.max())
    fit = r / math.sin(half)  # the depth at which the sphere, centred on the axis, touches the view's side planes
    z = max(float(uniform(*depth)), fit, r + 2 * camera.near)
    reach = max(0.0, z * math.tan(half) - r / math.cos(half))  # the largest |x| (or |y|) that keeps it off those planes
    xy = uniform(-1.0, 1.0, (2,)) * reach * offset
    translation = torch.tensor([float(xy[0]), float(xy[1]), z], dtype=torch.float64)
    return Pose(rotation.float(), translation.float(), s.float())


def check_pose(pose: Pose | tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pose as float64 arrays (rotation, translation, scale (3,)), or a ValueError naming the bad part."""
    try:
        rotation, translation, scale = pose
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pose must be (rotation (3, 3), translation (3,), scale (3,) or scalar); got {type(pose).__name__}") from exc
    rot = np.asarray(rotation, dtype=np.float64)
    trans = np.asarray(translation, dtype=np.float64)
    sc = np.asarray(scale, dtype=np.float64)
    if rot.shape != (3, 3):
        raise ValueError(f"pose.rotation must have shape (3, 3), got {rot.shape}")
    if trans.shape != (3,):
        raise ValueError(f"pose.translation must have shape (3,), got {trans.shape}")
    if sc.shape not in ((), (1,), (3,)):
        raise ValueError(f"pose.scale must be a scalar or have shape (3,), got {sc.shape}")
    for name, value in (("rotation", rot), ("translation", trans), ("scale", sc)):
        if not np.isfinite(value).all():
            raise ValueError(f"pose.{name} has NaN or inf entries: {value.tolist()}")
    if np.abs(rot @ rot.T - np.eye(3)).max() > 1e-4 or np.linalg.det(rot) < 0:
        raise ValueError(f"pose.rotation is not a rotation (R @ R.T != I or det < 0): {rot.round(4).tolist()}")
    if (sc <= 0).any():
        raise ValueError(f"pose.scale must be positive, got {sc.tolist()}")
    return rot, trans, np.broadcast_to(sc.reshape(-1), (3,)).copy()
