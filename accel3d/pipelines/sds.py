"""``sds``: a small score-distillation (SDS) optimisation on the CPU.

A voxel radiance field renders C-channel latent images directly (Latent-NeRF
style) from random threestudio-like cameras; a diffusers U-Net scores them with
classifier-free guidance at a random DDPM timestep; Adam follows the SDS gradient
``w(t) (eps_hat - eps)``. Every U-Net call states its camera with
:func:`accel3d.core.camera_pose`, so pose-aware accelerators (Hash3D) can attach to
the ``denoiser`` stage.

Stages:
    denoiser   the diffusers UNet2DConditionModel

Backbones: ``tiny`` (random init, the fast default), ``sd21_base`` (the SD-2.1-base
architecture at random init, for a realistic compute profile), or a local diffusers
U-Net folder. With random weights the field does not become a recognisable object:
the pipeline measures speed and fidelity, not beauty. Conditioning is a seeded
random text embedding (or a ``.pt`` file of ``(2, seq, dim)`` [uncond; cond]
embeddings); 8-channel (Zero123-style) U-Nets also get a seeded reference-image latent.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from tqdm.auto import tqdm

from accel3d.core.context import camera_pose
from accel3d.core.io import load_torch_file
from accel3d.core.pipeline import Pipeline
from accel3d.core.validate import check_bool, check_finite_tensor, check_float, check_int, check_pair, check_seed, check_str
from accel3d.geometry.metrics import psnr
from accel3d.geometry.surface import export_mesh
from accel3d.models.unets import build_unet
from accel3d.pipelines.sds_scene import Cameras, CameraSampler, VoxelField, density_mesh, save_gif, save_turntable, turntable


@dataclass
class SDSInputs:
    """The conditioning of one SDS run: [uncond; cond] embeddings and, for 8-channel U-Nets, an image latent."""

    embeddings: torch.Tensor  # (2, seq, dim)
    image_latent: torch.Tensor | None
    source: str


@dataclass
class SDSResult:
    """The optimised field, its turntable renders, the loss curve and wall times."""

    field: VoxelField
    renders: torch.Tensor  # (views, C, size, size)
    losses: list[float]
    timings: dict[str, float] = field(default_factory=dict)
    unet_steps: list[float] = field(default_factory=list)  # wall time of each step's U-Net call


PSNR_IDENTICAL = 100.0  # dB recorded for identical renders (float32 renders differ by far more than this allows)


class SDSPipeline(Pipeline):
    """Score distillation of a voxel field with a diffusers U-Net.

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

    def __init__(
        self,
        backbone: str = "tiny",
        iterations: int = 200,
        latent_size: int = 32,
        guidance_scale: float = 7.5,
        lr: float = 0.01,
        grid_resolution: int = 32,
        num_samples: int = 48,
        t_range: tuple[float, float] = (0.02, 0.98),
        azimuth_range: tuple[float, float] = (-180.0, 180.0),
        elevation_range: tuple[float, float] = (-10.0, 45.0),
        radius_range: tuple[float, float] = (1.5, 2.0),
        fovy_range: tuple[float, float] = (40.0, 70.0),
        embeddings: str | None = None,
        sequence_length: int = 77,
        turntable_views: int = 8,
        turntable_size: int = 64,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        # Every knob is checked before the U-Net is built, so a typo costs no model load.
        check_str("backbone", backbone)
        for name, value, low in (
            ("iterations", iterations, 1),
            ("latent_size", latent_size, 4),
            ("grid_resolution", grid_resolution, 2),
            ("num_samples", num_samples, 2),
            ("sequence_length", sequence_length, 1),
            ("turntable_views", turntable_views, 1),
            ("turntable_size", turntable_size, 8),
        ):
            check_int(name, value, low=low)
        check_seed("seed", seed)
        check_float("guidance_scale", guidance_scale, low=0.0)
        check_float("lr", lr, low=0.0, low_open=True)
        low, high = check_pair("t_range", t_range, low=0.0, high=1.0)
        check_str("embeddings", embeddings, allow_none=True)
        check_bool("progress", progress)
        CameraSampler(azimuth_range, elevation_range, radius_range, fovy_range)  # validates the camera ranges
        self.unet = build_unet(backbone, seed=seed)
        self.backbone = backbone
        self.iterations = iterations
        self.latent_size = latent_size
        self.guidance_scale = guidance_scale
        self.lr = lr
        self.grid_resolution = grid_resolution
        self.num_samples = num_samples
        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
        steps = self.scheduler.config.num_train_timesteps
        # t_range is a fraction of the training steps 0..steps-1: 1.0 is the last step, not one past it
        self.min_step, self.max_step = min(int(low * steps), steps - 1), min(int(high * steps), steps - 1)
        self.camera_ranges = {"azimuth_range": azimuth_range, "elevation_range": elevation_range, "radius_range": radius_range}
        self.fovy_range = fovy_range
        self.embeddings_path = embeddings
        self.sequence_length = sequence_length
        self.turntable_views = turntable_views
        self.turntable_size = turntable_size
        self.seed = seed
        self.progress = progress
        self.stages = {"denoiser": self.unet}

    @property
    def latent_channels(self) -> int:
        """Channels of the noisy latent (an 8-channel Zero123-style U-Net takes 4 + 4 image channels)."""
        return self.unet.config.out_channels

    def load_inputs(self) -> SDSInputs:
        dim = self.unet.config.cross_attention_dim
        if self.embeddings_path:
            path = Path(self.embeddings_path)
            emb = load_torch_file(path, "embeddings")
            if not isinstance(emb, torch.Tensor) or emb.ndim != 3 or emb.shape[0] != 2 or emb.shape[2] != dim:
                shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
                raise ValueError(f"embeddings: expected a (2, seq, {dim}) tensor of [uncond; cond] text embeddings, got {shape}")
            if not torch.isfinite(emb).all():
                raise ValueError(f"embeddings: '{path}' holds NaN or inf values")
            source = str(path)
        else:
            gen = torch.Generator().manual_seed(self.seed + 1)
            cond = torch.randn(1, self.sequence_length, dim, generator=gen)
            emb = torch.cat([torch.zeros_like(cond), cond])  # uncond: the empty prompt stand-in
            source = f"random text embedding (seed {self.seed + 1})"
        image = None
        if self.unet.config.in_channels == 2 * self.latent_channels:
            gen = torch.Generator().manual_seed(self.seed + 2)
            image = torch.randn(1, self.latent_channels, self.latent_size, self.latent_size, generator=gen)
            source += " + random reference-image latent"
        elif self.unet.config.in_channels != self.latent_channels:
            raise ValueError(f"backbone: U-Net in_channels {self.unet.config.in_channels} is neither {self.latent_channels} nor twice that")
        return SDSInputs(emb.float(), image, source)

    def run(self, inputs: SDSInputs, iterations: int | None = None) -> SDSResult:
        """Optimise a fresh field for ``iterations`` SDS steps (same seed, same cameras, timesteps and noise every run)."""
        iterations = self.iterations if iterations is None else check_int("iterations", iterations, low=1)
        dim = self.unet.config.cross_attention_dim
        emb_shape = tuple(inputs.embeddings.shape)
        if len(emb_shape) != 3 or emb_shape[0] != 2 or emb_shape[2] != dim:
            raise ValueError(f"embeddings: expected a (2, seq, {dim}) tensor of [uncond; cond] embeddings, got {emb_shape}")
        check_finite_tensor("embeddings", inputs.embeddings, "(the text conditioning)")
        if inputs.image_latent is not None:
            check_finite_tensor("image latent", inputs.image_latent)
        torch.manual_seed(self.seed)
        scene = VoxelField(resolution=self.grid_resolution, channels=self.latent_channels, seed=self.seed)
        optimizer = torch.optim.Adam(scene.parameters(), lr=self.lr)
        cameras = CameraSampler(**self.camera_ranges, fovy_range=self.fovy_range, seed=self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        alphas = self.scheduler.alphas_cumprod
        emb = inputs.embeddings
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
                eps = self._guided_noise(noisy, t, emb, inputs.image_latent, camera, unet_steps)
                # Never zero a NaN away (it would read as a perfect, zero-loss step): stop and say where.
                check_finite_tensor("sds", latents, f"in the rendered view at step {step + 1} of {iterations}")
                check_finite_tensor("sds", eps, f"in the U-Net's noise prediction at step {step + 1} of {iterations} (t={int(t)})")
                grad = (1 - alphas[t]).view(-1, 1, 1, 1) * (eps - noise)
            # d(loss)/d(latents) = grad: the SDS gradient, skipping the U-Net Jacobian
            loss = 0.5 * (latents - (latents - grad).detach()).square().sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            steps.set_postfix(loss=f"{losses[-1]:.3g}", refresh=False)
        timings["total_s"] = time.perf_counter() - start
        timings["unet_s"] = sum(unet_steps)
        renders = turntable(scene, views=self.turntable_views, size=self.turntable_size)
        return SDSResult(scene, renders, losses, timings, unet_steps)

    def _guided_noise(
        self, noisy: torch.Tensor, t: torch.Tensor, emb: torch.Tensor, image: torch.Tensor | None, camera: Cameras, unet_steps: list
    ) -> torch.Tensor:
        x = torch.cat([noisy, noisy])
        if image is not None:  # Zero123-style: the reference latent is the conditional half's extra input
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
        """PSNR between the final turntable renders with and without the accelerator (DESIGN.md)."""
        # identical renders have an infinite PSNR; the record keeps 100 dB (JSON has no inf) and says so
        value = psnr(baseline.renders, result.renders)
        return {"psnr_db": min(value, PSNR_IDENTICAL), "identical_renders": float(value == float("inf"))}

    def result_figures(self, result: SDSResult) -> dict[str, Any]:
        return {"iterations": len(result.losses), "final_loss": result.losses[-1]}

    def describe(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "iterations": self.iterations, "latent_size": self.latent_size}

    def write_artefacts(self, result: SDSResult, baseline: SDSResult | None, out_dir: Path, options: dict[str, Any]) -> dict[str, str]:
        """Turntable renders (unaccelerated row above the accelerated row, each labelled with its numbers),
        a GIF of both side by side, and density meshes."""
        files = {}
        captions = options.get("captions", {})
        stack = f"stack: {options.get('stack', 'accelerated')}"
        accelerated = " · ".join([stack, captions["accelerated"]]) if captions.get("accelerated") else stack
        if baseline is None:
            frames, labels = result.renders, [accelerated]
        else:
            frames = torch.cat([baseline.renders, result.renders])
            labels = [" · ".join(["unaccelerated", captions.get("baseline", "")]).rstrip(" ·"), accelerated]
        files["turntable"] = save_turntable(frames, out_dir / "turntable.png", columns=len(result.renders), row_labels=labels).name
        gif_labels = ("unaccelerated", stack) if baseline is not None else ("", stack)
        beside = baseline.renders if baseline is not None else None
        files["turntable_gif"] = save_gif(result.renders, out_dir / "turntable.gif", beside=beside, labels=gif_labels).name
        for tag, run in (("mesh", result), ("mesh_baseline", baseline)):
            if run is None:
                continue
            try:
                files[tag] = export_mesh(density_mesh(run.field), out_dir / f"{tag}.glb").name
            except ValueError as err:  # a field with no surface at the level: say so, write nothing half-done
                print(f"[accel3d] {tag}: no mesh written ({err})", file=sys.stderr)
        return files
