"""`~` and `$VARS` in path knobs: expanded like a shell would, and errors name the expanded path."""

import subprocess
import sys

import pytest
import torch

from accel3d.core.io import expand_path, load_torch_file, path_origin
from accel3d.models.vecset.checkpoint import load_vae
from accel3d.models.vecset.vae import VecsetVAE


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.setenv("ACCEL3D_TEST_DATA", str(folder / "data"))
    monkeypatch.delenv("ACCEL3D_UNSET_VARIABLE", raising=False)
    return folder


def test_tilde_and_variables_expand(home):
    assert expand_path("~/models/x.pt", "weights") == home / "models" / "x.pt"
    assert expand_path("$HOME/x.pt", "weights") == home / "x.pt"
    assert expand_path("${ACCEL3D_TEST_DATA}/bunny.ply", "input") == home / "data" / "bunny.ply"
    assert expand_path("relative/x.pt", "weights").as_posix() == "relative/x.pt"
    assert path_origin("~/x") == " (from '~/x')" and path_origin("/abs/x") == "" and path_origin("./x") == ""


def test_an_unset_variable_names_the_knob(home):
    message = r"weights: environment variable ACCEL3D_UNSET_VARIABLE is not set \(in '\$ACCEL3D_UNSET_VARIABLE/x.pt'\)"
    with pytest.raises(ValueError, match=message):
        expand_path("$ACCEL3D_UNSET_VARIABLE/x.pt", "weights")
    with pytest.raises(ValueError, match="environment variable ACCEL3D_UNSET_VARIABLE is not set"):
        expand_path("${ACCEL3D_UNSET_VARIABLE}/x.pt", "input")


def test_a_missing_tilde_path_fails_naming_the_expanded_path(home):
    with pytest.raises(FileNotFoundError, match=f"weights: no weights file at '{home}/models/x.pt' \\(from '~/models/x.pt'\\)"):
        load_vae("~/models/x.pt")
    with pytest.raises(FileNotFoundError, match=f"input: no file at '{home}/data/latents.pt' \\(from '\\$ACCEL3D_TEST_DATA/latents.pt'\\)"):
        load_torch_file("$ACCEL3D_TEST_DATA/latents.pt", "input")


def test_paths_under_home_load(home, tiny_config):
    (home / "models").mkdir()
    torch.manual_seed(0)
    VecsetVAE(tiny_config).save(home / "models" / "tiny.pt")
    assert load_vae("~/models/tiny.pt").config == tiny_config
    assert load_vae("$HOME/models/tiny.pt").config == tiny_config
    torch.save(torch.zeros(2, 3), home / "t.pt")
    assert load_torch_file("~/t.pt", "embeddings").shape == (2, 3)


def test_input_mesh_and_unet_folder(home):
    from accel3d.geometry.meshes import BUNDLED_MESH
    from accel3d.models.sds.unets import build_unet
    from accel3d.models.vecset.pipeline import load_shape_inputs

    (home / "data").mkdir()
    (home / "data" / "bunny.ply").write_bytes(BUNDLED_MESH.read_bytes())
    assert load_shape_inputs("$ACCEL3D_TEST_DATA/bunny.ply", 64).source == str(home / "data" / "bunny.ply")
    with pytest.raises(FileNotFoundError, match=f"input: no file at '{home}/data/cow.ply' \\(from '~/data/cow.ply'\\)"):
        load_shape_inputs("~/data/cow.ply", 64)
    with pytest.raises(FileNotFoundError, match=f"backbone: .*got '{home}/sd' \\(from '~/sd'\\) \\(not a folder\\)"):
        build_unet("~/sd")


def test_the_command_line_names_the_expanded_path(home, tmp_path):
    # `$HOME` inside a quoted override reaches accel3d unexpanded by the shell; accel3d expands it.
    args = ["run", "stack=none", "pipeline.weights=$HOME/models/x.pt", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(
        [sys.executable, "-m", "accel3d.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert f"weights: no weights file at '{home}/models/x.pt' (from '$HOME/models/x.pt')" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize(
    "how",
    [
        ['pipeline.weights="~/models/x.pt"'],  # quoted on the command line: Hydra passes the ~ on
        ["pipeline.weights=$HOME/models/x.pt"],  # quoted, so the shell left $HOME alone
        "yaml",  # written in a config file
    ],
)
def test_a_config_value_with_tilde_or_a_variable_fails_with_the_expanded_path(home, how):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from accel3d.core.validate import ArgumentError
    from accel3d.jobs.configs import config_dir
    from accel3d.jobs.run import prepare_job

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("run", overrides=["stack=none"] + ([] if how == "yaml" else how))
    if how == "yaml":
        cfg = OmegaConf.merge(cfg, OmegaConf.create("pipeline:\n  weights: ~/models/x.pt\n"))
    with pytest.raises(ArgumentError, match=f"pipeline: weights: no weights file at '{home}/models/x.pt' \\(from '"):
        prepare_job(cfg)
