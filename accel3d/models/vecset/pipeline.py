"""``vecset_shape``: a mesh or point cloud -> vecset VAE latents -> volume -> mesh.

Stages (what accelerators attach to):
    encoder         the VecsetVAE
    volume_decoder  a DenseVolumeDecoder (decode(fn, resolution, bound) -> VolumeGrid)
    geo_decoder     the VAE's cross-attention geo decoder (for KV selection)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh

from accel3d.core.io import expand_path, load_torch_file, path_origin
from accel3d.core.memory import StageClock
from accel3d.core.pipeline import Pipeline, picture_panels
from accel3d.core.validate import check_float, check_int, check_seed
from accel3d.geometry.meshes import BUNDLED_MESH, load_mesh, normalize_mesh, sample_surface
from accel3d.geometry.metrics import chamfer_and_fscore, volume_iou
from accel3d.geometry.surface import export_mesh, extract_mesh, render_preview
from accel3d.geometry.volume import DenseVolumeDecoder, VolumeGrid
from accel3d.models.vecset.checkpoint import load_vae


@dataclass
class ShapeInputs:
    """Surface samples of one shape, normalised into the VAE's box, or ready-made latents."""

    points: torch.Tensor | None  # (P, 3)
    normals: torch.Tensor | None  # (P, 3)
    source: str
    latents: torch.Tensor | None = None  # (num_latents, embed_dim), as a generator outputs them


@dataclass
class ShapeResult:
    """The decoded grid, the extracted mesh and per-stage wall times of one run."""

    grid: VolumeGrid
    mesh: trimesh.Trimesh
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)  # peak bytes of each stage (accel3d.core.memory), by timing key


def load_shape_inputs(path: str | Path | None, num_points: int, seed: int = 0) -> ShapeInputs:
    """Read a mesh file (sampled on its surface) or a point cloud ``.npz``/``.npy``.

    A point cloud file holds ``points`` and ``normals`` arrays (``.npz``) or an
    ``(P, 6)`` array of xyz + normal (``.npy``), already inside ``[-1, 1]^3``.
    Latents from a generator (for example the Hunyuan3D-2 DiT, for decoding with
    its VAE) come as a ``.pt`` tensor or an ``.npz`` with a ``latents`` array,
    shaped (num_latents, embed_dim) or (1, num_latents, embed_dim).
    """
    if path is not None and (not isinstance(path, str | Path) or not str(path).strip()):
        raise ValueError(f"input: expected a mesh, point-cloud or latents file, or null for the bundled bunny; got {path!r}")
    check_int("num_points", num_points, low=1)
    check_seed("seed", seed)
    if path is None:
        return _load_shape_inputs(BUNDLED_MESH, num_points, seed)
    expanded = expand_path(path, "input")
    try:
        return _load_shape_inputs(expanded, num_points, seed)
    except FileNotFoundError as exc:
        if not path_origin(path):
            raise
        raise FileNotFoundError(f"{exc}{path_origin(path)}") from None


def _load_shape_inputs(path: Path, num_points: int, seed: int) -> ShapeInputs:
    if path.is_dir():
        raise ValueError(f"input: '{path}' is a folder; expected a mesh, point-cloud or latents file")
    if path.suffix.lower() == ".pt" or (path.suffix.lower() == ".npz" and "latents" in _npz_names(path)):
        return _load_latents(path)
    if path.suffix.lower() in (".npz", ".npy"):
        return _load_point_cloud(path, num_points, seed)
    mesh = normalize_mesh(load_mesh(path, name="input"))
    points, normals = sample_surface(mesh, num_points, seed=seed)
    return ShapeInputs(points, normals, str(path))


def _npz_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"input: no file at '{path}'")
    try:
        with np.load(path, allow_pickle=False) as data:
            return list(data.files)
    except Exception as exc:
        raise ValueError(f"input: '{path}' is not a readable .npz archive ({type(exc).__name__})") from None


def _load_array(path: Path, key: str | None = None) -> np.ndarray:
    try:
        if key is None:
            arr = np.asarray(np.load(path, allow_pickle=False))
        else:
            with np.load(path, allow_pickle=False) as data:
                arr = np.asarray(data[key])
    except Exception as exc:  # ValueError (pickled objects), OSError, zipfile errors, ...
        raise ValueError(f"input: could not read '{path}' as numeric arrays ({type(exc).__name__})") from None
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"input: '{path}' holds {arr.dtype} data; expected real numbers")
    return arr


def _load_point_cloud(path: Path, num_points: int, seed: int) -> ShapeInputs:
    if not path.is_file():
        raise FileNotFoundError(f"input: no point cloud file at '{path}'")
    if path.suffix.lower() == ".npz":
        missing = {"points", "normals"} - set(_npz_names(path))
        if missing:
            raise ValueError(f"input: '{path}' lacks arrays {sorted(missing)}; expected 'points' and 'normals', each (P, 3)")
        points, normals = _load_array(path, "points"), _load_array(path, "normals")
        for key, a in (("points", points), ("normals", normals)):
            if a.ndim != 2 or a.shape[1] != 3:
                raise ValueError(f"input: '{key}' in '{path}' must be (P, 3), got {a.shape}")
        if len(points) != len(normals):
            raise ValueError(f"input: '{path}' has {len(points)} points but {len(normals)} normals; expected one normal per point")
        arr = np.concatenate([points, normals], axis=1)
    else:
        arr = _load_array(path)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"input: expected a (P, 6) point cloud of xyz + normals in '{path}', got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"input: '{path}' contains NaN or inf")
    lengths = np.linalg.norm(arr[:, 3:], axis=1)
    if (lengths < 1e-8).any():
        zero = int((lengths < 1e-8).sum())
        raise ValueError(f"input: {zero} of {len(arr)} normals in '{path}' are zero; expected a unit normal per point")
    if float(np.ptp(arr[:, :3], axis=0).max()) == 0.0:
        raise ValueError(f"input: every point in '{path}' is the same point; there is no shape to encode")
    if np.abs(arr[:, :3]).max() > 1.0:
        raise ValueError(f"input: points in '{path}' must lie inside [-1, 1]^3 (normalise the shape first)")
    if len(arr) < num_points:
        raise ValueError(f"num_points: {num_points} requested but '{path}' holds only {len(arr)} points")
    arr = torch.as_tensor(arr, dtype=torch.float32)
    idx = torch.randperm(len(arr), generator=torch.Generator().manual_seed(seed))[:num_points]
    return ShapeInputs(arr[idx, :3], torch.nn.functional.normalize(arr[idx, 3:], dim=-1), str(path))


def _load_latents(path: Path) -> ShapeInputs:
    if not path.is_file():
        raise FileNotFoundError(f"input: no latents file at '{path}'")
    if path.suffix.lower() == ".pt":
        data = load_torch_file(path, "input")
        data = data.get("latents") if isinstance(data, dict) else data
    else:
        data = torch.from_numpy(_load_array(path, "latents"))
    if not isinstance(data, torch.Tensor) or not data.is_floating_point():
        raise ValueError(f"input: '{path}' holds no floating-point latents tensor (a tensor, or a dict/npz with 'latents')")
    latents = data.float()
    if latents.ndim == 3 and latents.shape[0] == 1:
        latents = latents[0]
    if latents.ndim != 2:
        raise ValueError(f"input: latents in '{path}' must be (num_latents, embed_dim), got {tuple(data.shape)}")
    if not torch.isfinite(latents).all():
        raise ValueError(f"input: latents in '{path}' contain NaN or inf")
    return ShapeInputs(None, None, str(path), latents)


class VecsetShapePipeline(Pipeline):
    """Encode a shape with the vecset VAE and decode it back to a mesh.

    Example::

        pipe = VecsetShapePipeline(resolution=128)
        inputs = pipe.load_inputs()                  # the bundled bunny
        baseline = pipe.run(inputs)
        with Stack([HierarchicalDecoding()]).applied(pipe):
            fast = pipe.run(inputs)
    """

    name = "vecset_shape"
    stage_names = ("encoder", "volume_decoder", "geo_decoder")
    headline_timing = "decode_s"
    fidelity_metric = "iou"
    stage_timings = {"volume_decoder": "decode_s", "geo_decoder": "decode_s", "encoder": "encode_s"}

    def __init__(
        self,
        weights: str | None = None,
        input: str | None = None,
        resolution: int = 256,
        num_points: int = 2048,
        level: float = 0.0,
        inside: str = "positive",
        chunk_size: int = 65536,
        seed: int = 0,
        progress: bool = True,
        fscore_threshold: float = 0.01,
    ) -> None:
        # Every knob is checked before the VAE is loaded.
        if weights is not None and (not isinstance(weights, str | Path) or not str(weights).strip()):
            raise ValueError(f"weights: expected null (the shipped VAE) or a path, got {weights!r}")
        if input is not None and (not isinstance(input, str | Path) or not str(input).strip()):
            raise ValueError(f"input: expected null (the bundled bunny) or a mesh, point-cloud or latents file, got {input!r}")
        check_int("resolution", resolution, low=2)
        check_int("num_points", num_points, low=1)
        check_seed("seed", seed)
        self.fscore_threshold = check_float("fscore_threshold", fscore_threshold, low=0.0, low_open=True)
        # The stage carries the field's conventions, so an accelerator on it refines around the same level and sign.
        self.volume_decoder = DenseVolumeDecoder(level=level, inside=inside, chunk_size=chunk_size, progress=progress)  # checks them
        self.vae = load_vae(weights)
        self.weights = weights
        self.input = input
        self.resolution = resolution
        self.num_points = num_points
        if num_points < self.vae.config.num_latents:
            raise ValueError(f"num_points: expected at least num_latents={self.vae.config.num_latents}, got {num_points}")
        self.seed = seed
        self.stages = {"encoder": self.vae, "volume_decoder": self.volume_decoder, "geo_decoder": self.vae.geo_decoder}

    @property
    def level(self) -> float:
        """The iso-level of the surface: the volume decoder stage's."""
        return self.volume_decoder.level

    @property
    def inside(self) -> str:
        """Which side of ``level`` is inside: the volume decoder stage's."""
        return self.volume_decoder.inside

    # ------------------------------------------------------------------ the job contract
    def warmup_overrides(self) -> dict[str, Any]:
        return {"resolution": 32}

    def fidelity(self, baseline: ShapeResult, result: ShapeResult) -> dict[str, float]:
        """Volume IoU of the occupancy, Chamfer distance and F-score between the meshes (DESIGN.md)."""
        scores = chamfer_and_fscore(baseline.mesh, result.mesh, self.fscore_threshold)
        return {"iou": volume_iou(self.inside_mask(baseline.grid), self.inside_mask(result.grid)), **scores}

    def result_figures(self, result: ShapeResult) -> dict[str, Any]:
        return {"queries": result.grid.queries, "query %": round(100 * result.grid.query_fraction, 2), "faces": len(result.mesh.faces)}

    def describe(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "weights": self.weights or "shipped", "input": self.input or "bundled bunny"}

    def write_artefacts(self, result: ShapeResult, baseline: ShapeResult | None, out_dir: Path, options: dict[str, Any]) -> dict[str, str]:
        """The mesh in each export format, the baseline mesh, and a preview with both."""
        if len(result.mesh.faces) == 0:  # fidelity of empty against empty reads as perfect: say what it means
            print(f"[accel3d] note: the decoded mesh is empty (the field has no surface at level {self.level})", file=sys.stderr)
        files = {}
        for fmt in options.get("export_formats", []):
            files[f"mesh_{fmt}"] = export_mesh(result.mesh, out_dir / f"mesh.{fmt}").name
        if baseline is not None and options.get("export_formats"):
            files["baseline_mesh"] = export_mesh(baseline.mesh, out_dir / "mesh_baseline.glb").name
        if options.get("preview", True):
            views, lines = picture_panels(result.mesh, baseline.mesh if baseline is not None else None, options)
            files["preview"] = render_preview(views, out_dir / "preview.png", captions=lines).name
        return files

    def inside_mask(self, grid: VolumeGrid) -> np.ndarray:
        """Occupancy of a decoded grid under this pipeline's level and inside sign."""
        values = grid.values.numpy()
        return values > self.level if self.inside == "positive" else values < self.level

    def load_inputs(self) -> ShapeInputs:
        inputs = load_shape_inputs(self.input, self.num_points, self.seed)
        if inputs.points is not None:
            distinct = len(torch.unique(inputs.points, dim=0))
            if distinct < self.vae.config.num_latents:
                raise ValueError(
                    f"input: '{inputs.source}' gives only {distinct} distinct points; the VAE needs at least "
                    f"num_latents={self.vae.config.num_latents} to encode a shape"
                )
            centred = inputs.points.double() - inputs.points.double().mean(0)
            spread = torch.linalg.svdvals(centred)
            if spread[1] <= 1e-6 * spread[0]:
                raise ValueError(f"input: the points of '{inputs.source}' lie on a line; there is no surface to encode")
        return inputs

    @torch.inference_mode()
    def run(self, inputs: ShapeInputs, resolution: int | None = None) -> ShapeResult:
        """Encode, decode at ``resolution`` (default: the pipeline's) and extract the mesh."""
        if resolution is not None:
            check_int("resolution", resolution, low=2)
        clock = StageClock()
        with clock("encode_s"):
            if inputs.latents is not None:
                expected = (self.vae.config.num_latents, self.vae.config.embed_dim)
                if tuple(inputs.latents.shape) != expected:
                    raise ValueError(f"input: latents of shape {tuple(inputs.latents.shape)} do not fit this VAE, which takes {expected}")
                latents = inputs.latents[None] / self.vae.config.scale_factor  # as Hunyuan3D-2 does before decoding
            else:
                latents = self.vae.encode(inputs.points[None], inputs.normals[None])
            field_fn = self.vae.field(latents)
        with clock("decode_s"):
            grid = self.volume_decoder.decode(field_fn, resolution or self.resolution, self.vae.bounds)
        with clock("surface_s"):
            mesh = extract_mesh(grid, level=self.level, inside=self.inside)
        timings = {**clock.timings, "total_s": sum(clock.timings.values())}
        return ShapeResult(grid, mesh, timings, {**clock.peaks, "total_s": max(clock.peaks.values())})
