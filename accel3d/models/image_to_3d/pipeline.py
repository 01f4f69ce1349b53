"""``image_to_3d``: an object crop and its mask -> sparse structure + layout -> structured latent -> mesh.

The reference two-stage flow pipeline in the shape of SAM 3D Objects / TRELLIS
(:mod:`accel3d.models.image_to_3d`), on the job layer's contract.

Stages (what accelerators attach to):
    ss_sampler        the SS :class:`~accel3d.models.image_to_3d.FlowSampler` (shape + layout token groups);
                      every Euler step calls its one ``velocity(x, t, cond, step)``
    slat_sampler      the SLaT FlowSampler (one token per occupied voxel; ``velocity(..., coords=, mask=)``)
    sparse_structure  :class:`~accel3d.models.image_to_3d.stages.SparseStructure`: SS latent -> occupancy
                      logits (``decode``) -> voxel coordinates with the token cap (``coords``)
    mesh_decoder      :class:`~accel3d.models.image_to_3d.stages.MeshDecoder`: ``decode(tokens, coords, layout)``

Token groups come from the samplers (``pipeline.token_groups``: the SS flow's ``shape`` and
``layout``; ``pipeline.stage_token_groups`` per sampler), so accelerators never hard-code names.
Inputs: :mod:`accel3d.models.image_to_3d.inputs`; fidelity: :mod:`accel3d.models.image_to_3d.fidelity`.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import trimesh
from tqdm.auto import tqdm

from accel3d.core.io import expand_path, write_json
from accel3d.core.memory import StageClock
from accel3d.core.pipeline import Pipeline, picture_panels
from accel3d.core.validate import check_bool, check_float, check_int, check_pair, check_seed
from accel3d.geometry.metrics import chamfer_and_fscore, volume_iou
from accel3d.geometry.render import DEFAULT_FOV_DEGREES
from accel3d.geometry.surface import export_mesh
from accel3d.models.image_to_3d.checkpoint import ImageTo3DModels
from accel3d.models.image_to_3d.fidelity import layout_errors, slat_velocity_error, ss_velocity_errors
from accel3d.models.image_to_3d.inputs import ImageTo3DInputs, load_image_to_3d_inputs
from accel3d.models.image_to_3d.preview import save_preview
from accel3d.models.image_to_3d.sampler import MAX_CFG_STRENGTH
from accel3d.models.image_to_3d.stages import FlowSpace, Layout, MeshDecoder, SparseCoords, SparseStructure


@dataclass
class ImageTo3DResult:
    """One generation: the mesh in the predicted pose, the structure, the layout, timings and both flows' velocities.

    ``occupancy``/``logits`` are the SS structure ``[R, R, R]`` before the token cap; ``structure`` holds the
    voxels the SLaT flow sampled (after it) and the factor they were shrunk by; ``layout`` is the SS flow's
    pose (before that factor); ``ss_velocities`` (per step, a dict of token groups' tensors) and
    ``slat_velocities`` (per step, ``[N, C]``) are what the samplers' ``velocity`` returned.
    ``notes`` says what was unusual (an empty structure, a shrunk one).

    Example::

        result = pipe.run(pipe.load_inputs())
        result.mesh.export("mesh.glb")                       # trimesh.Trimesh in the predicted pose
        result.structure.tokens, result.layout.translation   # SLaT tokens sampled, camera-frame translation
        result.timings["slat_s"], len(result.ss_velocities)  # seconds; one velocity per SS step
    """

    mesh: trimesh.Trimesh
    occupancy: torch.Tensor
    logits: torch.Tensor
    structure: SparseCoords
    layout: Layout
    tokens: torch.Tensor
    ss_velocities: list[dict[str, torch.Tensor]] = field(default_factory=list)
    slat_velocities: list[torch.Tensor] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    inputs: ImageTo3DInputs | None = None  # the crop and mask it was generated from (for the preview)
    work: dict[str, int] = field(default_factory=dict)  # model calls and tokens each flow processed (CFG passes counted)
    memory: dict[str, int] = field(default_factory=dict)  # peak bytes of each stage (accel3d.core.memory), by timing key


def load_image_to_3d_models(weights: str | Path | None) -> ImageTo3DModels:
    """The checkpoint at ``weights`` (None: the shipped ``accel3d/models/weights/image_to_3d.pt``), in eval mode."""
    path = expand_path(weights, "weights") if weights is not None else None
    try:
        return ImageTo3DModels.from_pretrained(path)
    except FileNotFoundError as exc:
        if weights is not None:
            raise
        raise FileNotFoundError(f"{exc}; train them with scripts/train_image_to_3d.py, or pass weights=<a checkpoint .pt>") from None


class ImageTo3DPipeline(Pipeline):
    """Image (or rendered mesh) -> SS flow -> structure -> SLaT flow -> mesh, with per-stage timings.

    Example::

        pipe = ImageTo3DPipeline(weights="image_to_3d.pt")      # weights=None: the shipped checkpoint
        inputs = pipe.load_inputs()                            # the bundled bunny at the default pose
        baseline = pipe.run(inputs)
        with Stack([SomeStepCache()]).applied(pipe):           # attaches to pipe.stage("ss_sampler")
            fast = pipe.run(inputs)
        pipe.fidelity(baseline, fast)["fscore"]
    """

    name = "image_to_3d"
    stage_names = ("ss_sampler", "slat_sampler", "sparse_structure", "mesh_decoder")
    headline_timing = "total_s"
    fidelity_metric = "fscore"
    caption_metrics = ("fscore", "occupancy_iou", "rotation_deg", "ss_vel_error", "slat_vel_error")
    stage_timings = {"ss_sampler": "ss_s", "slat_sampler": "slat_s", "sparse_structure": "structure_s", "mesh_decoder": "decode_s"}
    table_timings = ("ss_s", "slat_s", "decode_s")

    def __init__(
        self,
        weights: str | Path | None = None,
        input: str | Path | None = None,
        mask: str | Path | None = None,
        render_size: int | None = None,
        fov_degrees: float | None = None,
        margin: float = 0.1,
        ss_steps: int = 25,
        ss_cfg: float = 7.0,
        ss_rescale: float = 3.0,
        ss_cfg_interval: tuple[float, float] = (0.0, 0.5),
        slat_steps: int = 25,
        slat_cfg: float = 0.0,
        slat_rescale: float = 1.0,
        max_tokens: int | None = None,
        seed: int = 0,
        progress: bool = True,
        fscore_threshold: float = 0.05,
    ) -> None:
        # Every knob is checked before the checkpoint is read.
        for name, value, what in (("weights", weights, "the shipped weights"), ("input", input, "the bundled bunny")):
            if value is not None and (not isinstance(value, str | Path) or not str(value).strip()):
                raise ValueError(f"{name}: expected null ({what}) or a path, got {value!r}")
        if mask is not None and (not isinstance(mask, str | Path) or not str(mask).strip()):
            raise ValueError(f"mask: expected null (the image's alpha channel) or a mask image path, got {mask!r}")
        check_int("render_size", render_size, low=8, allow_none=True)
        check_float("fov_degrees", fov_degrees, low=1.0, high=179.0, allow_none=True)
        self.margin = check_float("margin", margin, low=0.0, high=10.0)
        self.fscore_threshold = check_float("fscore_threshold", fscore_threshold, low=0.0, low_open=True)
        check_int("max_tokens", max_tokens, low=1, allow_none=True)
        check_seed("seed", seed)
        self.progress = check_bool("progress", progress)
        interval = tuple(check_pair("ss_cfg_interval", ss_cfg_interval, low=0.0, high=1.0))
        sampler_knobs = {
            "ss": dict(steps=ss_steps, cfg_strength=ss_cfg, rescale=ss_rescale, cfg_interval=interval),
            "slat": dict(steps=slat_steps, cfg_strength=slat_cfg, rescale=slat_rescale),
        }
        for stage, knobs in sampler_knobs.items():
            check_int(f"{stage}_steps", knobs["steps"], low=1)
            check_float(f"{stage}_cfg", knobs["cfg_strength"], low=0.0, high=MAX_CFG_STRENGTH)  # 1000: see sampler.py
            check_float(f"{stage}_rescale", knobs["rescale"], low=0.0, low_open=True, high=1e6)
        self.models = load_image_to_3d_models(weights)
        cfg = self.models.config
        self.space = FlowSpace(self.models.metadata, cfg.ss_latent_channels, cfg.slat_channels)
        self.ss_sampler = self.models.ss_sampler(**sampler_knobs["ss"])
        self.slat_sampler = self.models.slat_sampler(**sampler_knobs["slat"])
        self.max_tokens = max_tokens if max_tokens is not None else cfg.max_tokens
        self.sparse_structure = SparseStructure(self.models.ss_vae, self.max_tokens, seed)
        self.mesh_decoder = MeshDecoder(self.models.slat_decoder)
        self.weights, self.input, self.mask = weights, input, mask
        camera = self.models.metadata.get("camera", {}) if isinstance(self.models.metadata.get("camera"), dict) else {}
        # null: the training views' camera, where the checkpoint records it
        self.render_size = render_size if render_size is not None else int(camera.get("size", 128))
        self.fov_degrees = fov_degrees if fov_degrees is not None else float(camera.get("fov_degrees", DEFAULT_FOV_DEGREES))
        self.seed = seed
        self.stages = {
            "ss_sampler": self.ss_sampler,
            "slat_sampler": self.slat_sampler,
            "sparse_structure": self.sparse_structure,
            "mesh_decoder": self.mesh_decoder,
        }

    @property
    def token_groups(self) -> dict[str, tuple[str, ...]]:
        """The SS flow's token groups (``{"shape": ("shape",), "layout": ("rotation", "translation", "scale")}``)."""
        return dict(self.ss_sampler.token_groups)

    @property
    def stage_token_groups(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Each sampler stage's token groups: ``{"ss_sampler": {...}, "slat_sampler": {"slat": ()}}``."""
        return {"ss_sampler": dict(self.ss_sampler.token_groups), "slat_sampler": dict(self.slat_sampler.token_groups)}

    # ------------------------------------------------------------------ a run
    def load_inputs(self) -> ImageTo3DInputs:
        size = self.models.config.image_size
        return load_image_to_3d_inputs(self.input, size, self.mask, self.render_size, self.margin, self.fov_degrees)

    @contextlib.contextmanager
    def _steps(self, ss_steps: int | None, slat_steps: int | None) -> Iterator[None]:
        saved = self.ss_sampler.steps, self.slat_sampler.steps
        try:
            if ss_steps is not None:
                self.ss_sampler.steps = check_int("ss_steps", ss_steps, low=1)
            if slat_steps is not None:
                self.slat_sampler.steps = check_int("slat_steps", slat_steps, low=1)
            yield
        finally:
            self.ss_sampler.steps, self.slat_sampler.steps = saved

    def run(self, inputs: ImageTo3DInputs, ss_steps: int | None = None, slat_steps: int | None = None) -> ImageTo3DResult:
        """One generation (same seed, same noise every run); ``ss_steps``/``slat_steps`` override the step counts."""
        with self._steps(ss_steps, slat_steps), torch.no_grad():
            return self._run(inputs)

    def _bar(self, desc: str, total: int) -> tqdm:
        return tqdm(total=total, desc=desc, disable=not self.progress, file=sys.stderr, leave=False)

    @contextlib.contextmanager
    def _counting(self, work: dict[str, int]) -> Iterator[None]:
        """Count each flow model's forward calls and the tokens they processed (a padding mask's zeros left out)."""

        def counter(prefix: str) -> Any:
            def hook(module: Any, args: tuple, kwargs: dict) -> None:
                x = args[0] if args else kwargs["x"]
                mask = kwargs.get("mask")
                if isinstance(x, dict):
                    tokens = sum(int(v.shape[0] * v.shape[1]) for v in x.values())
                else:
                    tokens = int(mask.sum()) if isinstance(mask, torch.Tensor) else int(x.shape[0] * x.shape[1])
                work[f"{prefix}_model_calls"] = work.get(f"{prefix}_model_calls", 0) + 1
                work[f"{prefix}_tokens"] = work.get(f"{prefix}_tokens", 0) + tokens

            return hook

        hooks = [
            self.models.ss_flow.register_forward_pre_hook(counter("ss"), with_kwargs=True),
            self.models.slat_flow.register_forward_pre_hook(counter("slat"), with_kwargs=True),
        ]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()

    def _run(self, inputs: ImageTo3DInputs) -> ImageTo3DResult:
        work: dict[str, int] = {"ss_model_calls": 0, "ss_tokens": 0, "slat_model_calls": 0, "slat_tokens": 0}
        with self._counting(work):
            result = self._generate(inputs)
        result.work = work
        return result

    def _generate(self, inputs: ImageTo3DInputs) -> ImageTo3DResult:
        cfg, notes, clock = self.models.config, [], StageClock()
        start = time.perf_counter()
        with clock("ss_s"):
            cond = self.models.condition(inputs.image[None].float(), inputs.mask[None, None].float())
            ss_v: list[dict[str, torch.Tensor]] = []
            with self._bar("ss flow", self.ss_sampler.steps) as bar:

                def record_ss(step: int, t: float, x: Any, v: dict[str, torch.Tensor]) -> None:
                    ss_v.append({k: t_.detach().clone() for k, t_ in v.items()})
                    bar.update()

                x = self.ss_sampler.sample(cond, torch.Generator().manual_seed(self.seed), callback=record_ss)
            layout = self.space.layout(x, inputs.crop_intrinsics, cfg.image_size)
        with clock("structure_s"):
            logits = self.sparse_structure.decode(self.space.ss_latent_grid(x["shape"], cfg.ss_latent_resolution))
            structure = self.sparse_structure.coords(logits, inputs.mask)
            if structure.factor != 1.0:
                notes.append(f"structure of {structure.occupied} voxels shrunk by {structure.factor:g} to {structure.tokens} tokens")
        with clock("slat_s"):
            coords = structure.coords
            slat_v: list[torch.Tensor] = []
            if len(coords):
                with self._bar("slat flow", self.slat_sampler.steps) as bar:

                    def record_slat(step: int, t: float, x: Any, v: torch.Tensor) -> None:
                        slat_v.append(v[0].detach().clone())
                        bar.update()

                    generator = torch.Generator().manual_seed(self.seed + 1)
                    shape = (1, len(coords), cfg.slat_channels)
                    tokens = self.slat_sampler.sample(cond, generator, shape=shape, coords=coords[None], callback=record_slat)[0]
                tokens = self.space.slat_tokens(tokens)
            else:
                tokens = torch.zeros(0, cfg.slat_channels)
                notes.append("empty structure")
                warnings.warn(
                    "image_to_3d: the sparse structure decoded to zero occupied voxels (no SS logit > 0); the mesh is empty",
                    stacklevel=4,
                )
        with clock("decode_s"):
            mesh = self.mesh_decoder.decode(tokens, coords, layout.scaled(structure.factor))
            if len(mesh.faces) == 0 and len(coords):
                notes.append("no surface")
                warnings.warn(f"image_to_3d: the SDF of the {len(coords)} voxels has no zero crossing; the mesh is empty", stacklevel=4)
        timings = {**clock.timings, "total_s": time.perf_counter() - start}
        memory = {**clock.peaks, "total_s": max(clock.peaks.values())}
        return ImageTo3DResult(mesh, logits > 0, logits, structure, layout, tokens, ss_v, slat_v, timings, notes, inputs, memory=memory)

    # ------------------------------------------------------------------ the job contract
    def warmup_overrides(self) -> dict[str, Any]:
        return {"ss_steps": 2, "slat_steps": 2}

    def fidelity(self, baseline: ImageTo3DResult, result: ImageTo3DResult) -> dict[str, float]:
        """Velocity relative errors, occupancy IoU, layout error, Chamfer and F-score (see ``fidelity.py``)."""
        ss = ss_velocity_errors(baseline.ss_velocities, result.ss_velocities, self.token_groups)
        slat = slat_velocity_error(
            baseline.slat_velocities,
            baseline.structure.coords,
            result.slat_velocities,
            result.structure.coords,
            self.models.config.structure_resolution,
        )
        return {
            "ss_vel_error": ss["all"],
            **{f"ss_vel_error_{g}": ss[g] for g in self.token_groups},
            "slat_vel_error": slat,
            "occupancy_iou": volume_iou(baseline.occupancy.numpy(), result.occupancy.numpy()),
            **layout_errors(baseline.layout, result.layout),
            **chamfer_and_fscore(baseline.mesh, result.mesh, self.fscore_threshold),
        }

    def result_figures(self, result: ImageTo3DResult) -> dict[str, Any]:
        structure = result.structure
        figures: dict[str, Any] = {"occupied": structure.occupied, "tokens": structure.tokens, "faces": len(result.mesh.faces)}
        figures.update(result.work)
        if structure.factor != 1.0:
            figures["shrunk by"] = structure.factor
        if len(result.mesh.faces) == 0:
            figures["mesh"] = "empty"
        return figures

    def describe(self) -> dict[str, Any]:
        cfg = self.models.config
        return {
            "weights": str(self.weights) if self.weights else "shipped",
            "input": str(self.input) if self.input else "bundled bunny",
            "image_size": cfg.image_size,
            "structure_resolution": cfg.structure_resolution,
            "ss_steps": self.ss_sampler.steps,
            "slat_steps": self.slat_sampler.steps,
            "max_tokens": self.max_tokens,
        }

    def write_artefacts(
        self, result: ImageTo3DResult, baseline: ImageTo3DResult | None, out_dir: Path, options: dict[str, Any]
    ) -> dict[str, str]:
        """The mesh in each export format (and the unaccelerated one), its layout as JSON, and the preview."""
        out_dir = Path(out_dir)
        files: dict[str, str] = {}
        if len(result.mesh.faces) == 0:  # fidelity of empty against empty reads as perfect: say what it means
            print("[accel3d] note: the generated mesh is empty (" + ", ".join(result.notes or ["no surface"]) + ")", file=sys.stderr)
        runs = {"mesh": result, "mesh_baseline": baseline}
        for tag, run in runs.items():
            if run is None or len(run.mesh.faces) == 0:
                continue
            formats = options.get("export_formats", []) if tag == "mesh" else (["glb"] if options.get("export_formats") else [])
            for fmt in formats:
                files[f"{tag}_{fmt}" if tag == "mesh" else tag] = export_mesh(run.mesh, out_dir / f"{tag}.{fmt}").name
        layout = {**result.layout.as_dict(), "structure_factor": result.structure.factor, "tokens": result.structure.tokens}
        files["layout"] = write_json(out_dir / "layout.json", layout).name
        if options.get("preview", True):
            meshes, lines = picture_panels(result.mesh, baseline.mesh if baseline is not None else None, options)
            inputs = result.inputs if result.inputs is not None else self.load_inputs()
            path = out_dir / "preview.png"
            files["preview"] = save_preview(inputs.image, inputs.mask, meshes, path, captions=lines, intrinsics=inputs.crop_intrinsics).name
        return files
