"""The novel-view U-Net: its checkpoints, the shipped weights against an untrained model, and SDS on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from accel3d.caching import Hash3D
from accel3d.core import Stack
from accel3d.geometry.mesh_sources import eval_meshes
from accel3d.models.sds.cameras import CameraSampler
from accel3d.models.sds.mesh_views import MeshViews, albedo_for, relative_pose, scene_mesh
from accel3d.models.sds.novel_view import DEFAULT_WEIGHTS, NovelViewConfig, NovelViewModel
from accel3d.models.sds.pipeline import SDSPipeline

ROOT = Path(__file__).resolve().parents[3]
FAST = dict(iterations=6, grid_resolution=16, num_samples=16, turntable_views=2, turntable_size=16, progress=False)


@pytest.fixture(scope="module")
def shipped():
    return NovelViewModel.from_pretrained()


@pytest.fixture(scope="module")
def held_out_views():
    """Views of a procedural shape no model was trained on, at the model's cameras."""
    config = NovelViewConfig()
    views = MeshViews(scene_mesh(eval_meshes(sources=("procedural",), procedural=0, procedural_eval=1)["eval_00_box"]), albedo_for(7))
    cams = CameraSampler(elevation_range=config.elevation_range, radius_range=config.radius_range,
                         fovy_range=(config.fovy, config.fovy), seed=123).sample(12)  # fmt: skip
    images = views.render(cams, config.image_size)
    ref_index, target_index = torch.arange(6), torch.arange(6, 12)
    return images[ref_index], images[target_index], relative_pose(cams[ref_index], cams[target_index])


def _eps_mse(model, ref, target, pose):
    scheduler = model.noise_scheduler()
    gen = torch.Generator().manual_seed(0)
    errors = []
    with torch.no_grad():
        for t in (100, 300, 500, 700):
            noise = torch.randn(target.shape, generator=gen)
            steps = torch.full((len(target),), t)
            errors.append(float((model(scheduler.add_noise(target, noise, steps), steps, ref, pose) - noise).square().mean()))
    return sum(errors) / len(errors)


def test_the_shipped_weights_denoise_a_held_out_object_far_better_than_an_untrained_model(shipped, held_out_views):
    torch.manual_seed(0)
    untrained = NovelViewModel(shipped.config).eval()
    trained_mse, untrained_mse = _eps_mse(shipped, *held_out_views), _eps_mse(untrained, *held_out_views)
    assert trained_mse < 0.1 * untrained_mse, (trained_mse, untrained_mse)  # measured 0.028 against 1.19
    figures = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())["figures"]
    for split in ("held_out_poses", "held_out_objects"):  # the JSON's DDIM samples beat the untrained model's
        assert figures[split]["model"]["psnr"] > figures[split]["untrained"]["psnr"] + 3.0


def test_a_do_nothing_cache_on_the_trained_unet_is_bit_identical(shipped):
    pipe = SDSPipeline(**FAST)
    inputs = pipe.load_inputs()
    base = pipe.run(inputs)
    hash3d = Hash3D(retrieve_prob=0.0)
    with Stack([hash3d]).applied(pipe):
        same = pipe.run(inputs)
    assert torch.equal(base.renders, same.renders) and base.losses == same.losses
    assert hash3d.match_conditioning is False  # the pose tokens change every call; the pose is in the key
    loose = Hash3D(retrieve_prob=1.0, num_buckets=1)
    with Stack([loose]).applied(pipe):
        pipe.run(inputs)
    assert loose.history == [0, 1, 1, 1, 1, 1]  # the pose-dependent conditioning does not stop the reuse


def test_checkpoints_round_trip_and_refuse_another_model(tmp_path):
    torch.manual_seed(0)
    model = NovelViewModel(NovelViewConfig(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=16, pose_tokens=2))
    model.save(tmp_path / "nv.pt", half=False)
    loaded = NovelViewModel.from_pretrained(tmp_path / "nv.pt")
    x, pose = torch.randn(2, 3, 32, 32), torch.randn(2, 4)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        assert torch.equal(model.eval()(x, t, x, pose), loaded(x, t, x, pose))
    with pytest.raises(ValueError, match=r"^weights: .* is not a novel-view checkpoint"):
        NovelViewModel.from_pretrained(ROOT / "accel3d" / "models" / "weights" / "vecset_small.pt")
    payload = torch.load(tmp_path / "nv.pt")
    payload["config"]["block_out_channels"] = [8, 32]  # another architecture than the tensors
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"^weights: .* does not fit the novel-view architecture"):
        NovelViewModel.from_pretrained(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match=r"^weights: no novel-view checkpoint"):
        NovelViewModel.from_pretrained(tmp_path / "missing.pt")


def test_image_tokens_carry_the_reference_into_the_cross_attention_and_old_checkpoints_still_load(tmp_path):
    torch.manual_seed(0)
    tiny = dict(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=16, pose_tokens=2)
    model = NovelViewModel(NovelViewConfig(**tiny, image_tokens=4)).eval()
    pose, ref = torch.randn(2, 4), torch.randn(2, 3, 32, 32)
    drop = torch.tensor([True, False])
    with torch.no_grad():
        tokens = model.conditioning(pose, drop, ref)
        assert tokens.shape == (2, 2 + 16, 16)
        # the dropped row sees the null pose tokens and a zero image, whatever reference it was given
        assert torch.equal(tokens[0], model.conditioning(pose, drop, torch.zeros_like(ref))[0])
        assert not torch.equal(tokens[1], model.conditioning(pose, drop, torch.zeros_like(ref))[1])
    with pytest.raises(ValueError, match=r"^reference: this novel-view model also cross-attends"):
        model.conditioning(pose, drop)
    with pytest.raises(ValueError, match=r"^image_tokens: expected image_size 32 over a power of two, got 5"):
        NovelViewModel(NovelViewConfig(**tiny, image_tokens=5))
    # a checkpoint written before image tokens existed has no such key: it loads as a model without them
    old = NovelViewModel(NovelViewConfig(**tiny, image_tokens=0))
    old.save(tmp_path / "old.pt", half=False)
    payload = torch.load(tmp_path / "old.pt")
    del payload["config"]["image_tokens"]
    torch.save(payload, tmp_path / "old.pt")
    loaded = NovelViewModel.from_pretrained(tmp_path / "old.pt")
    assert loaded.image_encoder is None and loaded.config.image_tokens == 0


def test_sds_bad_inputs_name_the_argument(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match=r"^reference: .*small.png' is 16x16 pixels; the model takes 32x32"):
        SDSPipeline(**FAST, reference=str(tmp_path / "small.png")).load_inputs()
    with pytest.raises(ValueError, match=r"^latent_size: the novel-view model works on 32x32 images, got 16"):
        SDSPipeline(**FAST, latent_size=16)
    with pytest.warns(UserWarning, match=r"elevation_range: \[-30.0, 45.0\] reaches outside .* training range \[-10.0, 45.0\]"):
        SDSPipeline(**FAST, elevation_range=(-30.0, 45.0))
    with pytest.warns(UserWarning, match=r"reference_pose: radius 3 is outside the training range \[1.4, 1.8\]"):
        SDSPipeline(**FAST, reference_pose=(0.0, 15.0, 3.0))
    with pytest.raises(ValueError, match=r"^reference_pose: expected \[azimuth, elevation, radius\]"):
        SDSPipeline(**FAST, reference_pose=(0.0, 15.0))
    with pytest.raises(ValueError, match=r"^weights: only the 'novel_view' backbone takes a weights file"):
        SDSPipeline(**{**FAST, "backbone": "tiny"}, weights="x.pt")
    with pytest.raises(ValueError, match=r"^weights: .* is not a novel-view checkpoint"):
        SDSPipeline(**FAST, weights=str(ROOT / "accel3d" / "models" / "weights" / "image_to_3d.pt"))


def test_a_png_reference_at_its_pose(tmp_path, shipped):
    pipe = SDSPipeline(**FAST)
    rendered = pipe.load_inputs().reference.image  # the bunny at the default pose, saved as a user's PNG would be
    rgb = ((rendered[0].permute(1, 2, 0) + 1) / 2 * 255).round().clamp(0, 255).byte().numpy()
    Image.fromarray(rgb).save(tmp_path / "bunny.png")
    from_png = SDSPipeline(**FAST, reference=str(tmp_path / "bunny.png")).load_inputs()
    assert from_png.truth is None and (from_png.reference.image - rendered).abs().max() <= 1 / 255 + 1e-6


def test_training_runs_on_a_tiny_configuration(tmp_path):
    out = tmp_path / "nv.pt"
    args = [sys.executable, str(ROOT / "scripts" / "train_novel_view.py"), "--tiny", "--out", str(out), "--cache", str(tmp_path / "cache")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["steps"] == 3 and set(report["figures"]) == {"held_out_poses", "held_out_objects"}
    assert len(report["figures"]["held_out_objects"]["model"]["eps_mse_by_t_band"]) == 10
    model = NovelViewModel.from_pretrained(out)
    assert model.metadata["trained_steps"] == 3 and out.with_suffix(".png").is_file()


def test_the_default_sds_job_writes_the_turntable(tmp_path):
    out = tmp_path / "run"
    args = ["run", "pipeline=sds", "stack=hash3d", "pipeline.iterations=4", "pipeline.grid_resolution=16"]
    args += ["pipeline.progress=false", "repeats=1", f"hydra.run.dir={out}"]
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "record.json").read_text())
    fidelity = record["runs"]["hash3d"]["fidelity"]
    assert {"psnr_db", "truth_psnr_db", "truth_ssim", "baseline_truth_psnr_db", "baseline_truth_ssim"} <= set(fidelity)
    with Image.open(out / "turntable.png") as png, Image.open(out / "turntable.gif") as gif:
        assert png.format == "PNG" and gif.n_frames == 8
