"""Layout pose helpers: 6D rotations (Zhou et al. 2019) and the object-to-world matrix.

Convention (as SAM 3D Objects decodes its ``6drotation`` latent): the six numbers
are the first two **columns** ``a1, a2`` of the rotation; Gram-Schmidt gives
``b1 = a1/|a1|``, ``b2 = normalise(a2 - (b1.a2) b1)``, ``b3 = b1 x b2``, and the
matrix is ``[b1 b2 b3]`` (columns). The object-to-world map scales first (per
axis, in the object frame), then rotates, then translates:
``x_world = R (scale * x) + translation``.

SAM3D's flow predicts the scale in log space and applies ``exp`` when decoding;
the helpers here take the scale itself (positive).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from torch import Tensor


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """``[..., 6]`` -> rotation matrices ``[..., 3, 3]`` by Gram-Schmidt on the two columns.

    Example::

        R = rotation_6d_to_matrix(torch.tensor([1.0, 0, 0, 0, 1, 0]))   # identity
    """
    if d6.shape[-1] != 6:
        raise ValueError(f"rotation6d: expected [..., 6], got {tuple(d6.shape)}")
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(matrix: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> their first two columns ``[..., 6]`` (inverse of :func:`rotation_6d_to_matrix`)."""
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix: expected [..., 3, 3], got {tuple(matrix.shape)}")
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


def pose_matrix(rotation6d: Tensor, translation: Tensor, scale: Tensor) -> Tensor:
    """Object-to-world ``[..., 4, 4]``: ``[[R diag(scale), translation], [0, 0, 0, 1]]``.

    ``scale`` is ``[..., 3]`` (per axis) or ``[..., 1]`` (uniform), positive.

    Example::

        M = pose_matrix(torch.tensor([1.0, 0, 0, 0, 1, 0]), torch.tensor([0.0, 0, 2]), torch.tensor([0.5, 0.5, 0.5]))
        # M @ [x, y, z, 1] = [0.5x, 0.5y, 0.5z + 2, 1]
    """
    rotation = rotation_6d_to_matrix(rotation6d)
    if translation.shape[-1] != 3:
        raise ValueError(f"translation: expected [..., 3], got {tuple(translation.shape)}")
    if scale.shape[-1] not in (1, 3):
        raise ValueError(f"scale: expected [..., 3] or [..., 1], got {tuple(scale.shape)}")
    batch = torch.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1], scale.shape[:-1])
    out = torch.zeros(*batch, 4, 4, dtype=rotation.dtype, device=rotation.device)
    out[..., :3, :3] = rotation * scale.expand(*batch, 3)[..., None, :]  # R @ diag(s): column j times s_j
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1.0
    return out


def place_mesh(mesh: trimesh.Trimesh, rotation6d: Tensor, translation: Tensor, scale: Tensor) -> trimesh.Trimesh:
    """A copy of ``mesh`` (object frame) moved into the layout pose; a mirroring (negative) scale is refused, and
    a pose with NaN or inf values raises ``FloatingPointError`` (it would give NaN vertices)."""
    for name, value in (("rotation6d", rotation6d), ("translation", translation), ("scale", scale)):
        if not bool(torch.isfinite(value).all()):
            raise FloatingPointError(f"{name}: {value.tolist()} holds NaN or inf; no mesh is placed with it")
    if bool((scale <= 0).any()):
        raise ValueError(f"scale: expected positive values, got {scale.tolist()}")
    matrix = pose_matrix(rotation6d.detach().double().cpu(), translation.detach().double().cpu(), scale.detach().double().cpu())
    placed = mesh.copy()
    if len(placed.vertices):
        placed.apply_transform(np.asarray(matrix.numpy(), dtype=np.float64))
    return placed
