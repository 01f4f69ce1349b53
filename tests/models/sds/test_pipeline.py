import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from accel3d.caching import Hash3D
from accel3d.core import Stack
from accel3d.geometry.metrics import psnr
from accel3d.models.sds.pipeline import SDSPipeline
from accel3d.models.sds.unets import build_unet

SMALL = dict(
    backbone="tiny", iterations=4, latent_size=16, grid_resolution=16, num_samples=16, turntable_views=2, turntable_size=16, progress=False
)


@pytest.fixture(scope="module")
def pipe():
    return SDSPipeline(**SMALL)


def test_a_do_nothing_cache_reproduces_the_baseline_exactly(pipe):
    inputs = pipe.load_inputs()
    base = pipe.run(inputs)
    with Stack([Hash3D(retrieve_prob=0.0)]).applied(pipe):
        same = pipe.run(inputs)
    assert torch.equal(base.renders, same.renders) and base.losses == same.losses
    assert psnr(base.renders, same.renders) == float("inf")
    assert "forward" not in pipe.unet.__dict__


def test_the_cache_hits_in_an_sds_loop(pipe):
    inputs = pipe.load_inputs()
    base = pipe.run(inputs, iterations=12)
    # one bucket, always retrieving: the first step fills the table and every later step reuses it
    hash3d = Hash3D(retrieve_prob=1.0, num_buckets=1, check_every=1)
    with Stack([hash3d]).applied(pipe):
        cached = pipe.run(inputs, iterations=12)
    stats = hash3d.stats()
    assert hash3d.history == [0] + [1] * 11
    assert stats["calls"] == 12 and stats["hits"] == 11 and stats["full_elements"] == 1 and stats["table_entries"] == 1
    assert stats["hit_rate"] == 11 / 12 and stats["partial_elements"] == 11
    assert stats["checks"] == 22  # check_every=1: both CFG halves of every hit are checked against a full forward
    # a reused prediction is no recomputation, yet stays close to one (cosine measured 0.78 on the random-init
    # tiny U-Net, reusing across random poses and timesteps; relative L2 0.67)
    assert stats["check_rel_l2"] > 0.01 and stats["check_cosine"] > 0.7
    assert torch.isfinite(cached.renders).all() and not torch.equal(base.renders, cached.renders)
    assert len(cached.unet_steps) == 12 and cached.timings["unet_s"] == sum(cached.unet_steps)
    assert cached.timings["total_s"] >= cached.timings["unet_s"]


def test_a_local_zero123_style_unet_folder(tmp_path):
    build_unet("tiny", seed=2, in_channels=8).save_pretrained(tmp_path / "unet")
    with pytest.raises(ValueError, match=r"^reference: backbone .* is an image-conditioned U-Net \(8 input channels"):
        SDSPipeline(**{**SMALL, "backbone": str(tmp_path), "iterations": 3}).load_inputs()
    torch.save(torch.randn(1, 4, 16, 16), tmp_path / "latent.pt")
    pipe = SDSPipeline(**{**SMALL, "backbone": str(tmp_path), "iterations": 3, "reference": str(tmp_path / "latent.pt")})
    inputs = pipe.load_inputs()
    assert inputs.image_latent is not None and pipe.latent_channels == 4
    hash3d = Hash3D(retrieve_prob=1.0, num_buckets=1)
    with Stack([hash3d]).applied(pipe):
        result = pipe.run(inputs)
    assert result.renders.shape[1] == 4 and hash3d.history == [0, 1, 1]  # one bucket: every call after the first reuses


def test_bad_pipeline_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone"):
        SDSPipeline(backbone=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="t_range"):
        SDSPipeline(t_range=(0.9, 0.1))
    with pytest.raises(ValueError, match="iterations"):
        SDSPipeline(iterations=0)
    bad = tmp_path / "emb.pt"
    torch.save(torch.zeros(2, 7, 3), bad)
    with pytest.raises(ValueError, match="embeddings"):
        SDSPipeline(embeddings=str(bad), **SMALL).load_inputs()


def test_accel3d_run_sds_writes_renders_meshes_and_a_report(tmp_path):
    out = tmp_path / "run"
    args = ["pipeline=sds", "stack=hash3d", "pipeline.backbone=tiny", "pipeline.iterations=6", "pipeline.latent_size=16"]
    args += ["pipeline.grid_resolution=16"]
    args += ["stack.accelerators.hash3d.num_buckets=1", "stack.accelerators.hash3d.retrieve_prob=1.0"]  # steps 2..6 reuse
    args += ["pipeline.progress=false", "repeats=1", f"hydra.run.dir={out}"]
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", "run", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unet s" in proc.stdout and "hash3d.hit_rate" in proc.stdout and "psnr_db" in proc.stdout
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "completed" and set(record["runs"]) == {"baseline", "hash3d"}
    row = record["runs"]["hash3d"]
    stats = row["stats"]["hash3d"]
    assert stats["calls"] == 6 and stats["hits"] == 5 and stats["full_elements"] == 1 and set(row["speedups"]) >= {"total_s", "unet_s"}
    assert row["summary"]["hash3d"]["hit_rate"] == stats["hit_rate"] == 5 / 6
    # the ceiling follows from the hit rate and the measured full/partial costs per element
    hit, cost = stats["hit_rate"], (stats["partial_s"] / stats["partial_elements"]) / (stats["full_s"] / stats["full_elements"])
    assert row["ceilings"]["hash3d"]["ceiling"] == pytest.approx(1.0 / ((1.0 - hit) + hit * cost))
    assert row["work_ratio"] == row["ceilings"]["hash3d"]["ceiling"]  # the stack's only accelerator
    # the reuse changes the result, and keeps it close (32.4 dB measured)
    assert row["fidelity"]["identical_renders"] == 0.0 and row["fidelity"]["psnr_db"] > 25.0
    with Image.open(out / "turntable.png") as png, Image.open(out / "turntable.gif") as gif:
        assert png.format == "PNG" and gif.format == "GIF" and gif.n_frames == 8  # the pipeline's turntable_views
    assert not list(out.glob("*.part"))


def test_a_stack_for_another_pipeline_is_refused_with_a_hint(tmp_path):
    args = ["run", "pipeline=sds", "stack=hierarchical", "pipeline.iterations=1", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "targets stage(s) ['volume_decoder'], which pipeline 'sds' does not have" in proc.stderr
    assert "stack=hash3d" in proc.stderr


def test_identical_renders_are_recorded_as_100_db_and_flagged_identical(pipe):
    inputs = pipe.load_inputs()
    base = pipe.run(inputs)
    assert pipe.fidelity(base, base) == {"psnr_db": 100.0, "identical_renders": 1.0}
