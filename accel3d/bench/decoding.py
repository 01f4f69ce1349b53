"""``accel3d bench decoding``: dense vs hierarchical volume decoding.

For every subject (the shipped VAE on the bundled bunny, and analytic truncated
SDFs) and resolution, each method is warmed up once, then timed ``--repeats``
times, alternating methods so that machine noise hits both alike. It reports
the median times, their ratio, the queries made, and the fidelity of the
accelerated result to the dense one (volume IoU, Chamfer, F-score).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from accel3d.core.io import write_json
from accel3d.decoding.hierarchical import HierarchicalVolumeDecoder
from accel3d.geometry import shapes
from accel3d.geometry.metrics import chamfer_and_fscore, volume_iou
from accel3d.geometry.surface import extract_mesh
from accel3d.geometry.volume import DenseVolumeDecoder

TRUNCATION = 0.03  # analytic SDFs are truncated like the shipped VAE's field


def subjects(names: list[str], args: argparse.Namespace) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], dict]]:
    """Fields to decode, each with its hierarchical settings (the band is in the field's own units)."""
    model_settings = {"band": args.band, "dilation": args.dilation, "min_resolution": args.min_resolution}
    sdf_settings = {"band": args.sdf_band, "dilation": args.sdf_dilation, "min_resolution": args.sdf_min_resolution}
    out = {}
    for name in names:
        if name == "model":
            from accel3d.pipelines.vecset_shape import VecsetShapePipeline

            pipe = VecsetShapePipeline(progress=False)
            inputs = pipe.load_inputs()
            with torch.inference_mode():
                field = pipe.vae.field(pipe.vae.encode(inputs.points[None], inputs.normals[None]))
            out["model:bunny"] = (field, model_settings)
        elif name in shapes.SHAPES:
            sdf = shapes.SHAPES[name]()
            out[f"sdf:{name}"] = (lambda p, sdf=sdf: (sdf(p) / TRUNCATION).clamp(-1.0, 1.0), sdf_settings)
        else:
            raise SystemExit(f"--subjects: unknown '{name}'; expected 'model' or one of {sorted(shapes.SHAPES)}")
    return out


def bench_one(fn: Callable, settings: dict, resolution: int, repeats: int, warmup_resolution: int, args: argparse.Namespace) -> dict:
    methods = {
        "dense": DenseVolumeDecoder(chunk_size=args.chunk_size, progress=False),
        "hierarchical": HierarchicalVolumeDecoder(chunk_size=args.chunk_size, progress=False, **settings),
    }
    with warnings.catch_warnings():  # the small warm-up grid may have a single level; that is fine
        warnings.simplefilter("ignore")
        for dec in methods.values():  # warm-up: allocator, thread pools, lazy init
            dec.decode(fn, max(warmup_resolution, settings["min_resolution"]))
    times: dict[str, list[float]] = {m: [] for m in methods}
    grids = {}
    for _ in range(repeats):
        for name, dec in methods.items():
            start = time.perf_counter()
            grids[name] = dec.decode(fn, resolution)
            times[name].append(time.perf_counter() - start)
    med = {m: statistics.median(t) for m, t in times.items()}
    dense_mesh, fast_mesh = extract_mesh(grids["dense"]), extract_mesh(grids["hierarchical"])
    return {
        "resolution": resolution,
        "settings": settings,
        "levels": [lvl["resolution"] for lvl in grids["hierarchical"].levels],
        "dense_s": med["dense"],
        "hierarchical_s": med["hierarchical"],
        "times_s": times,
        "speedup": med["dense"] / med["hierarchical"],
        "queries": grids["hierarchical"].queries,
        "dense_queries": grids["dense"].queries,
        "query_fraction": grids["hierarchical"].query_fraction,
        "iou_vs_dense": volume_iou(grids["dense"].values > 0, grids["hierarchical"].values > 0),
        **{f"{k}_vs_dense": v for k, v in chamfer_and_fscore(dense_mesh, fast_mesh, args.fscore_threshold).items()},
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="accel3d bench decoding", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 384])
    parser.add_argument("--subjects", nargs="+", default=["model", "sphere", "torus", "thin_plate"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-resolution", type=int, default=64, help="resolution of the untimed warm-up run of each method")
    parser.add_argument("--min-resolution", type=int, default=48, help="coarsest level for the shipped model")
    parser.add_argument("--sdf-min-resolution", type=int, default=63, help="coarsest level for the analytic fields")
    parser.add_argument("--band", type=float, default=0.3, help="tSDF band for the shipped model (configs/stack/hierarchical.yaml)")
    parser.add_argument("--dilation", type=int, default=0, help="dilations for the shipped model")
    parser.add_argument("--sdf-band", type=float, default=0.95, help="tSDF band for the analytic fields (FlashVDM's value)")
    parser.add_argument("--sdf-dilation", type=int, default=1, help="dilations for the analytic fields")
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--fscore-threshold", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path("bench_results/decoding.json"))
    args = parser.parse_args(argv)
    if args.repeats < 3:
        print("note: fewer than 3 repeats; medians are less reliable", file=sys.stderr)

    results = []
    header = f"{'subject':<16}{'res':>5}{'dense s':>10}{'hier s':>9}{'speedup':>9}{'queries %':>11}{'IoU':>9}{'Chamfer':>10}{'F-score':>9}"
    print(header)
    for name, (fn, settings) in subjects(args.subjects, args).items():
        for res in args.resolutions:
            r = {"subject": name, **bench_one(fn, settings, res, args.repeats, args.warmup_resolution, args)}
            results.append(r)
            print(
                f"{name:<16}{res:>5}{r['dense_s']:>10.2f}{r['hierarchical_s']:>9.2f}{r['speedup']:>8.2f}x"
                f"{100 * r['query_fraction']:>10.2f}%{r['iou_vs_dense']:>9.5f}{r['chamfer_vs_dense']:>10.2e}"
                f"{r['fscore_vs_dense']:>9.4f}",
                flush=True,
            )
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "args": {k: str(v) for k, v in vars(args).items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(args.out, {"meta": meta, "results": results})
    print(f"\nwrote {args.out}")
