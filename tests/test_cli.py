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
    # peak memory beside every stage's time, named by its measure
    assert record["peak_memory_measure"] == "process_peak_rss" and "decode peak MiB" in proc.stdout
    peaks = [runs[name]["peak_memory_bytes"] for name in ("baseline", "hierarchical")]
    assert all(set(p) == {"encode_s", "decode_s", "surface_s", "total_s"} for p in peaks)
    assert all(p["total_s"] == max(p["encode_s"], p["decode_s"], p["surface_s"]) > 50 * 2**20 for p in peaks)
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
    assert "guidance_scale: expected a finite number >= 0" in proc.stderr and ", got nan" in proc.stderr
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


# ---------------------------------------------------------------- output folders checked before the work


@pytest.mark.parametrize(("sweep", "knob"), [([], "hydra.run.dir"), (["-m", "stack=none,hierarchical"], "hydra.sweep.dir")])
def test_an_output_folder_under_a_file_is_refused_in_one_line_before_any_work(tmp_path, tiny_weights, sweep, knob):
    (tmp_path / "taken").write_text("a file, where a folder is needed")
    out = tmp_path / "taken" / "run"
    proc = accel3d("run", *sweep, f"pipeline.weights={tiny_weights}", *TINY, f"{knob}={out}", cwd=tmp_path, ok=False)
    assert proc.stderr.strip() == (
        f"accel3d run: {knob}: cannot write to '{out}': '{tmp_path / 'taken'}' is a file, not a folder; choose another with {knob}=FOLDER"
    )
    assert not list(tmp_path.rglob("record.json")) and not proc.stdout


@pytest.mark.parametrize(("args", "knob", "folder"), [([], "hydra.run.dir", "outputs"), (["-m"], "hydra.sweep.dir", "multirun")])
def test_a_read_only_working_directory_is_refused_naming_the_knob(tmp_path, monkeypatch, args, knob, folder):
    """Root writes anywhere, so the test makes os.access (what the check asks) say no for the working directory."""
    from accel3d.cli import _main

    real_access = os.access
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # `accel3d run` sets it for Hydra
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.path.abspath(p) != str(tmp_path) and real_access(p, mode, **kw))
    with pytest.raises(SystemExit) as info:
        _main(["run", *args, "repeats=0"])  # repeats=0 would fail the job at once, were the folder not refused first
    message = str(info.value)
    assert message.startswith(f"accel3d run: {knob}: cannot write to '{folder}': the working directory '{tmp_path}'"), message
    assert message.endswith(f"is not writable; choose another with {knob}=FOLDER") and "\n" not in message
    assert not (tmp_path / folder).exists()


def _completed_record(folder):
    folder.mkdir(parents=True)
    record = {
        "status": "completed",
        "pipeline": "vecset_shape",
        "stack": "hierarchical",
        "accelerators": ["hierarchical"],
        "headline": {"timing": "decode_s", "fidelity_metric": "iou", "higher_is_better": True},
        "runs": {"hierarchical": {"timings": {"decode_s": {"median": 2.0}}, "speedups": {"decode_s": 4.0}, "fidelity": {"iou": 0.99}}},
    }
    (folder / "record.json").write_text(json.dumps(record))


def test_a_report_folder_that_cannot_be_written_is_refused_before_reading(tmp_path, monkeypatch):
    from accel3d.cli import _main

    _completed_record(tmp_path / "runs" / "a")
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit) as info:
        _main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "taken" / "report")])
    taken = tmp_path / "taken"
    assert str(info.value) == f"accel3d report: --out: cannot write to '{taken / 'report'}': '{taken}' is a file, not a folder"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.path.abspath(p) != str(tmp_path / "runs") and real_access(p, mode, **kw))
    with pytest.raises(SystemExit) as info:
        _main(["report", str(tmp_path / "runs")])
    assert str(info.value) == f"accel3d report: --out (default: DIR): cannot write to '{tmp_path / 'runs'}': it is not writable"
    assert not list(tmp_path.rglob("report.*"))


# ---------------------------------------------------------------- one line for every error that names the user's input


def _one_line(proc, start):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and lines and lines[-2].startswith(start), proc.stderr[-3000:]
    assert lines[-1].startswith("(the failed record is in ") and "HYDRA_FULL_ERROR=1" in lines[-1]
    return lines


def _file(folder, name, data):
    path = folder / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif data is not None:
        import numpy as np

        np.save(path, data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "start"),
    [
        ("bad.ply", b"not a mesh\n", "accel3d run: pipeline.input: could not read '"),
        ("missing.ply", None, "accel3d run: input: no file at '"),
        ("bad.pt", b"not a tensor file", "accel3d run: pipeline.input: '"),
        ("no_normals.npy", [[i / 64, (i % 8) / 8, 0.5] for i in range(64)], "accel3d run: pipeline.input: expected a (P, 6) point cloud"),
    ],
)
def test_a_bad_input_file_is_one_line_with_the_record(tmp_path, tiny_weights, name, data, start):
    path = _file(tmp_path, name, data)
    out = tmp_path / "run"
    args = [f"pipeline.weights={tiny_weights}", *TINY, f"pipeline.input={path}", f"hydra.run.dir={out}"]
    proc = accel3d("run", *args, cwd=tmp_path, ok=False)
    lines = _one_line(proc, start)
    assert str(path) in lines[-2] and str(out) in lines[-1]
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "failed" and "Traceback" in record["traceback"]


def test_an_impossible_resolution_is_one_line(tmp_path, tiny_weights):
    out = tmp_path / "run"
    args = ["stack=none", f"pipeline.weights={tiny_weights}", "pipeline.resolution=100000", *TINY[1:3], "preview=false"]
    proc = accel3d("run", *args, f"hydra.run.dir={out}", cwd=tmp_path, ok=False)
    assert "GiB, but only" in _one_line(proc, "accel3d run: resolution: a 100000^3 grid needs about")[-2]


def test_hydra_full_error_shows_the_traceback_of_a_user_error(tmp_path, tiny_weights):
    (tmp_path / "bad.ply").write_text("not a mesh\n")
    args = ["run", f"pipeline.weights={tiny_weights}", *TINY, f"pipeline.input={tmp_path / 'bad.ply'}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(
        [sys.executable, "-m", "accel3d.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "could not read" in proc.stderr


# A job whose work raises `error`: user errors in one line, bugs with their traceback (run in a subprocess, as accel3d run)
RAISING_JOB = """
import sys
import accel3d.jobs.run
def work(cfg, out_dir, parallel_jobs):
    raise {error}
accel3d.jobs.run._run = work
from accel3d.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(
    ("error", "one_line"),
    [
        ("FloatingPointError('sparse_block_attention: q contains NaN or inf; expected finite queries')", True),
        ("ValueError('level: 0.5 gives no surface; the density ranges over [0, 0.2]')", True),
        ("PermissionError(13, 'Permission denied', '/data/out/mesh.glb')", True),
        ("TypeError(\"unsupported operand type(s) for +: 'int' and 'str'\")", False),
        ("ValueError('operands could not be broadcast together with shapes (3,) (4,)')", False),
        ("RuntimeError('VecsetVAE.encode: these weights have no encoder')", False),
    ],
)
def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, error, one_line):
    out = tmp_path / "run"
    code = RAISING_JOB.format(error=error)
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", f"hydra.run.dir={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "failed" and "Traceback" in record["traceback"]
    if one_line:
        _one_line(proc, "accel3d run: ")
    else:
        assert "Traceback" in proc.stderr and error.split("(")[0] in proc.stderr, proc.stderr[-3000:]


def test_which_errors_are_the_users():
    import errno

    from accel3d.cli import user_facing
    from accel3d.core.validate import ArgumentError

    knobs = {"level", "pipeline.level", "input", "pipeline.input", "weights"}
    users = [
        ArgumentError("repeats: expected an integer >= 1, got 0"),
        ValueError("level: 0.5 gives no surface"),
        ValueError("pipeline.input: could not read 'x.ply'"),
        ValueError("--weights: not a checkpoint"),
        FileNotFoundError("input: no file at 'x.ply'"),
        NotADirectoryError("--out: cannot write to 'a/b'"),
        PermissionError(13, "Permission denied", "out/mesh.glb"),
        OSError(errno.ENOSPC, "No space left on device"),
        FloatingPointError("sds: the gradient holds 3 NaN or inf values"),
        MemoryError("resolution: a 4096^3 grid needs about 2000 GiB"),
    ]
    bugs = [
        TypeError("unsupported operand type(s) for +: 'int' and 'str'"),
        TypeError("level: expected a float"),  # a TypeError is a bug unless marked (ArgumentError)
        ValueError("not enough values to unpack (expected 2, got 1)"),
        ValueError("chunk: an internal shape mismatch"),  # names no knob of the command
        ValueError("invalid literal for int() with base 10: 'x'"),
        RuntimeError("input: something"),
        AttributeError("'NoneType' object has no attribute 'shape'"),
        KeyError("level"),
        OSError(errno.EIO, "Input/output error"),
    ]
    assert [e for e in users if not user_facing(e, knobs)] == []
    assert [e for e in bugs if user_facing(e, knobs)] == []
