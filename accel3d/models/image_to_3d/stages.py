"""The stage objects of the ``image_to_3d`` pipeline between its two samplers, and how flow outputs are read.

- :class:`SparseStructure` (stage ``sparse_structure``): the SS latent -> occupancy
  logits (the SS VAE decoder) and the logits -> the voxel coordinates the SLaT flow
  samples over (``coords``), with SAM 3D Objects' token cap. An accelerator that
  changes the coordinates (spectral token aggregation) wraps ``coords`` and returns
  its own :class:`SparseCoords` with the scale factor its quantisation needs.
- :class:`MeshDecoder` (stage ``mesh_decoder``): ``decode(tokens, coords, layout)``, the
  SLaT mesh decoder's fine SDF, marching cubes and the placement in the layout pose.
- :class:`Layout`: the pose the SS flow predicts (6D rotation, translation, per-axis scale).
- :class:`FlowSpace`: how the flows' outputs map to the models' values, read from the
  checkpoint's ``metadata["normalization"]`` (identity where it says nothing; scale in log
  space, as SAM 3D Objects predicts it).

What these stages make is checked where it is made: a layout with NaN or inf values (when
:meth:`FlowSpace.layout` maps it, and again before :class:`MeshDecoder` places a mesh with it),
occupancy logits and a fine SDF that hold them raise ``FloatingPointError`` naming the stage.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import trimesh
from torch import Tensor

from accel3d.core.validate import check_int, count_nonfinite
from accel3d.models.image_to_3d.pose import place_mesh, rotation_6d_to_matrix
from accel3d.models.image_to_3d.slat import SLaTMeshDecoder
from accel3d.models.image_to_3d.ss_flow import tokens_to_grid
from accel3d.models.image_to_3d.ss_vae import SSVAE
from accel3d.models.image_to_3d.structure import downsample_structure, occupied_coords, sdf_to_mesh

MIN_SCALE = 1e-3  # a predicted scale at or below this (a linear-scale flow gone negative) is clamped to it, with a warning


@dataclass(frozen=True)
class Layout:
    """An object's pose: ``world = R(rotation6d) (scale * p) + translation`` (see :mod:`accel3d.models.image_to_3d.pose`).

    Example::

        layout = Layout(torch.tensor([1.0, 0, 0, 0, 1, 0]), torch.tensor([0.0, 0, 3]), torch.ones(3))
        layout.rotation                   # 3x3 identity
        layout.scaled(2.0).scale          # tensor([2., 2., 2.])
    """

    rotation6d: Tensor  # (6,)
    translation: Tensor  # (3,)
    scale: Tensor  # (3,), positive

    @property
    def rotation(self) -> Tensor:
        """The 3x3 rotation matrix (Gram-Schmidt of the two 6D columns)."""
        return rotation_6d_to_matrix(self.rotation6d.double())

    def check_finite(self, who: str, hint: str = "") -> Layout:
        """This layout, or a ``FloatingPointError`` naming ``who`` and the part (rotation6d, translation, scale)
        that holds NaN or inf, with ``hint`` (where it came from) after it."""
        for part in ("rotation6d", "translation", "scale"):
            value = getattr(self, part)
            if not bool(torch.isfinite(value).all()):
                raise FloatingPointError(f"{who}: the layout {part} {value.tolist()} holds NaN or inf{' (' + hint + ')' if hint else ''}")
        return self

    def scaled(self, factor: float) -> Layout:
        """The same pose with the scale multiplied by ``factor`` (a structure shrunk by ``factor`` is scaled back)."""
        return Layout(self.rotation6d, self.translation, self.scale * factor)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists for a JSON file: the rotation matrix, its 6D form, translation and scale."""
        return {
            "rotation": self.rotation.tolist(),
            "rotation6d": self.rotation6d.tolist(),
            "translation": self.translation.tolist(),
            "scale": self.scale.tolist(),
        }


def _affine(spec: Any, what: str, channels: int) -> tuple[Tensor, Tensor]:
    """``(mean, std)`` tensors of one ``metadata["normalization"]`` entry (scalars or per-channel lists)."""
    if spec is None:
        return torch.zeros(channels), torch.ones(channels)
    if not isinstance(spec, Mapping) or not set(spec) <= {"mean", "std", "log", "frame"}:
        raise ValueError(
            f"weights: metadata normalization[{what!r}] must be a dict with 'mean' and 'std' (and 'log' or 'frame'), got {spec!r}"
        )
    out = []
    for key, default in (("mean", 0.0), ("std", 1.0)):
        value = torch.as_tensor(spec.get(key, default), dtype=torch.float32).reshape(-1)
        if value.numel() not in (1, channels) or not torch.isfinite(value).all():
            raise ValueError(f"weights: metadata normalization[{what!r}][{key!r}] must be a finite number or {channels} of them")
        out.append(value.expand(channels).clone())
    if (out[1] <= 0).any():
        raise ValueError(f"weights: metadata normalization[{what!r}]['std'] must be positive, got {out[1].tolist()}")
    return out[0], out[1]


class FlowSpace:
    """The map from the flows' outputs to the models' values: ``value = x * std + mean`` per entry.

    Read from ``metadata["normalization"]`` of the checkpoint, each entry optional::

        {"ss_latent": {"mean": m, "std": s},            # SS flow "shape" tokens -> SS VAE latent (per channel or scalar)
         "slat": {"mean": m, "std": s},                 # SLaT flow tokens -> mesh decoder tokens
         "translation": {"mean": [3], "std": [3], "frame": "crop"},
         "scale": {"mean": [3], "std": [3], "log": true}}   # log: scale = exp(x * std + mean)

    Absent entries are the identity; the scale is in log space unless ``"log": false`` (SAM 3D
    Objects predicts log scale, and a log scale can never come out negative).

    Translation frames: ``"camera"`` (the default): the camera-frame translation itself;
    ``"crop"`` (what ``scripts/train_image_to_3d.py`` trains, and assumed when the checkpoint's
    ``metadata["conventions"]["translation"]`` starts with ``(a, b, log d)``): ``(a, b, log d)``,
    the object origin's projection into the ``S``-pixel crop in units of its half-side and the
    depth seen by a crop camera of focal ``S/2``, mapped back with the crop's intrinsics ``K``:
    ``z = d f / (S/2)``, ``x = (a S/2 + S/2 - c_x) z / f``, ``y = (b S/2 + S/2 - c_y) z / f``.

    Example::

        space = FlowSpace({}, ss_channels=8, slat_channels=8)
        space.layout({"rotation": r, "translation": t, "scale": s})   # Layout with scale = exp(s)
    """

    def __init__(self, metadata: Mapping[str, Any] | None, ss_channels: int, slat_channels: int) -> None:
        spec = (metadata or {}).get("normalization", {}) or {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"weights: metadata 'normalization' must be a dict, got {type(spec).__name__}")
        unknown = set(spec) - {"ss_latent", "slat", "translation", "scale"}
        if unknown:
            raise ValueError(f"weights: metadata normalization has unknown entries {sorted(unknown)}")
        self.ss_latent = _affine(spec.get("ss_latent"), "ss_latent", ss_channels)
        self.slat = _affine(spec.get("slat"), "slat", slat_channels)
        self.translation = _affine(spec.get("translation"), "translation", 3)
        self.scale = _affine(spec.get("scale"), "scale", 3)
        self.log_scale = bool((spec.get("scale") or {}).get("log", True))
        convention = str(((metadata or {}).get("conventions") or {}).get("translation", ""))
        frame = (spec.get("translation") or {}).get("frame", "crop" if convention.startswith("(a, b, log d)") else "camera")
        if frame not in ("camera", "crop"):
            raise ValueError(f"weights: metadata normalization['translation']['frame'] must be 'camera' or 'crop', got {frame!r}")
        self.translation_frame = frame

    @staticmethod
    def _apply(x: Tensor, affine: tuple[Tensor, Tensor]) -> Tensor:
        mean, std = affine
        return x * std.to(x) + mean.to(x)

    def ss_latent_grid(self, shape_tokens: Tensor, resolution: int) -> Tensor:
        """``[1, R^3, C]`` SS "shape" tokens -> the SS VAE latent grid ``[1, C, R, R, R]``."""
        return tokens_to_grid(self._apply(shape_tokens, self.ss_latent), resolution)

    def slat_tokens(self, tokens: Tensor) -> Tensor:
        """SLaT flow output ``[N, C]`` -> the mesh decoder's tokens."""
        return self._apply(tokens, self.slat)

    def layout(self, x: Mapping[str, Tensor], crop_intrinsics: np.ndarray | None = None, size: int | None = None) -> Layout:
        """The SS flow's layout tokens (``[1, 1, c]`` each) -> a :class:`Layout` (float64, object 0).

        ``crop_intrinsics`` (3x3) and ``size`` (pixels) of the input crop are needed in the ``"crop"`` frame.
        A rotation, translation or scale that comes out NaN or inf raises ``FloatingPointError`` naming ``layout``."""
        rotation = x["rotation"].reshape(6).double()
        translation = self._apply(x["translation"].reshape(3).double(), self.translation)
        if self.translation_frame == "crop":
            if crop_intrinsics is None or size is None:
                raise ValueError("inputs: this checkpoint predicts crop-relative translations; pass the crop's intrinsics and size")
            translation = crop_to_camera(translation, np.asarray(crop_intrinsics, dtype=np.float64), size)
        raw = self._apply(x["scale"].reshape(3).double(), self.scale)
        scale = raw.clamp(-30, 30).exp() if self.log_scale else raw
        if (scale <= MIN_SCALE).any():
            warnings.warn(
                f"image_to_3d: the predicted layout scale {scale.tolist()} is not positive; clamped to {MIN_SCALE}",
                stacklevel=2,
            )
            scale = scale.clamp(min=MIN_SCALE)
        if float(rotation.norm()) == 0.0:
            rotation = torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64)  # no direction at all: identity
        hint = "the SS flow's layout tokens through the checkpoint's normalization"
        if self.translation_frame == "crop":
            hint += " and the crop's intrinsics"
        return Layout(rotation, translation, scale).check_finite("layout", hint)


def crop_to_camera(token: Tensor, intrinsics: np.ndarray, size: int) -> Tensor:
    """``(a, b, log d)`` of an ``size``-pixel crop with intrinsics ``K`` -> the camera-frame translation (see :class:`FlowSpace`)."""
    f, half = float(intrinsics[0, 0]), size / 2
    a, b, log_d = (float(v) for v in token.reshape(3))
    z = float(np.exp(np.clip(log_d, -30, 30))) * f / half
    x = (a * half + half - float(intrinsics[0, 2])) * z / f
    y = (b * half + half - float(intrinsics[1, 2])) * z / f
    return torch.tensor([x, y, z], dtype=torch.float64)


@dataclass
class SparseCoords:
    """The voxels the SLaT flow samples over: ``coords`` ``[N, 3]`` (int64, C order), the ``factor`` by which
    the structure was shrunk (the layout scale is multiplied by it), and ``occupied``, the count before any cap.

    Example::

        found = SparseCoords(torch.tensor([[3, 4, 5], [3, 4, 6]]), factor=1.0, occupied=2)
        found.tokens   # 2
    """

    coords: Tensor
    factor: float = 1.0
    occupied: int = 0

    @property
    def tokens(self) -> int:
        return len(self.coords)


class SparseStructure:
    """Stage ``sparse_structure``: the step between the two flows.

    ``decode(latent)`` turns the SS latent grid into occupancy logits ``[R, R, R]``;
    ``coords(logits, mask)`` turns the logits into the occupied voxels (logits > 0) and,
    above ``max_tokens``, downsamples them as SAM 3D Objects does (by 2 about the
    structure's centre, :func:`~accel3d.models.image_to_3d.downsample_structure`), with a
    warning naming ``max_tokens``. ``mask`` (the input's 2D object mask) is passed for
    accelerators that read it (spectral aggregation's 2D frequency score); this class ignores it.

    Example::

        structure = SparseStructure(models.ss_vae, max_tokens=4096)
        logits = structure.decode(latent)                      # [32, 32, 32]
        found = structure.coords(logits)                       # SparseCoords(coords [N, 3], factor 1 or 2)
    """

    def __init__(self, vae: SSVAE, max_tokens: int, seed: int = 0) -> None:
        self.vae = vae
        self.max_tokens = check_int("max_tokens", max_tokens, low=1)
        self.seed = seed

    @property
    def resolution(self) -> int:
        return self.vae.config.structure_resolution

    def decode(self, latent: Tensor) -> Tensor:
        """The SS latent ``[1, C, r, r, r]`` -> occupancy logits ``[R, R, R]`` of the object.

        Logits with NaN or inf raise ``FloatingPointError`` (a NaN logit is no voxel: it would read as an empty
        structure)."""
        logits = self.vae.decode(latent)[0, 0]
        if bad := count_nonfinite(logits):
            raise FloatingPointError(
                f"sparse_structure: the occupancy logits hold {bad} NaN or inf values of {logits.numel()} "
                "(an SS latent or SS VAE decoder that overflows?)"
            )
        return logits

    def coords(self, logits: Tensor, mask: Tensor | None = None) -> SparseCoords:
        """Occupied voxels (logits > 0), capped at ``max_tokens`` as SAM 3D Objects caps them."""
        coords = occupied_coords(logits[None] > 0)[0]
        occupied = len(coords)
        if occupied <= self.max_tokens:
            return SparseCoords(coords, 1.0, occupied)
        capped, factor = downsample_structure(coords, self.max_tokens, torch.Generator().manual_seed(self.seed))
        warnings.warn(
            f"sparse_structure: {occupied} occupied voxels exceed max_tokens={self.max_tokens}; the structure is downsampled "
            f"by {factor} about its centre to {len(capped)} voxels (SAM 3D Objects' rule above 42000) and the layout scale "
            f"multiplied by {factor}; raise max_tokens to keep the full structure",
            stacklevel=2,
        )
        return SparseCoords(capped, float(factor), occupied)


class MeshDecoder:
    """Stage ``mesh_decoder``: SLaT tokens at their voxels -> a mesh in the layout pose.

    ``decode`` predicts each voxel's fine SDF samples (the :class:`SLaTMeshDecoder`, held as
    ``decoder``), runs marching cubes in the object frame and places the mesh with ``layout``.
    No tokens give an empty mesh. A layout or a fine SDF with NaN or inf raises ``FloatingPointError``
    naming ``mesh_decoder``: no mesh is placed with NaN vertices.

    Example::

        stage = MeshDecoder(models.slat_decoder)
        mesh = stage.decode(tokens, coords, layout)   # trimesh.Trimesh in the predicted pose
    """

    def __init__(self, decoder: SLaTMeshDecoder) -> None:
        self.decoder = decoder

    def decode(self, tokens: Tensor, coords: Tensor, layout: Layout) -> trimesh.Trimesh:
        layout.check_finite("mesh_decoder", "the SS flow's pose times the structure's factor")
        if len(coords) == 0:
            return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
        cfg = self.decoder.config
        fine = self.decoder.fine_sdf(tokens, coords)
        if bad := count_nonfinite(fine):
            raise FloatingPointError(
                f"mesh_decoder: the fine SDF holds {bad} NaN or inf values of {fine.numel()} "
                "(SLaT tokens or a SLaT mesh decoder that overflows?)"
            )
        with warnings.catch_warnings():  # no surface: the pipeline says so once, in its own words
            warnings.simplefilter("ignore", UserWarning)
            mesh = sdf_to_mesh(fine, cfg.bound, cfg.sdf_truncation)
        return place_mesh(mesh, layout.rotation6d, layout.translation, layout.scale)


def rotation_angle_degrees(a: Tensor, b: Tensor) -> float:
    """The angle of ``a^T b`` for rotation matrices ``a``, ``b``, from ``|a - b|_F = 2 sqrt(2) sin(theta / 2)`` (exactly 0 when equal)."""
    diff = float(torch.linalg.matrix_norm((a - b).double()))
    return math.degrees(2 * math.asin(min(1.0, diff / (2 * math.sqrt(2)))))
