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

from accel3d.bench import add_output_arguments, nonnegative_float, nonnegative_int, output_path, positive_float, positive_int, write_results
from accel3d.core.stack import Stack
from accel3d.decoding.accelerator import AdaptiveKVSelection, HierarchicalDecoding
from accel3d.decoding.sparsity import attention_sparsity
from accel3d.geometry import shapes
from accel3d.jobs.compare import compare
from accel3d.pipelines.field import FieldPipeline

TRUNCATION = 0.03  # analytic SDFs are truncated like the shipped VAE's field
SPARSITY: dict[str, dict[str, float]] = {}  # attention sparsity per subject with cross-attention


def subjects(names: list[str], args: argparse.Namespace) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], dict, object]]:
    """Fields to decode, each with its hierarchical settings (the band is in the field's own units)
    and its geo decoder (None for fields without cross-attention)."""
    model_settings = {"band": args.band, "dilation": args.dilation, "min_resolution": args.min_resolution}
    sdf_settings = {"band": args.sdf_band, "dilation": args.sdf_dilation, "min_resolution": args.sdf_min_resolution}
    out = {}
    for name in names:
        if name == "model":
            from accel3d.pipelines.vecset_shape import VecsetShapePipeline

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
                SPARSITY["model:bunny"] = attention_sparsity(pipe.vae.geo_decoder, kv, near, cells=args.cells)
        elif name in shapes.SHAPES:
            sdf = shapes.SHAPES[name]()
            out[f"sdf:{name}"] = (lambda p, sdf=sdf: (sdf(p) / TRUNCATION).clamp(-1.0, 1.0), sdf_settings, None)
        else:
            raise SystemExit(f"--subjects: unknown '{name}'; expected 'model' or one of {sorted(shapes.SHAPES)}")
    return out


def kv_accelerator(mode: str, args: argparse.Namespace) -> AdaptiveKVSelection:
    return AdaptiveKVSelection(mode=mode, topk=args.topk, topk_ratio=args.topk_ratio, cells=args.cells, threshold=args.threshold)


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
        warmup_resolution=max(warmup_resolution, settings["min_resolution"]),
    )
    stacks = [Stack({"hierarchical": HierarchicalDecoding(chunk_size=args.chunk_size, progress=False, **settings)}, name="hierarchical")]
    if geo_decoder is not None:
        for mode in args.kv_modes:
            accs = {
                "hierarchical": HierarchicalDecoding(chunk_size=args.chunk_size, progress=False, **settings),
                "adaptive_kv": kv_accelerator(mode, args),
            }
            stacks.append(Stack(accs, name=f"hier+kv_{mode}"))
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
        "settings": settings,
        "levels": [lvl["resolution"] for lvl in comparison.last("hierarchical").grid.levels],
        "dense_s": dense["median"],
        "dense_times_s": dense["repeats"],
        "dense_queries": comparison.baseline.grid.queries,
        "methods": rows,
    }


def main(argv: list[str]) -> None:
    from accel3d.jobs.configs import accelerator_settings

    model = accelerator_settings("hierarchical", "hierarchical")  # the settings `accel3d run` uses
    sdf = accelerator_settings("hierarchical_flashvdm", "hierarchical")
    kv = accelerator_settings("flashvdm", "adaptive_kv")
    parser = argparse.ArgumentParser(
        prog="accel3d bench decoding", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=positive_int, nargs="+", default=[128, 256, 384])
    parser.add_argument("--subjects", nargs="+", default=["model", "sphere", "torus", "thin_plate"])
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--warmup-resolution", type=positive_int, default=64, help="resolution of the untimed warm-up run of each method")
    parser.add_argument("--min-resolution", type=positive_int, default=model["min_resolution"], help="coarsest level, shipped model")
    parser.add_argument("--sdf-min-resolution", type=positive_int, default=sdf["min_resolution"], help="coarsest level, analytic fields")
    parser.add_argument("--band", type=nonnegative_float, default=model["band"], help="tSDF band for the model (stack hierarchical)")
    parser.add_argument("--dilation", type=nonnegative_int, default=model["dilation"], help="dilations for the shipped model")
    parser.add_argument(
        "--sdf-band", type=nonnegative_float, default=sdf["band"], help="band for the analytic fields (hierarchical_flashvdm)"
    )
    parser.add_argument("--sdf-dilation", type=nonnegative_int, default=sdf["dilation"], help="dilations for the analytic fields")
    parser.add_argument("--kv-modes", nargs="*", default=["mean", "merge"], help="adaptive KV modes to add on the VAE (none: skip)")
    parser.add_argument("--topk", type=positive_int, default=kv["topk"], help="adaptive KV K as a count (default: Hunyuan3D-2's rule)")
    parser.add_argument(
        "--topk-ratio", type=positive_float, default=kv["topk_ratio"], help="adaptive KV K as a share of the keys, in (0, 1]"
    )
    parser.add_argument("--cells", type=positive_int, default=kv["cells"], help="adaptive KV cells per axis")
    parser.add_argument("--threshold", type=positive_float, default=kv["threshold"], help="merge-mode probability threshold")
    parser.add_argument("--chunk-size", type=positive_int, default=65536)
    parser.add_argument("--fscore-threshold", type=positive_float, default=0.01)
    add_output_arguments(parser, "decoding")
    args = parser.parse_args(argv)
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
    for name, sp in SPARSITY.items():
        print(
            f"\n{name} attention sparsity (4096 points near the surface, {int(sp['num_keys'])} keys): 90% of a query's attention "
            f"is on {sp['query_keys_90']:.1f} keys, 99% on {sp['query_keys_99']:.1f}; a {args.cells}^3 cell needs "
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
    key = lambda r: (r["subject"], r["resolution"])
    fresh = {key(r) for r in new["results"]}
    return {"meta": new["meta"], "results": [r for r in saved.get("results", []) if key(r) not in fresh] + new["results"]}
