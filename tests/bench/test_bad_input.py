"""Bad benchmark options are refused before any work, and benchmarks never overwrite committed results unasked."""

import json
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
