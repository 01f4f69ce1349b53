"""The benchmarks end to end on tiny settings: ``accel3d bench decoding``, ``kernels`` and ``caching``."""

import json
import subprocess
import sys


def accel3d(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_bench_decoding_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = accel3d(
        "bench",
        "decoding",
        "--subjects",
        "sphere",
        "model",
        "--resolutions",
        "32",
        "--sdf-min-resolution",
        "8",
        "--min-resolution",
        "8",
        "--repeats",
        "1",
        "--warmup-resolution",
        "8",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    sphere, model = json.loads(out.read_text())["results"]
    assert sphere["subject"] == "sdf:sphere" and sphere["levels"] == [8, 16, 32]
    assert list(sphere["methods"]) == ["hierarchical"]  # no attention to select keys in
    hier = sphere["methods"]["hierarchical"]
    assert hier["iou_vs_dense"] == 1.0 and hier["queries"] < sphere["dense_queries"]
    assert list(model["methods"]) == ["hierarchical", "hier+kv_mean", "hier+kv_merge"]
    kv = model["methods"]["hier+kv_mean"]
    assert kv["queries"] < model["dense_queries"] and 0 < kv["key_fraction"] < 1
    assert kv["speedup_vs_hierarchical"] > 0 and 0 <= kv["iou_vs_dense"] <= 1
    assert "vs hier" in proc.stdout and str(out) in proc.stdout


def test_bench_kernels_smoke(tmp_path):
    out = tmp_path / "kernels.json"
    proc = accel3d(
        "bench",
        "kernels",
        "--queries",
        "512",
        "--keys",
        "48",
        "--rows",
        "256",
        "--channels",
        "8",
        "--repeats",
        "1",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    rows = json.loads(out.read_text())["results"]
    assert {r["kernel"] for r in rows} == {"packed_sparse_attention", "gather_rows", "scatter_add_rows", "scatter_max_rows"}
    assert all(r["seconds"] > 0 for r in rows if "skipped" not in r)
    assert "torch reference" in proc.stdout


def test_bench_caching_smoke(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "caching", "--sections", "tiny", "--tiny-iterations", "8", "--repeats", "1", "--calibration-repeats", "1"]
    args += ["--check-every", "1", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["tiny"]["rows"]}
    assert {"hash3d (paper settings)", "fixed grid 10", "noise caching", "temporal only (DeepCache-style)"} <= set(rows)
    assert report["tiny"]["calibration"]["full_s"] > 0 and report["tiny"]["calibration"]["partial_s"] > 0
    for r in rows.values():
        assert r["speedup_total"] > 0 and 0.0 <= r["hit_rate"] <= 1.0 and 0.0 <= r["hash_overhead"] < 1.0
    assert rows["exact cells"]["cross_cell_share"] == 0.0
    assert "| method | end-to-end | U-Net only |" in proc.stdout
