"""``sds``: a small score-distillation (SDS) optimisation on the CPU.

A voxel radiance field renders C-channel latent images directly (Latent-NeRF
style) from random threestudio-like cameras; a diffusers U-Net scores them with
classifier-free guidance at a random DDPM timestep; Adam follows the SDS gradient
``w(t) (eps_hat - eps)``. Every U-Net call states its camera with
:func:`accel3d.core.camera_pose`, so pose-aware accelerators (Hash3D) can attach to
the ``denoiser`` stage.

Stages:
    denoiser   the diffusers UNet2DConditionModel

Two pipelines share the loop (:class:`SDSPipeline`), one per kind of U-Net, and
``SDSPipeline(backbone=...)`` builds the one for its backbone:

- :class:`NovelViewSDSPipeline`: ``novel_view`` (the default), the shipped novel-view
  U-Net, conditioned on a reference view and each camera's pose relative to it;
- :class:`TextSDSPipeline`: ``tiny`` (random init, fast), ``sd21_base`` (the SD-2.1-base
  architecture at random init, for a realistic compute profile), or a local diffusers
  U-Net folder. With random weights the field does not become a recognisable object:
  the pipeline measures speed and fidelity, not beauty. Conditioning is a seeded
  random text embedding (or a ``.pt`` file of ``(2, seq, dim)`` [uncond; cond]
  embeddings); 8-channel (Zero123-style) U-Nets also get a reference latent.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from tqdm.auto import tqdm

from accel3d.core.context import camera_pose
from accel3d.core.io import load_torch_file
from accel3d.core.pipeline import Pipeline
from accel3d.core.validate import (
    ArgumentError,
    check_bool,
    check_finite_tensor,
    check_float,
    check_int,
    check_pair,
    check_seed,
    check_str,
    count_nonfinite,
)
from accel3d.geometry.metrics import image_scores, psnr
from accel3d.geometry.surface import export_mesh
from accel3d.models.sds.mesh_views import relative_pose
from accel3d.models.sds.novel_view import NovelViewModel
from accel3d.models.sds.reference import Reference, load_reference
from accel3d.models.sds.scene import (
    Cameras,
    CameraSampler,
    VoxelField,
    density_mesh,
    save_gif,
    save_turntable,
    turntable,
    turntable_cameras,
)
from accel3d.models.sds.unets import build_unet

NOVEL_VIEW = "novel_view"
# Upper bounds of the float knobs, refused before any model loads; each far above any real use:
MAX_GUIDANCE_SCALE = 1000.0  # SDS guidance in use: 3-5 (Zero123), 7.5 (ProlificDreamer), 100 (DreamFusion, Magic3D)
MAX_LR = 10.0  # Adam's step on the field's values is about lr per step; SDS uses 1e-3 to 1e-1
MAX_REFERENCE_WEIGHT = 1e4  # Zero123-SDS / threestudio weigh their reference-view losses up to about 1000
TURNTABLE_POSE = {"elevation": 15.0, "radius": 1.8, "fovy": 50.0}


@dataclass
class SDSInputs:
    """The conditioning of one SDS run: [uncond; cond] embeddings (text U-Nets) and, for image-conditioned
    U-Nets, the reference view (an image for the novel-view model, a latent for 8-channel latent U-Nets)."""

    embeddings: torch.Tensor | None  # (2, seq, dim); None for the novel-view model (its tokens come from the pose)
    image_latent: torch.Tensor | None
    source: str
    reference: Reference | None = None
    truth: torch.Tensor | None = None  # the reference mesh at the turntable poses, when the reference is a mesh


@dataclass
class SDSResult:
    """The optimised field, its turntable renders, the loss curve and wall times."""

    field: VoxelField
    renders: torch.Tensor  # (views, C, size, size)
    losses: list[float]
    timings: dict[str, float] = field(default_factory=dict)
    unet_steps: list[float] = field(default_factory=list)  # wall time of each step's U-Net call
    truth: torch.Tensor | None = None  # the reference mesh rendered at the turntable poses (None: no mesh given)
    reference: torch.Tensor | None = None  # the novel-view model's input view (1, 3, H, W)
    truth_scores: dict[str, float] = field(default_factory=dict)  # truth_psnr_db, truth_ssim (empty without truth)


PSNR_IDENTICAL = 100.0  # dB recorded for identical renders (float32 renders differ by far more than this allows)


class SDSPipeline(Pipeline):
    """Score distillation of a voxel field with a diffusers U-Net: the loop both kinds of U-Net share.

    ``SDSPipeline(backbone=...)`` builds the subclass for the backbone: :class:`NovelViewSDSPipeline` for
    ``novel_view`` (the default), :class:`TextSDSPipeline` for any other (``tiny``, ``sd21_base``, a local
    diffusers folder). Both take every knob below; a subclass reads the ones of its kind.

    Example::

        pipe = SDSPipeline(backbone="tiny", iterations=100)
        result = pipe.run(pipe.load_inputs())
        with Stack([Hash3D()]).applied(pipe):
            cached = pipe.run(pipe.load_inputs())
    """

    name = "sds"
    stage_names = ("denoiser",)
    headline_timing = "total_s"
    fidelity_metric = "psnr_db"
    caption_metrics = ("psnr_db",)  # identical_renders is the same fact as a PSNR of 100 dB
    stage_timings = {"denoiser": "unet_s"}
    table_timings = ("unet_s",)
    render_value_range: tuple[float, float] | None = None  # of the renders in the pictures; None: latent channels, stretched

    def __new__(cls, backbone: str = NOVEL_VIEW, *args: Any, **kwargs: Any) -> SDSPipeline:
        if cls is SDSPipeline:  # the pipeline of the backbone's kind; its __init__ checks the knobs
            cls = NovelViewSDSPipeline if backbone == NOVEL_VIEW else TextSDSPipeline
        return super().__new__(cls)

    def __init__(
        self,
        backbone: str = NOVEL_VIEW,
        iterations: int = 200,
        latent_size: int | None = None,
        guidance_scale: float = 3.0,
        lr: float = 0.01,
        grid_resolution: int = 32,
        num_samples: int = 48,
        t_range: tuple[float, float] = (0.02, 0.98),
        azimuth_range: tuple[float, float] = (-180.0, 180.0),
        elevation_range: tuple[float, float] = (-10.0, 45.0),
        radius_range: tuple[float, float] | None = None,
        fovy_range: tuple[float, float] | None = None,
        embeddings: str | None = None,
        sequence_length: int = 77,
        turntable_views: int = 8,
        turntable_size: int = 64,
        weights: str | None = None,
        reference: str | None = None,
        reference_pose: tuple[float, float, float] = (0.0, 15.0, 1.6),
        reference_weight: float = 1.0,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        # Every knob is checked before the U-Net is built, so a typo costs no model load.
        check_str("backbone", backbone)
        # the checked values are kept (a numpy scalar or a 0-d tensor becomes a plain number)
        iterations = check_int("iterations", iterations, low=1)
        grid_resolution = check_int("grid_resolution", grid_resolution, low=2)
        num_samples = check_int("num_samples", num_samples, low=2)
        sequence_length = check_int("sequence_length", sequence_length, low=1)
        turntable_views = check_int("turntable_views", turntable_views, low=1)
        turntable_size = check_int("turntable_size", turntable_size, low=8)
        latent_size = check_int("latent_size", latent_size, low=4, allow_none=True)
        seed = check_seed("seed", seed)
        guidance_scale = check_float("guidance_scale", guidance_scale, low=0.0, high=MAX_GUIDANCE_SCALE)
        lr = check_float("lr", lr, low=0.0, low_open=True, high=MAX_LR)
        reference_weight = check_float("reference_weight", reference_weight, low=0.0, high=MAX_REFERENCE_WEIGHT)
        low, high = check_pair("t_range", t_range, low=0.0, high=1.0)
        check_str("embeddings", embeddings, allow_none=True)
        check_str("weights", weights, allow_none=True)
        check_str("reference", reference, allow_none=True)
        check_bool("progress", progress)
        self.backbone = backbone
        self.reference_pose = check_reference_pose(reference_pose)
        self.seed = seed
        # the U-Net, its scheduler, the image side and the camera ranges (the backbone's own where None)
        self._load_backbone(weights, latent_size, azimuth_range, elevation_range, radius_range, fovy_range)
        self.iterations = iterations
        self.guidance_scale = guidance_scale
        self.lr = lr
        self.grid_resolution = grid_resolution
        self.num_samples = num_samples
        steps = self.scheduler.config.num_train_timesteps
        # t_range is a fraction of the training steps 0..steps-1: 1.0 is the last step, not one past it
        self.min_step, self.max_step = min(int(low * steps), steps - 1), min(int(high * steps), steps - 1)
        self.embeddings_path = embeddings
        self.sequence_length = sequence_length
        self.turntable_views = turntable_views
        self.turntable_size = turntable_size
        self.reference_path = reference
        self.reference_weight = reference_weight
        self.progress = progress
        self.stages = {"denoiser": self.unet}

    # ------------------------------------------------------------------ what each kind of U-Net sets
    def _load_backbone(
        self,
        weights: str | None,
        latent_size: int | None,
        azimuth_range: tuple[float, float],
        elevation_range: tuple[float, float],
        radius_range: tuple[float, float] | None,
        fovy_range: tuple[float, float] | None,
    ) -> None:
        """Set ``unet`` and ``scheduler``, and the cameras through :meth:`_set_cameras` (``None``: the backbone's
        own ranges), checking every knob that costs no model load before loading one."""
        raise NotImplementedError

    def load_inputs(self) -> SDSInputs:
        raise NotImplementedError

    def _check_inputs(self, inputs: SDSInputs) -> None:
        """Refuse conditioning this kind of U-Net cannot use, before the first step."""
        raise NotImplementedError

    def conditioning(self, inputs: SDSInputs, camera: Cameras) -> torch.Tensor:
        """The [uncond; cond] cross-attention tokens of one step, seen from ``camera`` (what the U-Net is called with)."""
        raise NotImplementedError

    def _with_reference_loss(self, loss: torch.Tensor, scene: VoxelField, inputs: SDSInputs, timings: dict[str, float]) -> torch.Tensor:
        """``loss`` plus what this kind adds beside SDS (adding any render's time to ``timings``)."""
        return loss

    def _shown_reference(self, inputs: SDSInputs) -> torch.Tensor | None:
        """The input view the pictures show first, or None."""
        return None

    def _set_cameras(
        self,
        size: int,
        azimuth_range: tuple[float, float],
        elevation_range: tuple[float, float],
        radius_range: tuple[float, float],
        fovy_range: tuple[float, float],
    ) -> None:
        CameraSampler(azimuth_range, elevation_range, radius_range, fovy_range)  # validates the camera ranges
        self.latent_size = size
        self.camera_ranges = {"azimuth_range": azimuth_range, "elevation_range": elevation_range, "radius_range": radius_range}
        self.fovy_range = fovy_range

    # ------------------------------------------------------------------ the shared loop
    @property
    def latent_channels(self) -> int:
        """Channels of the noisy latent (an 8-channel Zero123-style U-Net takes 4 + 4 image channels)."""
        return self.unet.config.out_channels

    def run(self, inputs: SDSInputs, iterations: int | None = None) -> SDSResult:
        """Optimise a fresh field for ``iterations`` SDS steps (same seed, same cameras, timesteps and noise every run).

        A render, noise prediction, SDS gradient, loss or field gradient with NaN or inf raises ``FloatingPointError``
        naming the step, before the optimiser takes it: nothing is zeroed away."""
        iterations = self.iterations if iterations is None else check_int("iterations", iterations, low=1)
        self._check_inputs(inputs)
        if inputs.image_latent is not None:
            check_finite_tensor("reference", inputs.image_latent, "(the reference view)")
        torch.manual_seed(self.seed)
        scene = VoxelField(resolution=self.grid_resolution, channels=self.latent_channels, seed=self.seed)
        optimizer = torch.optim.Adam(scene.parameters(), lr=self.lr)
        cameras = CameraSampler(**self.camera_ranges, fovy_range=self.fovy_range, seed=self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        alphas = self.scheduler.alphas_cumprod
        timings = {"unet_s": 0.0, "render_s": 0.0}
        losses: list[float] = []
        unet_steps: list[float] = []
        start = time.perf_counter()
        steps = tqdm(range(iterations), desc="sds", disable=not self.progress, file=sys.stderr, leave=False)
        for step in steps:
            camera = cameras.sample(1)
            t0 = time.perf_counter()
            latents = scene.render(camera, self.latent_size, self.latent_size, self.num_samples)["image"]
            timings["render_s"] += time.perf_counter() - t0
            t = torch.randint(self.min_step, self.max_step + 1, (1,), generator=gen)
            noise = torch.randn(latents.shape, generator=gen)
            with torch.no_grad():
                noisy = self.scheduler.add_noise(latents.detach(), noise, t)
                emb = self.conditioning(inputs, camera)
                eps = self._guided_noise(noisy, t, emb, inputs.image_latent, camera, unet_steps)
                # Never zero a NaN away (it would read as a perfect, zero-loss step): stop and say where.
                check_finite_tensor("sds", latents, f"in the rendered view at step {step + 1} of {iterations}")
                check_finite_tensor("sds", eps, f"in the U-Net's noise prediction at step {step + 1} of {iterations} (t={int(t)})")
                grad = (1 - alphas[t]).view(-1, 1, 1, 1) * (eps - noise)
                check_finite_tensor("sds", grad, f"in the SDS gradient at step {step + 1} of {iterations} (t={int(t)})")
            # d(loss)/d(latents) = grad: the SDS gradient, skipping the U-Net Jacobian
            loss = 0.5 * (latents - (latents - grad).detach()).square().sum()
            loss = self._with_reference_loss(loss, scene, inputs, timings)
            self._check_loss(loss, step, iterations, int(t))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            check_field_gradients(scene, f"at step {step + 1} of {iterations} (t={int(t)})")
            optimizer.step()
            losses.append(float(loss.detach()))
            steps.set_postfix(loss=f"{losses[-1]:.3g}", refresh=False)
        timings["total_s"] = time.perf_counter() - start
        timings["unet_s"] = sum(unet_steps)
        renders = turntable(scene, views=self.turntable_views, size=self.turntable_size, **TURNTABLE_POSE)
        scores = image_scores(inputs.truth, renders) if inputs.truth is not None else None
        truth_scores = {"truth_psnr_db": scores["psnr"], "truth_ssim": scores["ssim"]} if scores else {}
        shown = self._shown_reference(inputs)
        return SDSResult(scene, renders, losses, timings, unet_steps, inputs.truth, shown, truth_scores)

    def _check_loss(self, loss: torch.Tensor, step: int, iterations: int, t: int) -> None:
        """Raise ``FloatingPointError`` naming the step if the loss is NaN or inf (a noise prediction so large that
        the SDS gradient's square overflows, from an overflowing U-Net or guidance)."""
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"sds: the loss at step {step + 1} of {iterations} (t={t}) is {float(loss.detach())} (guidance_scale "
                f"{self.guidance_scale:g}, reference_weight {self.reference_weight:g}: an overflowing U-Net or guidance?)"
            )

    def _guided_noise(
        self, noisy: torch.Tensor, t: torch.Tensor, emb: torch.Tensor, image: torch.Tensor | None, camera: Cameras, unet_steps: list
    ) -> torch.Tensor:
        x = torch.cat([noisy, noisy])
        if image is not None:  # Zero123-style: the reference is the conditional half's extra input
            x = torch.cat([x, torch.cat([torch.zeros_like(image), image])], dim=1)
        t0 = time.perf_counter()
        with camera_pose(camera.azimuth, camera.elevation, camera.radius):
            eps = self.unet(x, t, encoder_hidden_states=emb).sample
        unet_steps.append(time.perf_counter() - t0)
        uncond, cond = eps.chunk(2)
        return uncond + self.guidance_scale * (cond - uncond)

    # ------------------------------------------------------------------ the job contract
    def warmup_overrides(self) -> dict[str, Any]:
        return {"iterations": 2}

    def fidelity(self, baseline: SDSResult, result: SDSResult) -> dict[str, float]:
        """PSNR between the final turntable renders with and without the accelerator (DESIGN.md); with a reference
        mesh also both runs' PSNR and SSIM against its true views at the turntable poses (never trained on)."""
        # identical renders have an infinite PSNR; the record keeps 100 dB (JSON has no inf) and says so
        value = psnr(baseline.renders, result.renders)
        out = {"psnr_db": min(value, PSNR_IDENTICAL), "identical_renders": float(value == float("inf"))}
        if result.truth_scores and baseline.truth_scores:
            out |= result.truth_scores | {f"baseline_{k}": v for k, v in baseline.truth_scores.items()}
        return out

    def result_figures(self, result: SDSResult) -> dict[str, Any]:
        return {"iterations": len(result.losses), "final_loss": result.losses[-1]} | result.truth_scores

    def describe(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "iterations": self.iterations, "latent_size": self.latent_size}

    def write_artefacts(self, result: SDSResult, baseline: SDSResult | None, out_dir: Path, options: dict[str, Any]) -> dict[str, str]:
        """Turntable renders (unaccelerated row above the accelerated row, each labelled with its numbers),
        a GIF of both side by side, and density meshes."""
        files = {}
        captions = options.get("captions", {})
        stack = f"stack: {options.get('stack', 'accelerated')}"
        accelerated = " · ".join([stack, captions["accelerated"]]) if captions.get("accelerated") else stack
        rows, labels = [], []
        if result.reference is not None:  # the input view first, at the turntable's size, then the true views
            shown = torch.nn.functional.interpolate(result.reference, size=(self.turntable_size,) * 2, mode="nearest")
            rows.append(torch.cat([shown, torch.zeros_like(result.renders[1:])]))
            labels.append(f"input view · az {self.reference_pose[0]:g}, el {self.reference_pose[1]:g}")
        if result.truth is not None:
            rows.append(result.truth)
            labels.append("ground truth · (held-out poses)")
        if baseline is not None:
            truth = f"vs truth {captions_truth(baseline)}" if result.truth is not None else ""
            rows.append(baseline.renders)
            labels.append(" · ".join(x for x in ["unaccelerated", captions.get("baseline", ""), truth] if x))
        rows.append(result.renders)
        labels.append(accelerated + (f" · vs truth {captions_truth(result)}" if result.truth is not None else ""))
        value_range = self.render_value_range
        files["turntable"] = save_turntable(
            torch.cat(rows), out_dir / "turntable.png", columns=len(result.renders), row_labels=labels, value_range=value_range
        ).name
        gif_labels = ("unaccelerated", stack) if baseline is not None else ("", stack)
        beside = baseline.renders if baseline is not None else None
        files["turntable_gif"] = save_gif(
            result.renders, out_dir / "turntable.gif", beside=beside, labels=gif_labels, value_range=value_range
        ).name
        for tag, run in (("mesh", result), ("mesh_baseline", baseline)):
            if run is None:
                continue
            try:
                files[tag] = export_mesh(density_mesh(run.field), out_dir / f"{tag}.glb").name
            except ValueError as err:  # a field with no surface at the level: say so, write nothing half-done
                print(f"[accel3d] {tag}: no mesh written ({err})", file=sys.stderr)
        return files


class TextSDSPipeline(SDSPipeline):
    """SDS with a text-conditioned U-Net (``tiny``, ``sd21_base`` or a local diffusers folder): [uncond; cond]
    text embeddings, a seeded random one or a ``.pt`` file; an 8-channel (Zero123-style) U-Net also takes a
    reference latent as its extra input channels."""

    def _load_backbone(
        self,
        weights: str | None,
        latent_size: int | None,
        azimuth_range: tuple[float, float],
        elevation_range: tuple[float, float],
        radius_range: tuple[float, float] | None,
        fovy_range: tuple[float, float] | None,
    ) -> None:
        if weights is not None:
            raise ArgumentError(
                f"weights: only the '{NOVEL_VIEW}' backbone takes a weights file; backbone '{self.backbone}' got {weights!r}"
            )
        size = 32 if latent_size is None else latent_size
        radius_range = (1.5, 2.0) if radius_range is None else radius_range
        fovy_range = (40.0, 70.0) if fovy_range is None else fovy_range
        self._set_cameras(size, azimuth_range, elevation_range, radius_range, fovy_range)
        self.unet = build_unet(self.backbone, seed=self.seed)
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

    def load_inputs(self) -> SDSInputs:
        dim = self.unet.config.cross_attention_dim
        if self.embeddings_path:
            path = Path(self.embeddings_path)
            emb = load_torch_file(path, "embeddings")
            check_embeddings(emb, dim)
            if not torch.isfinite(emb).all():
                raise ValueError(f"embeddings: '{path}' holds NaN or inf values")
            source = str(path)
        else:
            gen = torch.Generator().manual_seed(self.seed + 1)
            cond = torch.randn(1, self.sequence_length, dim, generator=gen)
            emb = torch.cat([torch.zeros_like(cond), cond])  # uncond: the empty prompt stand-in
            source = f"random text embedding (seed {self.seed + 1})"
        image, ref = None, None
        if self.unet.config.in_channels == 2 * self.latent_channels:
            if self.reference_path is None:
                raise ArgumentError(
                    f"reference: backbone '{self.backbone}' is an image-conditioned U-Net ({self.unet.config.in_channels} input "
                    f"channels: {self.latent_channels} noisy + {self.latent_channels} reference), so it needs a reference; give "
                    f"pipeline.reference=<a (1, {self.latent_channels}, {self.latent_size}, {self.latent_size}) latent .pt file>"
                )
            ref = load_reference(self.reference_path, self.reference_pose, self.fovy_range[0], self.latent_size, self.latent_channels)
            image = ref.image
            source += f" + reference {ref.source}"
        elif self.unet.config.in_channels != self.latent_channels:
            raise ValueError(f"backbone: U-Net in_channels {self.unet.config.in_channels} is neither {self.latent_channels} nor twice that")
        return SDSInputs(emb.float(), image, source, ref)

    def _check_inputs(self, inputs: SDSInputs) -> None:
        check_embeddings(inputs.embeddings, self.unet.config.cross_attention_dim)
        check_finite_tensor("embeddings", inputs.embeddings, "(the text conditioning)")

    def conditioning(self, inputs: SDSInputs, camera: Cameras) -> torch.Tensor:
        return inputs.embeddings


class NovelViewSDSPipeline(SDSPipeline):
    """SDS with the trained novel-view U-Net (``backbone: novel_view``, :mod:`accel3d.models.sds.novel_view`):
    conditioned on a reference view and each camera's pose relative to it, with Zero123-SDS's reconstruction of
    the reference view beside SDS. A mesh reference also gives the true views at the turntable poses."""

    render_value_range = (-1.0, 1.0)  # RGB pixels

    def _load_backbone(
        self,
        weights: str | None,
        latent_size: int | None,
        azimuth_range: tuple[float, float],
        elevation_range: tuple[float, float],
        radius_range: tuple[float, float] | None,
        fovy_range: tuple[float, float] | None,
    ) -> None:
        self.model = NovelViewModel.from_pretrained(weights)
        config = self.model.config
        size = config.image_size
        if latent_size is not None and latent_size != size:
            raise ArgumentError(f"latent_size: the novel-view model works on {size}x{size} images, got {latent_size}")
        radius_range = tuple(config.radius_range) if radius_range is None else radius_range
        fovy_range = (config.fovy, config.fovy) if fovy_range is None else fovy_range
        self._set_cameras(size, azimuth_range, elevation_range, radius_range, fovy_range)
        warn_outside_training(config, elevation_range, radius_range, fovy_range, self.reference_pose)
        self.unet = self.model.unet
        self.scheduler = self.model.noise_scheduler()

    def load_inputs(self) -> SDSInputs:
        """The reference view, and the truth at the turntable poses when the reference is a mesh."""
        ref = load_reference(self.reference_path, self.reference_pose, self.model.config.fovy, self.latent_size, self.latent_channels)
        cameras = turntable_cameras(self.turntable_views, **TURNTABLE_POSE)
        truth = ref.views.render(cameras, self.turntable_size) if ref.views is not None else None
        return SDSInputs(None, ref.image, ref.source, ref, truth)

    def _check_inputs(self, inputs: SDSInputs) -> None:
        if inputs.reference is None:
            raise ValueError("reference: the novel-view backbone needs the reference view of load_inputs()")

    def conditioning(self, inputs: SDSInputs, camera: Cameras) -> torch.Tensor:
        return self._pose_tokens(inputs.reference, camera)

    def _pose_tokens(self, reference: Reference, camera: Cameras) -> torch.Tensor:
        """[uncond; cond] cross-attention tokens of the novel-view model: its null tokens, then the relative camera's
        (and, for a model with image tokens, those of a zero image, then the reference's)."""
        pose = relative_pose(reference.camera, camera).expand(2, -1)
        return self.model.conditioning(pose, drop=torch.tensor([True, False]), reference=reference.image.expand(2, -1, -1, -1))

    def _with_reference_loss(self, loss: torch.Tensor, scene: VoxelField, inputs: SDSInputs, timings: dict[str, float]) -> torch.Tensor:
        if self.reference_weight > 0:  # Zero123-SDS's reconstruction of the input view
            reference = inputs.reference
            t0 = time.perf_counter()
            seen = scene.render(reference.camera, self.latent_size, self.latent_size, self.num_samples)["image"]
            timings["render_s"] += time.perf_counter() - t0
            loss = loss + self.reference_weight * 0.5 * (seen - reference.image).square().sum()
        return loss

    def _shown_reference(self, inputs: SDSInputs) -> torch.Tensor | None:
        return inputs.reference.image


def check_field_gradients(scene: VoxelField, where: str) -> None:
    """Raise ``FloatingPointError`` naming the field's parameter and ``where`` if its gradient holds NaN or inf
    (one ``isfinite(...).all()`` per parameter): Adam would write the NaN into the field."""
    for name, param in scene.named_parameters():
        if param.grad is not None and (bad := count_nonfinite(param.grad)):
            raise FloatingPointError(f"sds: the gradient of the field's {name!r} {where} holds {bad} NaN or inf values of {param.numel()}")


def check_embeddings(emb: object, dim: int) -> None:
    """Refuse anything but a ``(2, seq, dim)`` tensor of [uncond; cond] text embeddings."""
    if not isinstance(emb, torch.Tensor) or emb.ndim != 3 or emb.shape[0] != 2 or emb.shape[2] != dim:
        shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
        raise ValueError(f"embeddings: expected a (2, seq, {dim}) tensor of [uncond; cond] text embeddings, got {shape}")


def captions_truth(result: SDSResult) -> str:
    return f"PSNR {result.truth_scores['truth_psnr_db']:.2f} dB, SSIM {result.truth_scores['truth_ssim']:.3f}"


def check_reference_pose(pose: object) -> tuple[float, float, float]:
    """``(azimuth, elevation, radius)`` of the reference view: degrees, degrees, scene units."""
    if isinstance(pose, str) or not hasattr(pose, "__len__") or len(pose) != 3:
        raise ArgumentError(f"reference_pose: expected [azimuth, elevation, radius], got {pose!r}")
    azimuth = check_float("reference_pose", pose[0], low=-3600.0, high=3600.0)
    elevation = check_float("reference_pose", pose[1], low=-90.0, high=90.0)
    radius = check_float("reference_pose", pose[2], low=0.0, low_open=True)
    return azimuth, elevation, radius


def warn_outside_training(config: Any, elevation_range: tuple, radius_range: tuple, fovy_range: tuple, pose: tuple) -> None:
    """Warn, with the range, for cameras outside those the novel-view model was trained on."""
    trained = {"elevation_range": tuple(config.elevation_range), "radius_range": tuple(config.radius_range)}
    for name, value in (("elevation_range", elevation_range), ("radius_range", radius_range)):
        lo, hi = trained[name]
        if value[0] < lo - 1e-6 or value[1] > hi + 1e-6:
            warnings.warn(
                f"{name}: {list(value)} reaches outside the novel-view model's training range {list(trained[name])}", stacklevel=4
            )
    if tuple(fovy_range) != (config.fovy, config.fovy):
        warnings.warn(f"fovy_range: {list(fovy_range)}; the novel-view model was trained at a fixed fovy of {config.fovy:g}", stacklevel=4)
    lo, hi = trained["elevation_range"]
    if not lo <= pose[1] <= hi:
        warnings.warn(
            f"reference_pose: elevation {pose[1]:g} is outside the training range {list(trained['elevation_range'])}", stacklevel=4
        )
    lo, hi = trained["radius_range"]
    if not lo <= pose[2] <= hi:
        warnings.warn(f"reference_pose: radius {pose[2]:g} is outside the training range {list(trained['radius_range'])}", stacklevel=4)
