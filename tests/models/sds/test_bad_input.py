"""Bad knobs and inputs of the SDS pipeline: knobs and ranges are checked before the U-Net is built, and
a NaN that appears mid-run stops the run at its step instead of being zeroed."""

import pytest
import torch

from accel3d.models.sds.pipeline import SDSPipeline

NAN, INF = float("nan"), float("inf")


SMALL = dict(
    backbone="tiny", iterations=3, latent_size=16, grid_resolution=16, num_samples=16, turntable_views=2, turntable_size=16, progress=False
)


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("guidance_scale", NAN),
        ("guidance_scale", INF),
        ("guidance_scale", -1.0),
        ("guidance_scale", 1e38),  # was an infinite loss on every step, exit code 0
        ("guidance_scale", 1000.5),
        ("lr", NAN),
        ("lr", 0.0),
        ("lr", INF),
        ("lr", 1e30),
        ("reference_weight", 1e38),
        ("reference_weight", -1.0),
        ("iterations", 0),
        ("iterations", 10.0),
        ("latent_size", "32"),
        ("grid_resolution", 1),
        ("num_samples", 48.5),
        ("turntable_views", 0),
        ("seed", "0"),
        ("progress", "false"),
        ("backbone", ""),
        ("embeddings", ""),
    ],
)
def test_sds_knobs_are_refused_before_the_unet_is_built(knob, value, monkeypatch):
    built = []
    monkeypatch.setattr("accel3d.models.sds.pipeline.build_unet", lambda *a, **k: built.append(1))
    with pytest.raises((ValueError, TypeError), match=f"^{knob}: expected"):
        SDSPipeline(**{**SMALL, knob: value})
    assert built == []


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("t_range", [0.02, NAN]),
        ("t_range", [0.9, 0.1]),
        ("t_range", [0.0, 1.5]),
        ("azimuth_range", [NAN, 180.0]),
        ("elevation_range", [-10.0, 95.0]),
        ("radius_range", [0.0, 2.0]),
        ("fovy_range", [40.0, INF]),
    ],
)
def test_sds_ranges_are_refused_by_name(knob, value):
    with pytest.raises(ValueError, match=f"^{knob}"):
        SDSPipeline(**{**SMALL, knob: value})


@pytest.fixture(scope="module")
def pipe():
    return SDSPipeline(**SMALL)


def test_nan_text_embeddings_in_a_file_are_refused(tmp_path, pipe):
    emb = torch.randn(2, 7, pipe.unet.config.cross_attention_dim)
    emb[1, 3, 5] = NAN
    torch.save(emb, tmp_path / "emb.pt")
    other = SDSPipeline(**{**SMALL, "embeddings": str(tmp_path / "emb.pt")})
    with pytest.raises(ValueError, match="^embeddings: .* NaN or inf"):
        other.load_inputs()


def test_nan_embeddings_given_directly_stop_the_run_instead_of_zeroing_the_gradient(pipe):
    # Before: nan_to_num turned the NaN gradient into 0, the loss read 0 and PSNR inf, exit code 0.
    inputs = pipe.load_inputs()
    inputs.embeddings[1, 0, 0] = NAN
    with pytest.raises(FloatingPointError, match="embeddings"):
        pipe.run(inputs)


def test_a_unet_that_turns_nan_mid_run_stops_at_that_step(pipe):
    inputs = pipe.load_inputs()
    calls = []
    original = pipe.unet.forward

    def flaky(*args, **kwargs):
        calls.append(1)
        out = original(*args, **kwargs)
        if len(calls) == 2:
            out.sample[:] = NAN
        return out

    pipe.unet.forward = flaky
    try:
        with pytest.raises(FloatingPointError, match=r"sds: .* NaN or inf in the U-Net's noise prediction at step 2 of 3"):
            pipe.run(inputs)
    finally:
        del pipe.unet.forward
    assert len(calls) == 2  # stopped there; no further step was taken on a corrupted field


def test_run_iterations_override_is_checked(pipe):
    with pytest.raises(ValueError, match="^iterations: expected an integer >= 1"):
        pipe.run(pipe.load_inputs(), iterations=0)


def test_the_upper_bounds_name_the_range_and_take_its_ends(monkeypatch):
    built = []
    monkeypatch.setattr("accel3d.models.sds.pipeline.build_unet", lambda *a, **k: built.append(1))
    for knob, value, message in [
        ("guidance_scale", 1e38, r"^guidance_scale: expected a finite number >= 0 and <= 1000, got 1e\+38"),
        ("lr", 10.5, "^lr: expected a finite number > 0 and <= 10, got 10.5"),
        ("reference_weight", 1e5, r"^reference_weight: expected a finite number >= 0 and <= 10000, got 100000"),
    ]:
        with pytest.raises(ValueError, match=message):
            SDSPipeline(**{**SMALL, knob: value})
    assert built == []
    SDSPipeline(**{**SMALL, "guidance_scale": 1000.0, "lr": 10.0, "reference_weight": 1e4})  # the ends are taken
    assert built == [1]


def test_the_novel_view_backbone_refuses_them_before_its_checkpoint_is_read(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the checkpoint was read")

    monkeypatch.setattr("accel3d.models.sds.pipeline.NovelViewModel.from_pretrained", never)
    for knob, value in [("guidance_scale", 1e38), ("lr", 1e3), ("reference_weight", 1e38)]:
        with pytest.raises(ValueError, match=f"^{knob}: expected a finite number"):
            SDSPipeline(**{knob: value, "progress": False})


def _unet_returning(pipe, fill, from_call):
    """Make the U-Net's noise prediction ``fill`` (a constant) from its ``from_call``-th call (1 first) on."""
    calls = []
    original = pipe.unet.forward

    def forward(*args, **kwargs):
        calls.append(1)
        out = original(*args, **kwargs)
        if len(calls) >= from_call:
            out.sample[:] = fill
        return out

    pipe.unet.forward = forward
    return calls


def test_an_overflowing_loss_stops_the_run_at_its_step(pipe):
    # A finite but huge noise prediction (an overflowing U-Net or guidance): each check of the render and of the
    # prediction passes, the squared SDS gradient overflows. Before: the loss was inf at every step, exit code 0.
    inputs = pipe.load_inputs()
    calls = _unet_returning(pipe, 1e30, from_call=2)
    try:
        with pytest.raises(FloatingPointError, match=r"^sds: the loss at step 2 of 3 \(t=\d+\) is inf \(guidance_scale 3, "):
            pipe.run(inputs)
    finally:
        del pipe.unet.forward
    assert len(calls) == 2  # no step was taken with it


def test_a_nan_sds_gradient_stops_the_run_before_the_optimiser_takes_it(pipe, monkeypatch):
    # NaN noise weights w(t) = 1 - alpha_bar(t) (a corrupt scheduler); the U-Net answers 0 whatever its input.
    # Before: Adam wrote NaN into the field and the run stopped one step later, blaming the render.
    inputs = pipe.load_inputs()
    monkeypatch.setattr(pipe.scheduler, "alphas_cumprod", torch.full_like(pipe.scheduler.alphas_cumprod, NAN))
    _unet_returning(pipe, 0.0, from_call=1)
    try:
        with pytest.raises(FloatingPointError, match=r"^sds: \d+ of \d+ values are NaN or inf in the SDS gradient at step 1 of 3"):
            pipe.run(inputs)
    finally:
        del pipe.unet.forward


def test_a_nan_field_gradient_stops_the_run_before_the_optimiser_takes_it(pipe, monkeypatch):
    # The render's backward pass turns NaN at step 2 (a 0/0 in a ray's gradient, say); the loss is finite.
    # Before: Adam wrote NaN into the field and the run stopped one step later, blaming the render.
    from accel3d.models.sds.scene import VoxelField

    inputs = pipe.load_inputs()
    render, renders = VoxelField.render, []

    def poisoned(self, *args, **kwargs):
        out = render(self, *args, **kwargs)
        renders.append(1)
        if len(renders) == 2 and out["image"].requires_grad:
            out["image"].register_hook(lambda g: torch.full_like(g, NAN))
        return out

    monkeypatch.setattr(VoxelField, "render", poisoned)
    with pytest.raises(FloatingPointError, match=r"^sds: the gradient of the field's '\w+' at step 2 of 3 \(t=\d+\) holds \d+ NaN"):
        pipe.run(inputs)


def test_scene_and_camera_knobs():
    from accel3d.models.sds.scene import CameraSampler, VoxelField, turntable

    for kwargs, match in [
        ({"bound": INF}, "^bound: expected"),
        ({"blob_radius": NAN}, "^blob_radius: expected"),
        ({"resolution": 16.0}, "^resolution: expected an integer"),
        ({"channels": True}, "^channels: expected an integer"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            VoxelField(**kwargs)
    with pytest.raises(ValueError, match=r"^radius_range\[1\]: expected a finite number"):
        CameraSampler(radius_range=(1.0, "2"))
    field = VoxelField(resolution=8)
    for kwargs, match in [({"fovy": NAN}, "^fovy: expected"), ({"elevation": 120.0}, "^elevation: expected"), ({"size": 0}, "^size")]:
        with pytest.raises(ValueError, match=match):
            turntable(field, **kwargs)


def test_review_findings_in_the_sds_pipeline():
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match="^seed: expected an integer >= 0"):
            SDSPipeline(**{**SMALL, "seed": seed})
    with pytest.raises(ValueError, match="^azimuth_range"):
        SDSPipeline(**{**SMALL, "azimuth_range": [-1e308, 1e308]})


def test_t_range_up_to_one_means_the_last_training_step(pipe):
    top = SDSPipeline(**{**SMALL, "t_range": [1.0, 1.0]})
    assert top.min_step == top.max_step == 999
    result = top.run(top.load_inputs(), iterations=2)  # was an IndexError inside diffusers' add_noise
    assert len(result.losses) == 2


def test_embeddings_file_that_is_not_a_tensor_file(tmp_path, pipe):
    (tmp_path / "emb.pt").write_text("a prompt, not embeddings")
    with pytest.raises(ValueError, match="^embeddings: .* is not a readable PyTorch tensor file"):
        SDSPipeline(**{**SMALL, "embeddings": str(tmp_path / "emb.pt")}).load_inputs()
    inputs = pipe.load_inputs()
    inputs.embeddings = torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match=r"^embeddings: expected a \(2, seq, 64\) tensor"):
        pipe.run(inputs)
