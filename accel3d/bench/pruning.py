"""``accel3d bench pruning``: Fast-SAM3D's modules alone, in pairs and together, and the baselines, on image_to_3d.

Every object (the bundled bunny, a training mesh of the shipped weights, and held-out procedural
shapes) is rendered to an image and mask at ``--poses`` poses (the default front view, then seeded
random ones). For each input,
the unaccelerated pipeline and every configuration run from the same seeds, warmed up once, then
``--repeats`` times alternating; speed is the median time of each stage over the unaccelerated
one's. Configurations (the stacks of ``configs/stack/``): ``modality_cache``, ``token_carving``,
``spectral_aggregation``, each pair, ``fastsam3d`` (all three), ``modality_cache_k4`` (stride 4,
where the paper reports pose drift), and the baselines ``taylorseer``,
``easycache``, ``random_drop``, ``uniform_merge``. Reported per input and configuration: per-stage
and object-level time ratios, model calls and tokens each flow processed, fidelity to the
unaccelerated run (velocity relative error per stage, SS occupancy IoU, layout error in degrees,
translation and scale, Chamfer and F-score@0.05 between the meshes), and the aggregation factor
the spectral router chose. The summary gives medians over the inputs.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import warnings
from typing import Any

import torch

from accel3d.bench import output_path, write_results
from accel3d.bench.options import PRUNING_BASELINES, PRUNING_MODULES, pruning_parser
from accel3d.core.stack import Stack
from accel3d.jobs.compare import compare

STAGE_KEYS = ("ss_s", "structure_s", "slat_s", "decode_s", "total_s")
WORK_KEYS = ("ss_model_calls", "ss_tokens", "slat_model_calls", "slat_tokens")
FIDELITY_KEYS = ("ss_vel_error", "slat_vel_error", "occupancy_iou", "rotation_deg", "translation_error", "scale_ratio", "chamfer", "fscore")


def configurations(args: argparse.Namespace) -> list[Stack]:
    """The stacks to compare, named as printed (``modality_cache+token_carving`` for a pair)."""
    from accel3d.api import load_stack

    combos = [c for r in (1, 2) for c in itertools.combinations(PRUNING_MODULES, r)] + [PRUNING_MODULES]
    stacks = []
    for combo in combos:
        name = "fastsam3d" if len(combo) == len(PRUNING_MODULES) else "+".join(combo)
        accs = {m: load_stack(m).accelerators[0] for m in combo}
        stacks.append(Stack(accs, name=name))
    # the paper's pose drift beyond the local linear region: the SS cache at stride 4
    stacks.append(Stack({"modality_cache": load_stack("modality_cache", stride=4).accelerators[0]}, name="modality_cache_k4"))
    if not args.no_baselines:
        stacks += [Stack({b: load_stack(b).accelerators[0]}, name=b) for b in PRUNING_BASELINES]
    if args.only:
        known = [s.name for s in stacks]
        unknown = sorted(set(args.only) - set(known))
        if unknown:
            sys.exit(f"--only: unknown configuration(s) {unknown}; expected some of {known}")
        stacks = [s for s in stacks if s.name in args.only]
    return stacks


def bench_inputs(args: argparse.Namespace, image_size: int, render_size: int, fov_degrees: float) -> dict[str, Any]:
    """``{"<object>/pose<i>": ImageTo3DInputs}``: each object at the default pose, then at seeded random ones."""
    from accel3d.geometry.camera import Camera, default_pose, random_pose
    from accel3d.geometry.mesh_sources import eval_meshes
    from accel3d.geometry.render import render_crop
    from accel3d.models.image_to_3d.inputs import ImageTo3DInputs

    meshes = eval_meshes(sources=("bundled", "procedural"), procedural=0, procedural_eval=5)
    camera = Camera(size=render_size, fov_degrees=fov_degrees)
    out = {}
    for name in args.objects:
        g = torch.Generator().manual_seed(args.seed)
        for i in range(args.poses):
            pose = default_pose() if i == 0 else random_pose(g, camera, max_degrees=45.0)
            crop = render_crop(meshes[name], pose, camera, size=image_size)
            source = f"{name} at {'the default pose' if i == 0 else f'random pose {i} (seed {args.seed})'}"
            out[f"{name}/pose{i}"] = ImageTo3DInputs(crop.rgb, crop.mask, source, tuple(crop.box), camera.intrinsics)
    return out


def bench_input(pipe: Any, inputs: Any, stacks: list[Stack], args: argparse.Namespace, label: str) -> dict[str, Any]:
    log = lambda text: print(f"[bench pruning] {label}: {text}", file=sys.stderr, flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an accelerated mesh may come out empty: it is measured, not warned
        comparison = compare(pipe, stacks, inputs, repeats=args.repeats, log=log)
    base = comparison.rows["baseline"]
    baseline_figures = pipe.result_figures(comparison.baseline)
    row: dict[str, Any] = {
        "input": label,
        "baseline": {
            "timings_s": {k: base["timings"][k]["median"] for k in STAGE_KEYS if k in base["timings"]},
            "work": {k: baseline_figures[k] for k in WORK_KEYS},
            "tokens": baseline_figures["tokens"],
        },
        "configs": {},
    }
    for s in stacks:
        r = comparison.rows[s.name]
        figures = pipe.result_figures(comparison.last(s.name))
        aggregation = next((st for key, st in r["stats"].items() if "factor" in st), {}) if isinstance(r["stats"], dict) else {}
        row["configs"][s.name] = {
            "speedups": {k: r["speedups"][k] for k in STAGE_KEYS if k in r.get("speedups", {})},
            "timings_s": {k: r["timings"][k]["median"] for k in STAGE_KEYS if k in r["timings"]},
            "work": {k: figures[k] for k in WORK_KEYS},
            "tokens": figures["tokens"],
            "factor": aggregation.get("factor"),
            "fidelity": {k: r["fidelity"].get(k) for k in FIDELITY_KEYS},
            "flags": r["flags"],
        }
    return row


def summarise(rows: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, float]]:
    """Medians over the inputs of each configuration's object speedup and fidelity."""
    out = {}
    for name in names:
        got = [r["configs"][name] for r in rows]
        median = lambda values: statistics.median(values) if values else None
        out[name] = {
            "speedup_total": median([g["speedups"].get("total_s") for g in got if g["speedups"].get("total_s")]),
            "speedup_ss": median([g["speedups"].get("ss_s") for g in got if g["speedups"].get("ss_s")]),
            "speedup_slat": median([g["speedups"].get("slat_s") for g in got if g["speedups"].get("slat_s")]),
            **{k: median([g["fidelity"][k] for g in got if g["fidelity"][k] is not None]) for k in FIDELITY_KEYS},
            "fscore_min": min((g["fidelity"]["fscore"] for g in got if g["fidelity"]["fscore"] is not None), default=None),
            "rotation_deg_max": max(
                (g["fidelity"]["rotation_deg"] for g in got if g["fidelity"]["rotation_deg"] is not None), default=None
            ),
        }
    return out


def _fmt(value: Any, spec: str) -> str:
    """``value`` formatted, or a dash of the same width when it is missing."""
    if value is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "—".rjust(int(width)) if width else "—"
    return format(value, spec)


def main(argv: list[str]) -> None:
    """``accel3d bench pruning`` with these command-line arguments."""
    run(pruning_parser().parse_args(argv))


def run(args: argparse.Namespace) -> None:
    if args.real:
        run_real(args)
        return
    from accel3d.models.image_to_3d.pipeline import ImageTo3DPipeline

    output_path(args, "pruning")  # a bad --out fails now, not after the work
    stacks = configurations(args)
    pipe = ImageTo3DPipeline(weights=args.weights, ss_steps=args.ss_steps, slat_steps=args.slat_steps, seed=args.seed, progress=False)
    camera = pipe.models.metadata.get("camera", {})
    inputs = bench_inputs(args, pipe.models.config.image_size, camera.get("size", 128), camera.get("fov_degrees", 50.0))
    print(f"{len(inputs)} inputs x ({len(stacks)} configurations + unaccelerated) x {args.repeats} repeats", file=sys.stderr)
    rows = []
    header = (
        f"{'input':<20}{'config':<42}{'total':>7}{'SS':>7}{'SLaT':>7}{'SS calls':>9}{'SLaT tok':>10}{'factor':>7}"
        f"{'IoU':>7}{'rot deg':>8}{'F@.05':>7}"
    )
    print(header)
    for label, item in inputs.items():
        row = bench_input(pipe, item, stacks, args, label)
        rows.append(row)
        b = row["baseline"]
        print(f"{label:<20}{'unaccelerated':<42}{b['timings_s']['total_s']:>6.2f}s{'':>14}{b['work']['ss_model_calls']:>9}"
              f"{b['work']['slat_tokens']:>10}", flush=True)  # fmt: skip
        for name, c in row["configs"].items():
            f, sp = c["fidelity"], c["speedups"]
            ratios = "".join(f"{_fmt(sp.get(k), '>6.2f')}x" for k in ("total_s", "ss_s", "slat_s"))
            print(
                f"{label:<20}{name:<42}{ratios}"
                f"{c['work']['ss_model_calls']:>9}{c['work']['slat_tokens']:>10}{_fmt(c['factor'], '>7.2f')}"
                f"{_fmt(f['occupancy_iou'], '>7.3f')}{_fmt(f['rotation_deg'], '>8.2f')}{_fmt(f['fscore'], '>7.3f')}",
                flush=True,
            )
    summary = summarise(rows, [s.name for s in stacks])
    print("\nmedian over the inputs:")
    for name, s in summary.items():
        print(
            f"  {name:<42} total {_fmt(s['speedup_total'], '.2f')}x  SS {_fmt(s['speedup_ss'], '.2f')}x  SLaT "
            f"{_fmt(s['speedup_slat'], '.2f')}x  IoU {_fmt(s['occupancy_iou'], '.3f')}  rotation {_fmt(s['rotation_deg'], '.2f')} deg "
            f"(max {_fmt(s['rotation_deg_max'], '.2f')})  F-score {_fmt(s['fscore'], '.3f')} (min {_fmt(s['fscore_min'], '.3f')})"
        )
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "pipeline": pipe.describe(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_results(args, "pruning", {"meta": meta, "summary": summary, "results": rows})


def run_real(args: argparse.Namespace) -> None:
    """``--real``: ``scripts/bench_real_pruning.py`` of the repository checkout accel3d runs from. The real classes are
    imported through the tests' loaders, whose stand-ins for the libraries' rendering packages stay out of the package."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_real_pruning.py"
    if not (script.is_file() and (script.parents[1] / "tests" / "integrations" / "real_models.py").is_file()):
        sys.exit("--real: needs a repository checkout of accel3d (scripts/ and tests/ beside the package), e.g. pip install -e .")
    output_path(args, "pruning_real")  # a bad --out fails now, not after the work
    spec = importlib.util.spec_from_file_location("bench_real_pruning", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--library", args.real, "--repeats", str(args.repeats)])
    write_results(args, "pruning_real", {"meta": {"args": {k: str(v) for k, v in vars(args).items()}}, "results": rows})
