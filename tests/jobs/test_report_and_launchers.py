"""`accel3d report` over run records, and 2x2 sweeps on Hydra's launchers (basic, joblib, submitit_local, ray)."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from accel3d.jobs.report import collect, pareto_front, write_report

TINY = ["pipeline.resolution=32", "pipeline.num_points=256", "pipeline.progress=false", "stack.accelerators.hierarchical.min_resolution=8"]
QUIET = ["preview=false", "export_formats=[]", "repeats=1", "warmup=false"]


def accel3d(*args, cwd, ok=True, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


def test_pareto_front():
    pts = [(1.0, 1.0), (2.0, 0.99), (3.0, 0.9), (2.5, 0.8), (1.5, 0.95)]
    assert pareto_front(pts) == [(1.0, 1.0), (2.0, 0.99), (3.0, 0.9)]
    assert pareto_front([(1.0, 0.1), (2.0, 0.3), (3.0, 0.2)], higher_is_better=False) == [(1.0, 0.1), (3.0, 0.2)]


def test_report_on_an_empty_folder_and_on_corrupt_records(tmp_path):
    proc = accel3d("report", str(tmp_path), cwd=tmp_path, ok=False)
    assert "no record.json under" in proc.stderr
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "record.json").write_text("{not json")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "record.json").write_text('{"something": 1}')
    proc = accel3d("report", str(tmp_path), cwd=tmp_path)
    assert "2 unreadable" in proc.stdout and "skipped unreadable record" in proc.stderr
    md = (tmp_path / "report.md").read_text()
    assert "## 2 job(s) unreadable records (skipped)" in md and "JSONDecodeError" in md and "no 'status'" in md
    assert not collect(tmp_path).completed


def _sweep(tmp_path, weights, launcher=(), name="sweep"):
    sweep = tmp_path / name
    args = ["run", "-m", "stack=none,hierarchical", "pipeline.resolution=64,96", f"pipeline.weights={weights}", *TINY[1:3]]
    accel3d(*args, *QUIET, *launcher, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    return sweep


def _report_rows(folder):
    with open(folder / "report.csv") as fh:
        return list(csv.DictReader(fh))


def _check_2x2(tmp_path, sweep, parallel):
    rows = _report_rows(sweep)  # written by the sweep callback
    assert sorted((r["stack"], r["resolution"]) for r in rows) == [
        ("hierarchical", "64"),
        ("hierarchical", "96"),
        ("none", "64"),
        ("none", "96"),
    ]
    assert {r["parallel_jobs"] for r in rows} == {str(parallel)}
    for r in rows:  # the speedup is the ratio of the medians the job recorded
        runs = json.loads((Path(r["path"]) / "record.json").read_text())["runs"]
        base = runs["baseline"]["timings"][r["timing"]]["median"]
        assert float(r[f"baseline_{r['timing']}"]) == base
        if r["stack"] == "hierarchical":
            assert float(r["speedup"]) == pytest.approx(base / runs["hierarchical"]["timings"][r["timing"]]["median"])
        else:
            assert r["speedup"] == "1.0" and set(runs) == {"baseline"}
    (sweep / "report.csv").unlink()
    proc = accel3d("report", str(sweep), cwd=tmp_path)  # the same code, run by hand
    assert "4 completed, 0 failed" in proc.stdout and len(_report_rows(sweep)) == 4
    md = (sweep / "report.md").read_text()
    assert md.count("| hierarchical |") == 2 and md.count("| none |") == 2
    assert (sweep / "speed_vs_fidelity.png").stat().st_size > 10_000


def test_a_2x2_sweep_with_the_basic_launcher_and_the_report(tmp_path, tiny_weights):
    _check_2x2(tmp_path, _sweep(tmp_path, tiny_weights), parallel=1)


def test_a_2x2_sweep_with_joblib(tmp_path, tiny_weights):
    sweep = _sweep(tmp_path, tiny_weights, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    _check_2x2(tmp_path, sweep, parallel=2)
    record = json.loads(next(sweep.rglob("record.json")).read_text())
    cores = len(os.sched_getaffinity(0))
    assert record["environment"]["threads"] == max(1, cores // 2) and record["timings_comparable"] is False  # 2 jobs share the cores


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None, reason="pip install hydra-submitit-launcher")
def test_a_2x2_sweep_with_submitit_local(tmp_path, tiny_weights):
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    _check_2x2(tmp_path, _sweep(tmp_path, tiny_weights, launcher), parallel=4)  # it starts all four at once


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason='pip install -e ".[ray]" (hydra-ray-launcher)'
)
def test_a_2x2_sweep_with_ray(tmp_path, tiny_weights):
    _check_2x2(tmp_path, _sweep(tmp_path, tiny_weights, ["hydra/launcher=ray"]), parallel=1)


def test_report_over_several_sweeps_and_pipelines(tmp_path, tiny_weights):
    _sweep(tmp_path, tiny_weights, name="decoding")
    out = tmp_path / "sds"
    accel3d(
        "run",
        "pipeline=sds",
        "stack=hash3d",
        "pipeline.backbone=tiny",
        "pipeline.iterations=3",
        "pipeline.latent_size=16",
        "pipeline.grid_resolution=16",
        "pipeline.progress=false",
        *QUIET,
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    written = write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Records from 2 pipelines (sds, vecset_shape): one table each." in md and "## sds" in md and "## vecset_shape" in md
    assert [p.name for p in written] == ["report.csv", "report.md", "speed_vs_fidelity.png"]
    rows = _report_rows(tmp_path)
    assert {r["fidelity_metric"] for r in rows} == {"iou", "psnr_db"} and len(rows) == 5


def test_a_killed_job_shows_as_running_and_a_missing_one_as_missing(tmp_path, tiny_weights):
    sweep = _sweep(tmp_path, tiny_weights)
    records = sorted(sweep.glob("*/record.json"))
    killed = json.loads(records[0].read_text())
    killed["status"] = "running"
    records[0].write_text(json.dumps(killed))
    records[1].unlink()
    found = collect(sweep)
    assert len(found.completed) == 2 and len(found.running) == 1 and len(found.missing) == 1
    assert "job 1 (stack=none pipeline.resolution=96" in found.missing[0]
    write_report(sweep)
    md = (sweep / "report.md").read_text()
    assert "## 1 job(s) still running or killed" in md and "## 1 job(s) missing from their sweep" in md


def test_records_in_nested_sweep_subfolders_belong_to_their_sweep(tmp_path, tiny_weights):
    sweep = tmp_path / "nested"
    args = ["run", "-m", "stack=none,hierarchical", "pipeline.resolution=64", f"pipeline.weights={tiny_weights}", *TINY[1:3], *QUIET]
    accel3d(*args, "hydra.sweep.subdir=${hydra.job.num}/${hydra:runtime.choices.stack}", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    found = collect(sweep)
    assert len(found.completed) == 2 and not found.missing and not found.stale


def test_an_unknown_fidelity_figure_is_refused(tmp_path, tiny_weights):
    sweep = _sweep(tmp_path, tiny_weights)
    proc = accel3d("report", str(sweep), "--fidelity", "ioo", cwd=tmp_path, ok=False)
    assert "--fidelity: no record has a fidelity figure 'ioo'; the records have ['chamfer', 'fscore', 'iou']" in proc.stderr
    accel3d("report", str(sweep), "--fidelity", "chamfer", cwd=tmp_path)
    assert {r["higher_is_better"] for r in _report_rows(sweep) if r["fidelity"]} == {"False"}
