import json
import subprocess
import sys

import trimesh

TINY = ["pipeline.resolution=32", "pipeline.num_points=256", "pipeline.progress=false", "stack.accelerators.hierarchical.min_resolution=8"]


def accel3d(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
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
    assert hier["figures"]["queries"] <= runs["baseline"]["figures"]["queries"]
    assert hier["stats"]["hierarchical"]["calls"] == 1
    fraction = hier["summary"]["hierarchical"]["query_fraction"]
    assert abs(hier["ceilings"]["hierarchical"]["ceiling"] - 1 / fraction) < 1e-9
    env = record["environment"]
    assert env["versions"]["torch"] and env["threads"] >= 1 and env["device"] and len(env["load_average"]) == 3
    for name in ["mesh.glb", "mesh.ply", "mesh.obj", "mesh_baseline.glb", "preview.png"]:
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob("*.part"))
    assert isinstance(trimesh.load(out / "mesh.ply", force="mesh"), trimesh.Trimesh)


def test_flashvdm_stack_reports_keys_per_query(tmp_path, tiny_weights):
    out = tmp_path / "run"
    proc = accel3d(
        "run",
        "stack=flashvdm",
        "stack.accelerators.adaptive_kv.topk=4",
        f"pipeline.weights={tiny_weights}",
        *TINY,
        "repeats=1",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert "adaptive_kv.keys_per_query" in proc.stdout
    stats = json.loads((out / "record.json").read_text())["runs"]["flashvdm"]["stats"]
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
