"""Non-finite values that appear mid-run in the ``image_to_3d`` pipeline stop the run at the stage and step that
made them, with or without an accelerator stack, and float knobs out of their range are refused before the
checkpoint is read."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import accel3d
from accel3d.core.validate import ArgumentError
from accel3d.jobs.configs import config_dir
from accel3d.jobs.run import prepare_job
from accel3d.models.image_to_3d import FlowSampler
from accel3d.models.image_to_3d.pipeline import ImageTo3DPipeline
from accel3d.models.image_to_3d.pose import place_mesh
from accel3d.models.image_to_3d.stages import SparseCoords

NAN = float("nan")
STEPS = 6  # enough for the fastsam3d stack to cache some steps (warm-up 2, stride 3) and skip or carve others


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pipe(tiny_image_to_3d_weights) -> ImageTo3DPipeline:
    return ImageTo3DPipeline(weights=str(tiny_image_to_3d_weights), ss_steps=STEPS, slat_steps=STEPS, progress=False)


def _nan_from(module: torch.nn.Module, sampler: FlowSampler, first: int, keys: tuple[str, ...] | None = None) -> list[int]:
    """Make ``module`` (a flow model) return NaN at every call from the ``first``-th step (0 first) of ``sampler``
    on (only in ``keys`` of a dict output, where given); returns the list of steps whose calls returned NaN."""
    times = sampler.timesteps.tolist()
    original = module.forward
    poisoned: list[int] = []

    def forward(x, t, cond, *args, **kwargs):
        out = original(x, t, cond, *args, **kwargs)
        step = min(range(len(times)), key=lambda i: abs(times[i] - float(t)))
        if step < first:
            return out
        poisoned.append(step)
        if isinstance(out, dict):
            return {k: (torch.full_like(v, NAN) if keys is None or k in keys else v) for k, v in out.items()}
        return torch.full_like(out, NAN)

    module.forward = forward
    return poisoned


def _failed_step(message: str) -> int:
    return int(re.search(rf"at step (\d+) of {STEPS}", message).group(1))


# ---------------------------------------------------------------------- the SS flow
@pytest.mark.parametrize("stack", [None, "fastsam3d"])
def test_an_ss_velocity_that_turns_nan_stops_the_run_at_its_step(pipe, stack):
    # Before: NaN velocities gave NaN SS latents, no occupied voxel, "the generated mesh is empty" and exit code 0.
    inputs = pipe.load_inputs()
    poisoned = _nan_from(pipe.models.ss_flow, pipe.ss_sampler, first=3)
    applied = accel3d.apply(pipe, stack) if stack is not None else None
    try:
        message = rf"^ss_sampler: the velocity of 'shape' at step \d+ of {STEPS} holds 256 NaN or inf values of 256 \(t="
        with pytest.raises(FloatingPointError, match=message) as err:
            pipe.run(inputs)
        stats = applied.stats() if applied is not None else {}
    finally:
        if applied is not None:
            accel3d.remove(pipe)
        del pipe.models.ss_flow.forward
    # the first step whose velocity was computed from NaN model outputs (a cached step in between uses none)
    assert _failed_step(str(err.value)) == poisoned[0] + 1 >= 4
    assert "(t=0.25, guidance strength 7: " in str(err.value) or stack is not None
    if stack is not None:  # the step cache saw the NaN velocity (it never caches one) and had cached steps before it
        assert stats["modality_cache"]["nan_steps"] == 1 and stats["modality_cache"]["cached_steps"] >= 1
    assert pipe.stage("ss_sampler").velocity == pipe.ss_sampler.velocity and "velocity" not in vars(pipe.ss_sampler)


def test_the_velocity_an_accelerator_returns_is_checked_where_the_sampler_uses_it(pipe):
    # An accelerator replaces the velocity (here: with NaN at step 2) without calling the model: still caught.
    from accel3d.core.hooks import PatchSet

    def wrap(original):
        def velocity(x, t, cond, step, **kwargs):
            v = original(x, t, cond, step, **kwargs)
            return {k: (torch.full_like(u, float("inf")) if step == 1 and k == "scale" else u) for k, u in v.items()}

        return velocity

    patches = PatchSet("poison")
    patches.wrap(pipe.stage("ss_sampler"), "velocity", wrap)
    try:
        with pytest.raises(FloatingPointError, match=rf"^ss_sampler: the velocity of 'scale' at step 2 of {STEPS} holds 3 NaN or inf"):
            pipe.run(pipe.load_inputs())
    finally:
        patches.restore()


# ---------------------------------------------------------------------- the SLaT flow
@pytest.mark.parametrize("stack", [None, "fastsam3d"])
def test_a_slat_velocity_that_turns_nan_stops_the_run_at_its_step(pipe, stack):
    # Before: caught only at mesh extraction, as "grid: ... NaN or inf values; fill undecoded points".
    inputs = pipe.load_inputs()
    poisoned = _nan_from(pipe.models.slat_flow, pipe.slat_sampler, first=4)
    applied = accel3d.apply(pipe, stack) if stack is not None else None
    try:
        with pytest.raises(FloatingPointError, match=rf"^slat_sampler: the velocity at step \d+ of {STEPS} holds \d+ NaN or inf") as err:
            pipe.run(inputs)
        stats = applied.stats() if applied is not None else {}
    finally:
        if applied is not None:
            accel3d.remove(pipe)
        del pipe.models.slat_flow.forward
    assert _failed_step(str(err.value)) == poisoned[0] + 1 >= 5
    assert "no guidance at this t" in str(err.value)
    if stack is not None:  # token carving saw the NaN velocity and fell back to a full one: still NaN, still caught
        assert stats["token_carving"]["nan_steps"] >= 1 and stats["spectral_aggregation"]["calls"] == 1


# ---------------------------------------------------------------------- the layout and what follows the flows
def test_a_nan_layout_translation_is_refused_before_a_mesh_is_placed(pipe):
    # Before: each of these gave a mesh with NaN (or inf) vertices and no error.
    inputs = pipe.load_inputs()
    _nan_from(pipe.models.ss_flow, pipe.ss_sampler, first=STEPS - 1, keys=("translation",))
    try:
        with pytest.raises(FloatingPointError, match=rf"^ss_sampler: the velocity of 'translation' at step {STEPS} of {STEPS} holds 3 NaN"):
            pipe.run(inputs)
    finally:
        del pipe.models.ss_flow.forward
    # a finite flow whose translation maps to NaN (the normalization's mean here)
    saved = pipe.space.translation
    pipe.space.translation = (torch.tensor([NAN, 0.0, 0.0]), torch.ones(3))
    try:
        with pytest.raises(FloatingPointError, match=r"^layout: the layout translation \[nan, .*\] holds NaN or inf \(the SS flow's"):
            pipe.run(inputs)
    finally:
        pipe.space.translation = saved
    # a sparse_structure stage (an accelerator's, say) whose factor is not finite scales the layout to inf
    original = pipe.sparse_structure.coords
    pipe.sparse_structure.coords = lambda logits, mask=None: SparseCoords(original(logits, mask).coords, float("inf"), 1)
    try:
        with pytest.raises(FloatingPointError, match=r"^mesh_decoder: the layout scale \[inf, inf, inf\] holds NaN or inf"):
            pipe.run(inputs)
    finally:
        del pipe.sparse_structure.coords
    mesh = pipe.run(inputs).mesh  # and the pipeline runs as before
    assert np.isfinite(mesh.vertices).all() and len(mesh.faces) > 0
    with pytest.raises(FloatingPointError, match=r"^translation: \[0\.0, nan, 0\.0\] holds NaN or inf"):
        place_mesh(mesh, torch.tensor([1.0, 0, 0, 0, 1, 0]), torch.tensor([0.0, NAN, 0.0]), torch.ones(3))


def test_nan_occupancy_logits_and_a_nan_fine_sdf_name_their_stage(pipe):
    # Before: NaN logits read as no voxel (an empty mesh, exit code 0); a NaN fine SDF failed at mesh extraction.
    inputs = pipe.load_inputs()
    vae = pipe.models.ss_vae
    original = vae.decode
    vae.decode = lambda latent: torch.full_like(original(latent), NAN)
    try:
        with pytest.raises(FloatingPointError, match=r"^sparse_structure: the occupancy logits hold 4096 NaN or inf values of 4096"):
            pipe.run(inputs)
    finally:
        del vae.decode
    decoder = pipe.models.slat_decoder
    forward = decoder.forward
    decoder.forward = lambda *args, **kwargs: torch.full_like(forward(*args, **kwargs), NAN)
    try:
        with pytest.raises(FloatingPointError, match=r"^mesh_decoder: the fine SDF holds \d+ NaN or inf values"):
            pipe.run(inputs)
    finally:
        del decoder.forward


def test_nan_noise_passed_to_a_sampler_is_refused(pipe):
    cond = torch.zeros(1, 16, 16)
    noise = {k: torch.zeros(1, *s) for k, s in pipe.models.ss_flow.token_shapes.items()}
    noise["rotation"][0, 0, 2] = NAN
    with pytest.raises(FloatingPointError, match=r"^ss_sampler: the initial noise of 'rotation' holds 1 NaN or inf values of 6"):
        pipe.ss_sampler.sample(cond, noise=noise)


# ---------------------------------------------------------------------- knob bounds
@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("ss_cfg", 1e38, r"^ss_cfg: expected a finite number >= 0 and <= 1000, got 1e\+38"),
        ("ss_cfg", 1000.5, "^ss_cfg: expected a finite number >= 0 and <= 1000"),
        ("slat_cfg", 1e38, "^slat_cfg: expected a finite number >= 0 and <= 1000"),
        ("ss_rescale", 1e7, r"^ss_rescale: expected a finite number > 0 and <= 1e\+06"),
        ("slat_rescale", 1e300, r"^slat_rescale: expected a finite number > 0 and <= 1e\+06"),
    ],
)
def test_float_knobs_above_their_range_are_refused_before_the_checkpoint_is_read(knob, value, message, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the checkpoint was read")

    monkeypatch.setattr("accel3d.models.image_to_3d.pipeline.load_image_to_3d_models", never)
    with pytest.raises(ArgumentError, match=message):
        ImageTo3DPipeline(**{knob: value})


def test_the_guidance_bound_holds_for_a_sampler_and_a_job(tiny_image_to_3d_models, monkeypatch):
    with pytest.raises(ArgumentError, match="^cfg_strength: expected a finite number >= 0 and <= 1000"):
        tiny_image_to_3d_models.ss_sampler(cfg_strength=1e38)
    assert tiny_image_to_3d_models.ss_sampler(cfg_strength=1000.0).cfg_strength == 1000.0

    def never(*args, **kwargs):
        raise AssertionError("the checkpoint was read")

    monkeypatch.setattr("accel3d.models.image_to_3d.pipeline.load_image_to_3d_models", never)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("run", overrides=["pipeline=image_to_3d", "stack=none", "pipeline.ss_cfg=1e38"])
    with pytest.raises(ArgumentError, match="^pipeline: ss_cfg: expected a finite number >= 0 and <= 1000"):
        prepare_job(cfg)
