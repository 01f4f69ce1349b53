"""Named stacks from Python mean what the same name means on the command line; one-call apply and remove."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh

import accel3d
from accel3d.core import patch_owners
from accel3d.models.sds.unets import build_unet
from accel3d.models.vecset.pipeline import VecsetShapePipeline


def test_a_named_stack_from_python_matches_the_cli_bit_for_bit(tmp_path, tiny_weights):
    out = tmp_path / "run"
    args = ["run", f"pipeline.weights={tiny_weights}", "pipeline.resolution=32", "pipeline.num_points=256", "pipeline.progress=false"]
    args += ["stack.accelerators.hierarchical.min_resolution=8", "stack.accelerators.hierarchical.band=0.5", "repeats=1"]
    args += ["warmup=false", "preview=false", "export_formats=[ply]", f"hydra.run.dir={out}"]
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pipe = VecsetShapePipeline(weights=str(tiny_weights), resolution=32, num_points=256, progress=False)
    plain = pipe.run(pipe.load_inputs())
    stack = accel3d.apply(pipe, "hierarchical", min_resolution=8, band=0.5)
    fast = pipe.run(pipe.load_inputs())
    assert accel3d.remove(pipe) == 1 and not stack.attached and patch_owners(pipe) == []
    cli = trimesh.load(out / "mesh.ply", force="mesh", process=False)
    assert np.array_equal(np.asarray(cli.vertices, dtype=np.float32), fast.mesh.vertices.astype(np.float32))
    assert np.array_equal(np.asarray(cli.faces), fast.mesh.faces)
    assert torch.equal(pipe.run(pipe.load_inputs()).grid.values, plain.grid.values)  # removed: exact again


def test_load_stack_overrides_and_errors():
    flash = accel3d.load_stack("flashvdm", adaptive_kv={"topk": 8}, band=0.4)
    assert flash.names == ["hierarchical", "adaptive_kv"]
    assert flash.accelerators[1].selector.topk == 8 and flash.accelerators[0].decoder.band == 0.4
    with pytest.raises(ValueError, match=r"unknown stack 'nope'; expected one of \[.*'hierarchical'"):
        accel3d.load_stack("nope")
    with pytest.raises(ValueError, match=r"no accelerator of stack 'hierarchical' has a knob 'bandd'; its knobs are \['band'"):
        accel3d.load_stack("hierarchical", bandd=0.3)
    with pytest.raises(ValueError, match=r"'adaptive_kv' of stack 'flashvdm': unknown knob\(s\) \['top'\]; its knobs are \['attention'"):
        accel3d.load_stack("flashvdm", adaptive_kv={"top": 8})
    with pytest.raises(ValueError, match="band: expected a finite number > 0"):
        accel3d.load_stack("hierarchical", band=-1.0)


def test_load_stack_reads_numpy_scalars_and_0d_tensors_as_the_numbers_they_hold():
    for band in (np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float64)):
        stack = accel3d.load_stack("hierarchical", band=band)
        assert stack.accelerators[0].config.band == 0.5 and type(stack.accelerators[0].config.band) is float
        assert stack.accelerators[0].decoder.band == 0.5
    carving = accel3d.load_stack("token_carving", ratio=torch.tensor(0.25), warmup=np.int64(2), resolution=torch.tensor(32))
    config = carving.accelerators[0].config
    assert (config.ratio, config.warmup, config.resolution) == (0.25, 2, 32)
    assert (type(config.ratio), type(config.warmup), type(config.resolution)) == (float, int, int)
    for bad in (torch.tensor([0.5, 0.6]), torch.tensor([0.5]), torch.tensor(True), np.bool_(True)):
        with pytest.raises(ValueError, match="^band: expected a finite number > 0"):
            accel3d.load_stack("hierarchical", band=bad)
    with pytest.raises(ValueError, match="^warmup: expected an integer >= 0, got tensor"):
        accel3d.load_stack("token_carving", warmup=torch.tensor(2.0))


def test_apply_a_one_accelerator_stack_to_a_module():
    unet = build_unet("tiny", seed=0)
    stack = accel3d.apply(unet, "hash3d", retrieve_prob=0.0)
    assert stack.accelerators[0].attached and stack.accelerators[0].config.retrieve_prob == 0.0
    with pytest.raises(ValueError, match="apply it to a pipeline"):
        accel3d.apply(unet, "flashvdm")
    assert accel3d.remove(unet) == 1 and "forward" not in vars(unet)


def test_version_and_list(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "accel3d.cli", *a], capture_output=True, text=True, timeout=120)
    assert run("--version").stdout.strip() == f"accel3d {accel3d.__version__}"
    listing = run("list").stdout
    assert "vecset_shape" in listing and "stages: encoder, volume_decoder, geo_decoder" in listing
    assert "flashvdm               hierarchical, adaptive_kv" in listing and "stage denoiser; enabled=True" in listing
