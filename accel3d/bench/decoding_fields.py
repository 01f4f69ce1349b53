"""``accel3d bench decoding --subjects fields``: hierarchical decoding on field families of real meshes.

Each mesh (the bundled bunny and held-out procedural shapes, :mod:`accel3d.geometry.mesh_sources`)
becomes every field of :data:`~accel3d.geometry.mesh_fields.FIELD_FAMILIES` (clamped SDFs at
three truncations, the raw SDF, a +-1 occupancy, a thin plate off the coarse lattice). Each field
is decoded densely and with each stack of ``--field-stacks`` (the default ``hierarchical``, the
speed-tuned ``hierarchical_fast``, FlashVDM's ``hierarchical_flashvdm``), through the comparison
job (warm-up, alternating repeats, medians). Reported per field and stack: IoU vs dense, wrong
voxels, the share of the dense queries made and the time ratio; then a per-family table of
medians (IoU: the minimum) over the meshes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from typing import Any

from accel3d.core.stack import Stack
from accel3d.jobs.compare import compare
from accel3d.models.fields.pipeline import FieldPipeline


def field_meshes(names: list[str]) -> dict[str, Any]:
    from accel3d.geometry.mesh_sources import eval_meshes

    meshes = eval_meshes(sources=("bundled", "procedural"), procedural=0, procedural_eval=5)
    missing = [n for n in names if n not in meshes]
    if missing:
        raise SystemExit(f"--field-meshes: unknown {missing}; expected some of {sorted(meshes)}")
    return {n: meshes[n] for n in names}


def stacks_for(names: list[str]) -> list[Stack]:
    """The named stacks as ``accel3d run stack=<name>`` builds them (chunking and progress come from the pipeline)."""
    from accel3d.api import load_stack

    return [load_stack(name) for name in names]


def bench_field(fn: Any, stacks: list[Stack], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    pipe = FieldPipeline(fn, args.field_resolution, None, chunk_size=args.chunk_size, fscore_threshold=args.fscore_threshold,
                         warmup_resolution=args.field_resolution)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comparison = compare(pipe, stacks, None, repeats=args.repeats)
    dense = comparison.baseline.grid.values > 0
    rows = {}
    for s in stacks:
        grid = comparison.last(s.name).grid
        got = grid.values > 0
        union = int((dense | got).sum())
        rows[s.name] = {
            "iou": int((dense & got).sum()) / union if union else 1.0,
            "wrong_voxels": int((dense != got).sum()),
            "query_fraction": grid.query_fraction,
            "speedup": comparison.rows[s.name]["speedups"]["decode_s"],
        }
    return rows


def run_fields(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The per-field rows (and the per-family table on stdout)."""
    from accel3d.geometry.mesh_fields import FIELD_FAMILIES, MeshSDF

    stacks = stacks_for(args.field_stacks)
    results = []
    print(f"{'field':<28}{'stack':<24}{'IoU':>9}{'wrong':>9}{'queries %':>11}{'speed':>8}")
    for mesh_name, mesh in field_meshes(args.field_meshes).items():
        sdf = MeshSDF(mesh, resolution=args.field_sdf_resolution)
        for family, make in FIELD_FAMILIES.items():
            label = f"{mesh_name}/{family}"
            print(f"[bench decoding] {label} at {args.field_resolution}^3", file=sys.stderr, flush=True)
            rows = bench_field(make(sdf), stacks, args)
            results.append({"subject": f"field:{label}", "mesh": mesh_name, "family": family,
                            "resolution": args.field_resolution, "methods": rows})  # fmt: skip
            for name, r in rows.items():
                print(f"{label:<28}{name:<24}{r['iou']:>9.5f}{r['wrong_voxels']:>9}{100 * r['query_fraction']:>10.2f}%"
                      f"{r['speedup']:>7.2f}x", flush=True)  # fmt: skip
    print(f"\nper family, over {len(args.field_meshes)} meshes at {args.field_resolution}^3 (IoU: worst; others: median)")
    print(f"{'family':<16}" + "".join(f"{name:>40}" for name in args.field_stacks))
    for family in FIELD_FAMILIES:
        cells = []
        for name in args.field_stacks:
            rows = [r["methods"][name] for r in results if r["family"] == family]
            iou = min(r["iou"] for r in rows)
            wrong = statistics.median(r["wrong_voxels"] for r in rows)
            queries = statistics.median(r["query_fraction"] for r in rows)
            speed = statistics.median(r["speedup"] for r in rows)
            cells.append(f"IoU {iou:.4f} wrong {wrong:>6.0f} q {100 * queries:5.1f}% {speed:4.2f}x")
        print(f"{family:<16}" + "".join(f"{c:>40}" for c in cells))
    return results
