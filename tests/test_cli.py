"""The command line: ``accel3d run`` end to end on a tiny config, and its errors (unknown names, bad or
misspelled knobs) said at once and naming what is wrong."""

import json
import os
import subprocess
import sys

import pytest
import trimesh

# a random-weight VAE has no ramp between 8^3 samples, so the default rule would decode it densely: the field-unit rule here
TINY = [
    "pipeline.resolution=32",
    "pipeline.num_points=256",
    "pipeline.progress=false",
    "stack.accelerators.hierarchical.min_resolution=8",
    "stack.accelerators.hierarchical.band_units=field",
    "stack.accelerators.hierarchical.band=0.3",
]


def accel3d(*args, cwd, ok=True):
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


def test_default_run_on_a_tiny_config_writes_everything(tmp_path, tiny_weights):
    out = tmp_path / "run"
    proc = accel3d("run", f"pipeline.weights={tiny_weights}", *TINY, "repeats=2", f"hydra.run.dir={out}", cwd=tmp_path)
    assert "baseline" in proc.stdout and "hierarchical" in proc.stdout and "iou" in proc.stdout and "±" in proc.stdout
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "completed" and record["seed"] == 0
    runs = record["runs"]
    assert set(runs) == {"baseline", "hierarchical"}
    hier = runs["hierarchical"]
    assert len(hier["timings"]["decode_s"]["repeats"]) == 2 and runs["baseline"]["repeats"] == 2
    dense_queries = runs["baseline"]["figures"]["queries"]
    assert dense_queries == 33**3  # every lattice point of the 32^3 grid
    assert hier["figures"]["queries"] < dense_queries and hier["stats"]["hierarchical"]["calls"] == 1
    fraction = hier["summary"]["hierarchical"]["query_fraction"]
    assert fraction == pytest.approx(hier["figures"]["queries"] / dense_queries)
    assert abs(hier["ceilings"]["hierarchical"]["ceiling"] - 1 / fraction) < 1e-9
    env = record["environment"]
    assert env["versions"]["torch"] and env["device"] and len(env["load_average"]) == 3
    assert env["threads"] == len(os.sched_getaffinity(0)) and env["parallel_jobs"] == 1  # threads=null: all the cores
    # each export is the decoded mesh, the baseline's is the baseline's
    for name in ["mesh.glb", "mesh.ply", "mesh.obj"]:
        assert len(trimesh.load(out / name, force="mesh", process=False).faces) == hier["figures"]["faces"], name
    assert len(trimesh.load(out / "mesh_baseline.glb", force="mesh", process=False).faces) == runs["baseline"]["figures"]["faces"]
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.part"))


def test_flashvdm_stack_reports_keys_per_query(tmp_path, tiny_weights):
    out = tmp_path / "run"
    proc = accel3d(
        "run",
        "stack=flashvdm_mean",
        "stack.accelerators.adaptive_kv.topk=4",
        f"pipeline.weights={tiny_weights}",
        *TINY,
        "repeats=1",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert "adaptive_kv.keys_per_query" in proc.stdout
    stats = json.loads((out / "record.json").read_text())["runs"]["flashvdm_mean"]["stats"]
    assert stats["adaptive_kv"]["keys_per_query"] == 4 and stats["hierarchical"]["calls"] == 1


def test_unknown_stack_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "accel3d.cli", "run", "stack=nope"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "Could not find 'stack/nope'" in proc.stderr and "hierarchical" in proc.stderr


def test_unknown_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown command 'frobnicate'" in proc.stderr


def test_a_nan_knob_on_the_command_line_names_it(tmp_path):
    proc = accel3d("run", "pipeline=sds", "stack=hash3d", "pipeline.guidance_scale=nan", cwd=tmp_path, ok=False)
    assert "guidance_scale: expected a finite number >= 0, got nan" in proc.stderr
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("record.json")]
    assert [r["status"] for r in records] == ["failed"] and "guidance_scale" in records[0]["error"]


@pytest.mark.parametrize(
    ("override", "valid"),
    [
        ("stack.accelerators.hierarchical.bandd=0.3", "band, band_units, chunk_size, dilation, enabled, max_memory_bytes, min_resolution"),
        ("pipeline.resolutoin=64", "chunk_size, fscore_threshold, input"),
    ],
)
def test_a_misspelled_knob_fails_at_once_naming_the_valid_ones(tmp_path, override, valid):
    import time

    start = time.perf_counter()
    proc = accel3d("run", "-m", "stack=hierarchical,flashvdm", override, cwd=tmp_path, ok=False)
    assert time.perf_counter() - start < 5
    assert "has no knob" in proc.stderr and valid in proc.stderr
    assert not list(tmp_path.rglob("record.json"))


def test_an_experiment_picks_the_pipeline_whose_knobs_are_checked(tmp_path):
    from accel3d.cli import _chosen

    assert _chosen("pipeline", ["+experiment=caching_ablation"]) == "sds"
    assert _chosen("pipeline", []) == "vecset_shape" and _chosen("pipeline", ["pipeline=sds"]) == "sds"
    assert _chosen("stack", ["+experiment=decoding_onoff"]) == "flashvdm" and _chosen("stack", []) == "hierarchical"


def test_a_knob_of_an_accelerator_under_another_key_is_checked_against_its_declaration(tmp_path):
    from accel3d.cli import _accelerator_names

    assert _accelerator_names(["stack=none", "+accelerator@stack.accelerators.h2=hierarchical"]) == {"h2": "hierarchical"}
    assert _accelerator_names(["stack=flashvdm"]) == {"hierarchical": "hierarchical", "adaptive_kv": "adaptive_kv"}
    args = ["run", "stack=none", "+accelerator@stack.accelerators.h2=hierarchical", "stack.accelerators.h2.bnd=1"]
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "accelerator 'hierarchical' has no knob 'bnd'; its knobs are band," in proc.stderr


def test_a_bare_tilde_in_a_path_value_is_expanded_before_hydra_sees_it(tmp_path):
    # Hydra's override parser refuses `~` in an unquoted value; accel3d run expands it as a shell would
    env_home = tmp_path / "home"
    env_home.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "accel3d.cli", "run", "pipeline.weights=~/models/missing.pt", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOME": str(env_home)},
    )
    assert proc.returncode != 0
    assert f"weights: no weights file at '{env_home}/models/missing.pt'" in proc.stderr, proc.stderr[-2000:]
    assert "LexerNoViableAlt" not in proc.stderr
