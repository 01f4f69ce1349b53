"""Bad benchmark options are refused before any work, and benchmarks never overwrite committed results unasked."""

import json
import os
import subprocess
import sys

import pytest

from accel3d.bench.caching import merge_sections
from accel3d.bench.decoding import merge_results


def accel3d(*args, cwd, ok=True):
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


def test_bench_writes_to_an_output_folder_by_default(tmp_path):
    accel3d("bench", "kernels", "--queries", "256", "--keys", "32", "--rows", "64", "--channels", "4", "--repeats", "1", cwd=tmp_path)
    written = list((tmp_path / "outputs" / "bench").rglob("kernels.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["results"]


def test_saving_one_section_keeps_the_other_committed_sections():
    saved = {"created": "old", "args": {"sections": ["tiny", "sd21"]}, "tiny": {"x": 1}, "sd21": {"y": 2}}
    new = {"created": "new", "args": {"sections": ["tiny"]}, "tiny": {"x": 3}}
    merged = merge_sections(saved, new)
    assert merged["tiny"] == {"x": 3} and merged["sd21"] == {"y": 2} and merged["created"] == "new"
    rows = merge_results(
        {"results": [{"subject": "model", "resolution": 128, "v": 1}, {"subject": "model", "resolution": 256, "v": 2}]},
        {"meta": {}, "results": [{"subject": "model", "resolution": 256, "v": 3}]},
    )["results"]
    assert sorted((r["resolution"], r["v"]) for r in rows) == [(128, 1), (256, 3)]


def test_bench_options_are_checked_before_any_work(tmp_path):
    for args, match in [
        (["kernels", "--repeats", "0"], "--repeats: expected an integer >= 1"),
        (["decoding", "--fscore-threshold", "nan"], "--fscore-threshold: expected a finite number > 0"),
        (["kernels", "--heads", "0"], "--heads: expected an integer >= 1"),
    ]:
        proc = accel3d("bench", *args, cwd=tmp_path, ok=False)
        assert match in proc.stderr, proc.stderr[-500:]
    (tmp_path / "folder").mkdir()
    proc = accel3d("bench", "kernels", "--out", str(tmp_path / "folder"), cwd=tmp_path, ok=False)
    assert "is a folder" in proc.stderr and not list(tmp_path.rglob("*.json"))


def test_bench_decoding_refuses_an_override_no_stack_takes():
    from accel3d.bench.stacks import check_overrides

    check_overrides("--set", ["stack.accelerators.hierarchical.band=2.5"], ["hierarchical", "flashvdm"])
    with pytest.raises(SystemExit, match=r"--set: \['stack.accelerators.hierarchcal.band=1'\] set\(s\) no accelerator"):
        check_overrides("--set", ["stack.accelerators.hierarchcal.band=1"], ["hierarchical"])
    with pytest.raises(SystemExit, match="band=1"):
        check_overrides("--set", ["band=1"], ["hierarchical"])


# ---------------------------------------------------------------- output folders checked before the work


def test_an_out_folder_under_a_file_is_refused_before_the_benchmark_runs(tmp_path):
    (tmp_path / "taken").write_text("a file, where a folder is needed")
    out = tmp_path / "taken" / "kernels.json"
    small = ["--queries", "256", "--keys", "32", "--rows", "64", "--channels", "4", "--repeats", "1"]
    proc = accel3d("bench", "kernels", *small, "--out", str(out), cwd=tmp_path, ok=False)
    assert proc.stderr.strip() == f"--out: cannot write to '{out.parent}': '{out.parent}' is a file, not a folder"
    assert "device:" not in proc.stdout  # the benchmark never started


def _unwritable(monkeypatch, folder):
    """Root writes anywhere: make os.access, which the check asks, say no for ``folder``."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.path.abspath(p) != str(folder) and real_access(p, mode, **kw))


def test_a_read_only_out_folder_is_refused_at_once(tmp_path, monkeypatch):
    from accel3d.bench import output_path
    from accel3d.bench.options import parser

    (tmp_path / "ro").mkdir()
    _unwritable(monkeypatch, tmp_path / "ro")
    args = parser("kernels").parse_args(["--out", str(tmp_path / "ro" / "sub" / "k.json")])
    with pytest.raises(SystemExit) as info:
        output_path(args, "kernels")
    ro = tmp_path / "ro"
    assert str(info.value) == f"--out: cannot write to '{ro / 'sub'}': '{ro}', where it would be created, is not writable"
    monkeypatch.chdir(tmp_path / "ro")  # the default --out: outputs/bench/... in a read-only working directory
    with pytest.raises(SystemExit, match=r"^--out \(default\): cannot write to 'outputs/bench/.*': the working directory '.*ro'"):
        output_path(parser("kernels").parse_args([]), "kernels")


def test_save_results_without_a_writable_results_folder_is_refused_before_the_work(tmp_path, monkeypatch):
    import accel3d.bench as bench
    from accel3d.bench.options import parser

    args = parser("decoding").parse_args(["--out", str(tmp_path / "d.json"), "--save-results"])
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path / "no_such_checkout" / "docs" / "results")
    with pytest.raises(SystemExit, match=r"^--save-results: no docs/results/ folder at .*no_such_checkout"):
        bench.output_path(args, "decoding")
    (tmp_path / "results").mkdir()
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path / "results")
    assert bench.output_path(args, "decoding") == tmp_path / "d.json"
    _unwritable(monkeypatch, tmp_path / "results")
    with pytest.raises(SystemExit) as info:
        bench.output_path(args, "decoding")
    assert str(info.value) == f"--save-results: cannot write to '{tmp_path / 'results'}': it is not writable"


# ---------------------------------------------------------------- saved results keep the settings of the run that measured them


def _save(tmp_path, name, report, merge):
    import argparse

    import accel3d.bench as bench

    args = argparse.Namespace(out=tmp_path / "out" / f"{name}.json", save_results=True)
    bench.write_results(args, name, report, merge)
    return json.loads((tmp_path / f"bench_{name}.json").read_text())


def _run_of(saved, part):
    return saved["bench_runs"][part["bench_run"]]


def test_saved_rows_keep_the_settings_of_the_run_that_measured_them(tmp_path, monkeypatch):
    import accel3d.bench as bench

    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    row = lambda res, v: {"subject": "model", "resolution": res, "settings": {"band": 0.95}, "v": v}  # noqa: E731
    first = {
        "meta": {"created": "2026-01-01T10:00:00", "args": {"repeats": "3", "stack": "hierarchical"}},
        "results": [row(128, 1), row(256, 2)],
    }
    second = {"meta": {"created": "2026-02-01T10:00:00", "args": {"repeats": "5", "stack": "flashvdm"}}, "results": [row(256, 3)]}
    _save(tmp_path, "decoding", first, merge_results)
    saved = _save(tmp_path, "decoding", second, merge_results)
    by_res = {r["resolution"]: (r["v"], _run_of(saved, r)["args"]["stack"]) for r in saved["results"]}
    assert by_res == {128: (1, "hierarchical"), 256: (3, "flashvdm")}
    assert saved["meta"]["args"]["stack"] == "flashvdm"  # the top-level settings: the latest run's
    assert sorted(saved["bench_runs"]) == ["2026-01-01T10:00:00", "2026-02-01T10:00:00"]
    third = {"meta": {"created": "2026-03-01T10:00:00", "args": {"repeats": "5", "stack": "flashvdm_mean"}}, "results": [row(128, 4)]}
    saved = _save(tmp_path, "decoding", third, merge_results)
    assert sorted(saved["bench_runs"]) == ["2026-02-01T10:00:00", "2026-03-01T10:00:00"]  # no row left from the first run
    assert all(r["settings"] == {"band": 0.95} for r in saved["results"])  # the rows' own keys are untouched


def test_saved_sections_keep_the_settings_of_the_run_that_measured_them(tmp_path, monkeypatch):
    import accel3d.bench as bench

    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    first = {"created": "A", "torch_threads": 2, "args": {"sections": ["tiny", "sd21"], "seed": 0}, "tiny": {"x": 1}, "sd21": {"y": 2}}
    second = {"created": "B", "torch_threads": 4, "args": {"sections": ["tiny"], "seed": 7}, "tiny": {"x": 3}}
    _save(tmp_path, "caching", first, merge_sections)
    saved = _save(tmp_path, "caching", second, merge_sections)
    assert saved["tiny"]["x"] == 3 and saved["sd21"]["y"] == 2
    assert _run_of(saved, saved["tiny"]) == {"created": "B", "torch_threads": 4, "args": {"sections": ["tiny"], "seed": 7}}
    assert _run_of(saved, saved["sd21"]) == {"created": "A", "torch_threads": 2, "args": {"sections": ["tiny", "sd21"], "seed": 0}}


def test_a_results_file_saved_before_per_row_settings_keeps_its_settings_for_its_rows(tmp_path, monkeypatch):
    import accel3d.bench as bench

    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    legacy = {"meta": {"created": "old", "args": {"stack": "hierarchical"}}, "results": [{"subject": "sphere", "resolution": 64}]}
    (tmp_path / "bench_decoding.json").write_text(json.dumps(legacy))
    new = {"meta": {"created": "new", "args": {"stack": "flashvdm"}}, "results": [{"subject": "model", "resolution": 64}]}
    saved = _save(tmp_path, "decoding", new, merge_results)
    stacks = {r["subject"]: _run_of(saved, r)["args"]["stack"] for r in saved["results"]}
    assert stacks == {"sphere": "hierarchical", "model": "flashvdm"} and "note" in saved["bench_runs"]["saved old"]


# ---------------------------------------------------------------- errors that name the user's input: one line


@pytest.mark.parametrize(
    ("name", "data", "message"), [("missing.pt", None, "no weights file at"), ("bad.pt", b"garbage", "is not a readable")]
)
def test_a_bad_weights_file_is_one_line(tmp_path, name, data, message):
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    proc = accel3d("bench", "pruning", "--weights", str(path), "--out", str(tmp_path / "p.json"), cwd=tmp_path, ok=False)
    assert proc.stderr.strip().startswith("accel3d bench pruning: weights: ") and message in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
