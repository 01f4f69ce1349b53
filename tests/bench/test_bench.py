"""The benchmarks end to end on tiny settings: ``accel3d bench decoding``, ``kernels`` and ``caching``."""

import json
import subprocess
import sys

import pytest
import torch

from accel3d.bench.options import kernels_parser
from accel3d.bench.stacks import stack_configs
from accel3d.decoding import resolve_topk
from accel3d.geometry.mesh_fields import FIELD_FAMILIES


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
        "--sdf-set",
        "stack.accelerators.hierarchical.min_resolution=8",
        "--set",  # the shipped field does not ramp between 8^3 samples: the default rule would decode it densely
        "stack.accelerators.hierarchical.min_resolution=8",
        "stack.accelerators.hierarchical.band_units=field",
        "stack.accelerators.hierarchical.band=0.3",
        "--repeats",
        "1",
        "--warmup-resolution",
        "8",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    report = json.loads(out.read_text())
    sphere, model = report["results"]
    assert sphere["subject"] == "sdf:sphere" and sphere["levels"] == [8, 16, 32]
    assert list(sphere["methods"]) == ["hierarchical"]  # no attention to select keys in
    hier = sphere["methods"]["hierarchical"]
    assert hier["iou_vs_dense"] == 1.0 and hier["queries"] < sphere["dense_queries"]
    assert list(model["methods"]) == ["hierarchical", "hier+kv_mass", "hier+kv_mean", "hier+kv_merge"]
    for result in (sphere, model):  # every ratio is the one the recorded times and counts give
        for name, m in result["methods"].items():
            assert m["speedup_vs_dense"] == pytest.approx(result["dense_s"] / m["seconds"]), name
            assert m["speedup_vs_hierarchical"] == pytest.approx(result["methods"]["hierarchical"]["seconds"] / m["seconds"]), name
            assert m["query_fraction"] == pytest.approx(m["queries"] / result["dense_queries"]), name
    # mean mode keeps K keys of every cell, K by the rule for the bench's default settings (a third of 256)
    num_keys = int(report["meta"]["attention_sparsity"]["model:bunny"]["num_keys"])
    mean = stack_configs("flashvdm_mean", [])["adaptive_kv"]
    k = resolve_topk(mean.topk, num_keys, mean.topk_ratio)
    kv = model["methods"]["hier+kv_mean"]
    assert kv["keys_per_query"] == k and kv["key_fraction"] == pytest.approx(k / num_keys)
    assert kv["queries"] < model["dense_queries"]
    # the shipped model attends diffusely: merge mode at its 1e-6 threshold keeps every key, says so, and
    # keeps the hierarchical surface; a third of the keys in mean mode costs surface at 32^3 (IoU measured 0.69)
    merge = model["methods"]["hier+kv_merge"]
    assert merge["key_fraction"] == 1.0 and "no saving: adaptive KV kept every key" in merge["flags"]
    assert merge["iou_vs_dense"] == pytest.approx(model["methods"]["hierarchical"]["iou_vs_dense"], abs=1e-3)
    assert model["methods"]["hierarchical"]["iou_vs_dense"] > 0.99 and kv["iou_vs_dense"] > 0.6
    # mass mode is error-bounded: it keeps the hierarchical surface
    mass = model["methods"]["hier+kv_mass"]
    assert mass["iou_vs_dense"] == pytest.approx(model["methods"]["hierarchical"]["iou_vs_dense"], abs=1e-3)
    assert "vs hier" in proc.stdout and str(out) in proc.stdout


def test_bench_decoding_field_families_and_local_attention_smoke(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--subjects", "fields", "local", "--field-resolution", "64", "--field-sdf-resolution", "32", "--repeats", "1"]
    proc = accel3d("bench", "decoding", *args, "--field-meshes", "eval_00_box", "--local-points", "4096", "--out", str(out), cwd=tmp_path)
    results = json.loads(out.read_text())["results"]
    fields, local = results[:-1], results[-1]
    assert [r["family"] for r in fields] == list(FIELD_FAMILIES)
    for r in fields:
        assert list(r["methods"]) == ["hierarchical", "hierarchical_fast", "hierarchical_flashvdm"]
        default = r["methods"]["hierarchical"]
        assert default["iou"] == 1.0 and default["wrong_voxels"] == 0, r["family"]  # exact on every family
        assert 0 < default["query_fraction"] <= 1.0
    assert "per family" in proc.stdout and "IoU" in proc.stdout
    assert local["subject"] == "local" and list(local["methods"]) == ["dense", "mass", "mean", "merge"]
    assert local["methods"]["dense"]["relative_error"] == 0.0
    assert local["methods"]["mean"]["keys_per_query"] == 1024  # Hunyuan3D-2's K for 3072 tokens


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
    kernels = {"packed_sparse_attention", "gather_rows", "scatter_add_rows", "scatter_max_rows"}
    assert {r["kernel"] for r in rows} == kernels
    by = {(r["kernel"], r["impl"]): r for r in rows}
    assert all("seconds" in by[(kernel, "torch reference")] for kernel in kernels)
    dense, ref = by[("packed_sparse_attention", "dense SDPA (all keys)")], by[("packed_sparse_attention", "torch reference")]
    assert ref["vs_dense"] == pytest.approx(dense["seconds"] / ref["seconds"])
    assert f" K{resolve_topk(None, 48)} " in ref["shape"]  # the mean top-K selection of 48 keys: a third
    # one Triton row per tile size of the attention and per row kernel; on a CPU each says why it did not run
    defaults = kernels_parser().parse_args([])
    triton = [r for r in rows if r["impl"].startswith("triton")]
    assert len(triton) == len(defaults.block_m) * len(defaults.block_n) + 3
    if not torch.cuda.is_available():
        assert all(r["skipped"] == "no CUDA device" and "seconds" not in r for r in triton)
    assert "torch reference" in proc.stdout


def test_bench_caching_novel_view_section_scores_every_run_against_the_truth(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "caching", "--sections", "novel_view", "--novel-iterations", "6", "--repeats", "1", "--calibration-repeats", "1"]
    args += ["--no-ablations", "--novel-long-iterations", "10", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    section = json.loads(out.read_text())["novel_view"]
    (row,) = section["rows"]
    assert section["calibration"]["cut"] == "up_blocks.2.0" and section["iterations"] == 6
    # the speedup over the whole run is the last point of the curve over the first n steps
    assert row["unet_speedup_by_tenth"][-1] == pytest.approx(row["speedup_unet"])
    (long_row,) = section["long_run"]["rows"]
    assert section["long_run"]["iterations"] == 10 and long_row["unet_speedup_by_tenth"][-1] == pytest.approx(long_row["speedup_unet"])
    assert "U-Net-only speedup over the first 10%" in proc.stdout and "the same, 10 SDS steps" in proc.stdout
    # each run's turntable against the bunny's true views: the same figures exactly when no call reused anything
    same = row["truth_psnr_db"] == section["baseline"]["truth_psnr_db"] and row["truth_ssim"] == section["baseline"]["truth_ssim"]
    assert same == (row["hit_rate"] == 0.0)
    assert "PSNR vs truth dB" in proc.stdout


def test_the_crossover_is_where_the_speedup_over_the_first_n_steps_stays_above_the_target():
    from accel3d.bench.caching import crossover_step, cumulative_speedup

    curve = cumulative_speedup([1.0, 1.0, 1.0, 1.0], [1.0, 0.5, 0.25, 0.25])
    assert curve == pytest.approx([1.0, 2 / 1.5, 3 / 1.75, 2.0])
    assert crossover_step(curve, 1.5) == 3 and crossover_step(curve, 1.0) == 1
    assert crossover_step(curve, 2.5) is None  # ends below the target
    assert crossover_step([4.0, 3.0, 4.0], 3.3) == 3  # a dip below the target moves the crossover past it


def test_bench_caching_smoke(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "caching", "--sections", "tiny", "--tiny-iterations", "8", "--repeats", "1", "--calibration-repeats", "1"]
    args += ["--check-every", "1", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tiny = json.loads(out.read_text())["tiny"]
    rows = {r["method"]: r for r in tiny["rows"]}
    assert {"hash3d (paper settings)", "fixed grid 10", "noise caching", "temporal only (DeepCache-style)"} <= set(rows)
    cal, base, steps = tiny["calibration"], tiny["baseline"], tiny["iterations"]
    assert steps == 8 and cal["cut"] == "up_blocks.2.0"  # the tiny U-Net's default cut
    assert cal["ceiling"] == pytest.approx(cal["full_s"] / cal["partial_s"])
    for name, r in rows.items():
        # each ratio and share is the one the recorded times give (one U-Net call per step)
        assert r["speedup_total"] == pytest.approx(base["total_s"] / r["total_s"]), name
        assert r["speedup_unet"] == pytest.approx(base["unet_s"] / r["unet_s"]), name
        assert r["hash_overhead"] * r["total_s"] == pytest.approx(r["hash_ms_per_step"] * steps / 1000), name
        hits = r["hit_rate"] * steps
        assert hits == round(hits) and r["checked"] == 2 * hits, name  # --check-every 1: both CFG halves of every hit
        # a run without hits is the unaccelerated loop bit for bit: identical renders, an infinite PSNR (null in JSON)
        assert (r["psnr_db"] is None) == (hits == 0), name
    assert rows["exact cells"]["cross_cell_share"] == 0.0
    assert "| method | end-to-end | U-Net only |" in proc.stdout


def test_bench_pruning_smoke(tmp_path):
    from accel3d.models.image_to_3d import ImageTo3DConfig, ImageTo3DModels
    from accel3d.pruning.extrapolation import full_steps
    from tests.models.image_to_3d.conftest import TINY_IMAGE_TO_3D
    from tests.pruning.fakes import ss_model_calls

    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    ImageTo3DModels(ImageTo3DConfig(**TINY_IMAGE_TO_3D)).eval().save(weights)
    out = tmp_path / "bench.json"
    only = ["modality_cache", "token_carving", "fastsam3d", "taylorseer", "random_drop"]
    accel3d("bench", "pruning", "--weights", str(weights), "--objects", "bunny", "eval_00_box", "--poses", "1", "--repeats", "1",
            "--ss-steps", "6", "--slat-steps", "8", "--only", *only, "--out", str(out), cwd=tmp_path)  # fmt: skip
    report = json.loads(out.read_text())
    assert [r["input"] for r in report["results"]] == ["bunny/pose0", "eval_00_box/pose0"]
    for row in report["results"]:
        base, configs = row["baseline"], row["configs"]
        assert list(configs) == only
        assert base["work"]["ss_model_calls"] == ss_model_calls(6)  # CFG 7: both passes while t <= 0.5
        assert base["work"]["slat_model_calls"] == 8 and base["work"]["slat_tokens"] == 8 * base["tokens"]
        for name in ("modality_cache", "taylorseer"):
            assert configs[name]["work"]["ss_model_calls"] == ss_model_calls(6, full_steps(6, warmup=2, stride=3))
            assert configs[name]["work"]["slat_tokens"] == 8 * configs[name]["tokens"]  # the SLaT stage untouched
        carved = configs["random_drop"]["work"]
        assert carved["slat_model_calls"] == 8 and carved["slat_tokens"] < 8 * configs["random_drop"]["tokens"]
        for name, c in configs.items():
            assert c["speedups"]["total_s"] == pytest.approx(base["timings_s"]["total_s"] / c["timings_s"]["total_s"]), name
            assert set(c["fidelity"]) >= {"ss_vel_error", "occupancy_iou", "rotation_deg", "fscore"}
        assert configs["modality_cache"]["fidelity"]["slat_vel_error"] is not None
    assert set(report["summary"]) == set(only)
