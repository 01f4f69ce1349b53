"""``accel3d bench decoding``: dense vs hierarchical vs hierarchical + adaptive KV.

For every subject (the shipped VAE on the bundled bunny, and analytic truncated
SDFs) and resolution, each method is warmed up once, then timed ``--repeats``
times, alternating methods so that machine noise hits all alike. Methods:
``dense``, ``hierarchical`` and, for the VAE (the SDFs have no attention),
``hier+kv_mean`` / ``hier+kv_merge`` (hierarchical decoding with adaptive KV
selection in each mode). It reports median times, their ratios to dense and to
hierarchical alone, the queries made, the mean keys each query attended to, and
the fidelity of every accelerated result to the dense one (volume IoU, Chamfer,
F-score).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from accel3d.bench import output_path, write_results
from accel3d.bench.options import KV_STACKS, decoding_parser
from accel3d.bench.stacks import check_overrides, kv_cells, kv_config, stack_configs
from accel3d.core.stack import build_stack
from accel3d.decoding.sparsity import attention_sparsity
from accel3d.geometry import shapes
from accel3d.jobs.compare import compare
from accel3d.models.fields.pipeline import FieldPipeline

TRUNCATION = 0.03  # analytic SDFs are truncated like the shipped VAE's field
SPARSITY: dict[str, dict[str, float]] = {}  # attention sparsity per subject with cross-attention


def subjects(names: list[str], args: argparse.Namespace) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], dict, object]]:
    """Fields to decode, each with the configs of its hierarchical decoding (``--stack`` for the model,
    ``--sdf-stack`` for the analytic fields) and its geo decoder (None for fields without cross-attention)."""
    check_overrides("--set", args.set, [args.stack, *(KV_STACKS[mode] for mode in args.kv_modes)])
    check_overrides("--sdf-set", args.sdf_set, [args.sdf_stack])
    model_settings = stack_configs(args.stack, args.set)
    sdf_settings = stack_configs(args.sdf_stack, args.sdf_set)
    out = {}
    for name in names:
        if name in ("fields", "local"):
            continue  # accel3d.bench.decoding_fields, accel3d.bench.decoding_local
        if name == "model":
            from accel3d.models.vecset.pipeline import VecsetShapePipeline

            pipe = VecsetShapePipeline(progress=False)
            inputs = pipe.load_inputs()
            with torch.inference_mode():
                latents = pipe.vae.encode(inputs.points[None], inputs.normals[None])
                field = pipe.vae.field(latents)
            out["model:bunny"] = (field, model_settings, pipe.vae.geo_decoder)
            with torch.inference_mode():  # how local the attention is, near the surface (docs/decoding.md)
                kv = pipe.vae.geo_decoder.keys_values(pipe.vae.decode(latents))
                g = torch.Generator().manual_seed(0)
                near = inputs.points[torch.randint(0, len(inputs.points), (4096,), generator=g)]
                near = near + 0.02 * torch.randn(near.shape, generator=g)
                SPARSITY["model:bunny"] = attention_sparsity(pipe.vae.geo_decoder, kv, near, cells=kv_cells(args))
        elif name in shapes.SHAPES:
            sdf = shapes.SHAPES[name]()
            out[f"sdf:{name}"] = (lambda p, sdf=sdf: (sdf(p) / TRUNCATION).clamp(-1.0, 1.0), sdf_settings, None)
        else:
            raise SystemExit(f"--subjects: unknown '{name}'; expected 'model' or one of {sorted(shapes.SHAPES)}")
    return out


def bench_one(
    fn: Callable, settings: dict, geo_decoder: object, resolution: int, repeats: int, warmup_resolution: int, args: argparse.Namespace
) -> dict:
    """Dense against hierarchical (and hierarchical + adaptive KV) decoding of one field, through the comparison job."""
    pipe = FieldPipeline(
        fn,
        resolution,
        geo_decoder,
        chunk_size=args.chunk_size,
        fscore_threshold=args.fscore_threshold,
        warmup_resolution=max(warmup_resolution, settings["hierarchical"].min_resolution),
    )
    hierarchical = {"hierarchical": settings["hierarchical"]}  # chunking and progress: the pipeline's stage's
    stacks = [build_stack("hierarchical", hierarchical)]
    if geo_decoder is not None:
        stacks += [build_stack(f"hier+kv_{mode}", {**hierarchical, "adaptive_kv": kv_config(mode, args)}) for mode in args.kv_modes]
    log = lambda text: print(f"[bench decoding] {resolution}^3 {text}", file=sys.stderr, flush=True)
    with warnings.catch_warnings():  # the small warm-up grid may have a single level; that is fine
        warnings.simplefilter("ignore")
        comparison = compare(pipe, stacks, None, repeats=repeats, log=log)
    dense = comparison.rows["baseline"]["timings"]["decode_s"]
    hier = comparison.rows["hierarchical"]["timings"]["decode_s"]["median"]
    rows = {}
    for s in stacks:
        row, grid = comparison.rows[s.name], comparison.last(s.name).grid
        kv = row["summary"].get("adaptive_kv", {})
        seconds = row["timings"]["decode_s"]["median"]
        rows[s.name] = {
            "seconds": seconds,
            "times_s": row["timings"]["decode_s"]["repeats"],
            "speedup_vs_dense": row["speedups"]["decode_s"],
            "speedup_vs_hierarchical": hier / seconds,
            "queries": grid.queries,
            "query_fraction": grid.query_fraction,
            "keys_per_query": kv.get("keys_per_query"),
            "key_fraction": kv.get("key_fraction"),
            "work_ratio": row.get("work_ratio"),
            "flags": row["flags"],
            **{f"{k}_vs_dense": v for k, v in row["fidelity"].items()},
        }
    return {
        "resolution": resolution,
        "settings": {key: config.knobs() for key, config in settings.items()},
        "levels": [lvl["resolution"] for lvl in comparison.last("hierarchical").grid.levels],
        "dense_s": dense["median"],
        "dense_times_s": dense["repeats"],
        "dense_queries": comparison.baseline.grid.queries,
        "methods": rows,
    }


def main(argv: list[str]) -> None:
    """``accel3d bench decoding`` with these command-line arguments."""
    run(decoding_parser().parse_args(argv))


def run(args: argparse.Namespace) -> None:
    output_path(args, "decoding")  # a bad --out fails now, not after the work
    if args.repeats < 3:
        print("note: fewer than 3 repeats; medians are less reliable", file=sys.stderr)

    results = []
    header = (
        f"{'subject':<14}{'res':>5} {'method':<14}{'seconds':>9}{'vs dense':>10}{'vs hier':>9}{'queries %':>11}"
        f"{'keys/query':>11}{'IoU':>9}{'Chamfer':>10}{'F-score':>9}"
    )
    print(header)
    for name, (fn, settings, geo_decoder) in subjects(args.subjects, args).items():
        for res in args.resolutions:
            r = {"subject": name, **bench_one(fn, settings, geo_decoder, res, args.repeats, args.warmup_resolution, args)}
            results.append(r)
            print(f"{name:<14}{res:>5} {'dense':<14}{r['dense_s']:>9.2f}{'1.00x':>10}{'':>9}{100.0:>10.2f}%", flush=True)
            for method, m in r["methods"].items():
                keys = f"{m['keys_per_query']:.1f}" if m["keys_per_query"] is not None else "all"
                print(
                    f"{name:<14}{res:>5} {method:<14}{m['seconds']:>9.2f}"
                    f"{m['speedup_vs_dense']:>9.2f}x{m['speedup_vs_hierarchical']:>8.2f}x"
                    f"{100 * m['query_fraction']:>10.2f}%{keys:>11}{m['iou_vs_dense']:>9.5f}{m['chamfer_vs_dense']:>10.2e}"
                    f"{m['fscore_vs_dense']:>9.4f}",
                    flush=True,
                )
    if "fields" in args.subjects:
        from accel3d.bench.decoding_fields import run_fields

        results.extend(run_fields(args))
    if "local" in args.subjects:
        from accel3d.bench.decoding_local import run_local

        results.append(run_local(args))
    for name, sp in SPARSITY.items():
        print(
            f"\n{name} attention sparsity (4096 points near the surface, {int(sp['num_keys'])} keys): 90% of a query's attention "
            f"is on {sp['query_keys_90']:.1f} keys, 99% on {sp['query_keys_99']:.1f}; a {kv_cells(args)}^3 cell needs "
            f"{sp['cell_keys_90']:.1f} (90%) / {sp['cell_keys_99']:.1f} (99%) keys for all its queries"
        )
    meta = {
        "attention_sparsity": SPARSITY,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "args": {k: str(v) for k, v in vars(args).items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_results(args, "decoding", {"meta": meta, "results": results}, merge_results)


def merge_results(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """New (subject, resolution) rows replace the saved ones; the others stay."""
    key = lambda r: (r["subject"], r.get("resolution", r.get("points")))
    fresh = {key(r) for r in new["results"]}
    return {"meta": new["meta"], "results": [r for r in saved.get("results", []) if key(r) not in fresh] + new["results"]}
