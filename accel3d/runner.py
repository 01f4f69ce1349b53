"""One `accel3d run` job: baseline and accelerated runs side by side, artefacts out."""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from accel3d.core.io import write_json
from accel3d.core.stack import Stack
from accel3d.core.validate import ArgumentError, check_bool, check_float, check_int, check_seed
from accel3d.geometry.metrics import chamfer_and_fscore, volume_iou
from accel3d.geometry.surface import MESH_FORMATS, export_mesh, render_preview


def check_job_config(cfg: DictConfig) -> dict[str, Any]:
    """The job-level knobs of ``run.yaml``, checked; returns them with ``export_formats`` as a list."""
    formats = cfg.get("export_formats", [])
    if isinstance(formats, str):  # `export_formats=glb` on the command line: one format
        formats = [formats]
    formats = list(formats) if formats is not None else []
    for fmt in formats:
        if fmt not in MESH_FORMATS:
            raise ArgumentError(f"export_formats: expected a list of {MESH_FORMATS}, got {formats!r}")
    return {
        "seed": check_seed("seed", cfg.get("seed", 0)),
        "baseline": check_bool("baseline", cfg.get("baseline", True)),
        "warmup": check_bool("warmup", cfg.get("warmup", True)),
        "repeats": check_int("repeats", cfg.get("repeats", 1), low=1),
        "preview": check_bool("preview", cfg.get("preview", True)),
        "fscore_threshold": check_float("fscore_threshold", cfg.get("fscore_threshold", 0.01), low=0.0, low_open=True),
        "export_formats": list(dict.fromkeys(formats)),
    }


def build(node: DictConfig, what: str) -> Any:
    """Instantiate a config node; an argument error comes out as ``what.<knob>: ...`` without Hydra's wrapping."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node, _convert_="object")
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, (ValueError, TypeError, FileNotFoundError)):
            found = re.search(r"full_key: (\S+)", str(exc))  # e.g. stack.accelerators0
            key = re.sub(r"(\D)(\d+)$", r"\1.\2", found.group(1)) if found else what
            raise ArgumentError(f"{key}: {cause}") from cause
        raise


def prepare_job(cfg: DictConfig) -> tuple[Any, Stack, dict[str, Any]]:
    """Check the whole configuration and build pipeline and stack, before any model call.

    Job knobs first, then the stack (cheap), then the pipeline (loads weights), then
    whether the stack fits the pipeline: its stages exist, every accelerator attaches
    (and detaches again), and each accelerator's own checks against the pipeline pass.
    """
    job = check_job_config(cfg)
    stack = build(cfg.stack, "stack")
    if not isinstance(stack, Stack):
        raise TypeError(f"stack: expected the config to build an accel3d.core.Stack, got {type(stack).__name__}")
    pipeline = build(cfg.pipeline, "pipeline")
    missing = sorted({acc.stage for acc in stack.accelerators} - set(pipeline.stages))
    if missing:
        raise ArgumentError(
            f"stack: '{stack.name}' targets stage(s) {missing}, which pipeline '{pipeline.name}' does not have "
            f"(its stages: {sorted(pipeline.stages)}); pick a stack for this pipeline, "
            "e.g. `pipeline=sds stack=hash3d` or `pipeline=vecset_shape stack=hierarchical`"
        )
    stack.check(pipeline)
    return pipeline, stack, job


def run_job(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run the configured pipeline with and without its stack and write the results."""
    pipeline, stack, job = prepare_job(cfg)
    cfg = OmegaConf.merge(cfg, {k: job[k] for k in ("export_formats",)})
    if hasattr(pipeline, "job"):  # pipelines with their own comparison (sds)
        return pipeline.job(stack, cfg, out_dir)
    inputs = pipeline.load_inputs()
    print(f"[accel3d] pipeline={pipeline.name} stack={stack.name} input={inputs.source}", file=sys.stderr)

    if cfg.warmup:  # one small untimed run: thread pools, allocator, lazy initialisation
        pipeline.run(inputs, resolution=32)
    rows: dict[str, dict[str, Any]] = {}
    runs, stats = alternate_runs(pipeline, stack, inputs, cfg.repeats, cfg.baseline)
    baseline = runs["baseline"][-1] if runs["baseline"] else None
    if baseline is not None:
        rows["baseline"] = _row(runs["baseline"])
    result = baseline
    if not stack.is_empty:
        result = runs[stack.name][-1]
        rows[stack.name] = _row(runs[stack.name])
        rows[stack.name]["stats"] = stats
        if baseline is not None:
            rows[stack.name].update(_fidelity(pipeline, baseline, result, cfg.fscore_threshold))
            for key in ("decode_s", "total_s"):
                rows[stack.name][f"speedup_{key[:-2]}"] = rows["baseline"][key] / rows[stack.name][key]

    if len(result.mesh.faces) == 0:  # fidelity of empty against empty reads as perfect: say what it means
        print(f"[accel3d] note: the decoded mesh is empty (the field has no surface at level {pipeline.level})", file=sys.stderr)
    files = _write_artefacts(cfg, out_dir, result, baseline, stack)
    report = {
        "pipeline": pipeline.name,
        "stack": stack.name,
        "input": inputs.source,
        "resolution": result.grid.resolution,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "runs": rows,
        "files": files,
    }
    return write_report(out_dir, report, format_table(rows))


def alternate_runs(
    pipeline: Any, stack: Stack, inputs: Any, repeats: int, baseline: bool, on_accelerated: Callable | None = None
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Unaccelerated and accelerated runs, alternating so that machine noise hits both alike.

    Returns the results per run name and the stack's statistics after its last run;
    ``on_accelerated(result, stats)`` may adjust each accelerated result.
    """
    runs: dict[str, list[Any]] = {"baseline": [], stack.name: []}
    stats: dict[str, Any] = {}
    for i in range(repeats):
        tag = f" ({i + 1}/{repeats})" if repeats > 1 else ""
        if baseline or stack.is_empty:
            print(f"[accel3d] unaccelerated run{tag} ...", file=sys.stderr)
            runs["baseline"].append(pipeline.run(inputs))
        if not stack.is_empty:
            print(f"[accel3d] accelerated run ({stack.name}){tag} ...", file=sys.stderr)
            stack.reset()
            with stack.applied(pipeline):
                result = pipeline.run(inputs)
            stats = stack.stats()
            if on_accelerated is not None:
                on_accelerated(result, stats)
            runs[stack.name].append(result)
    return runs, stats


def _row(results: list[Any]) -> dict[str, Any]:
    """Median timings over the repeats, and the size of the last result."""
    last = results[-1]
    timings = {k: statistics.median(r.timings[k] for r in results) for k in last.timings}
    return {
        **{k: round(v, 4) for k, v in timings.items()},
        "repeats": len(results),
        "queries": last.grid.queries,
        "query_fraction": round(last.grid.query_fraction, 5),
        "faces": len(last.mesh.faces),
    }


def _fidelity(pipeline: Any, base: Any, fast: Any, threshold: float) -> dict[str, float]:
    iou = volume_iou(pipeline.inside_mask(base.grid), pipeline.inside_mask(fast.grid))
    mesh_scores = chamfer_and_fscore(base.mesh, fast.mesh, threshold)
    return {"iou_vs_baseline": iou, **{f"{k}_vs_baseline": v for k, v in mesh_scores.items()}}


def _write_artefacts(cfg: DictConfig, out_dir: Path, result: Any, baseline: Any, stack: Stack) -> dict[str, str]:
    files = {}
    for fmt in cfg.export_formats:
        files[f"mesh_{fmt}"] = export_mesh(result.mesh, out_dir / f"mesh.{fmt}").name
    if baseline is not None and baseline is not result:
        files["baseline_mesh"] = export_mesh(baseline.mesh, out_dir / "mesh_baseline.glb").name
    if cfg.preview:
        views = {"unaccelerated": baseline.mesh} if baseline is not None and baseline is not result else {}
        views[f"stack: {stack.name}"] = result.mesh
        files["preview"] = render_preview(views, out_dir / "preview.png").name
    return files


def _keys_per_query(row: dict[str, Any]) -> float | None:
    """Mean keys a query attended to, where an accelerator selected keys."""
    return next((st["keys_per_query"] for st in row.get("stats", {}).values() if "keys_per_query" in st), None)


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of the runs."""
    header = ["run", "decode s", "total s", "speedup", "queries", "% dense", "keys/query", "IoU", "Chamfer", "F-score"]
    lines = []
    for name, r in rows.items():
        lines.append(
            [
                name,
                f"{r['decode_s']:.2f}",
                f"{r['total_s']:.2f}",
                f"{r['speedup_decode']:.2f}x" if "speedup_decode" in r else "1.00x",
                f"{r['queries']:,}",
                f"{100 * r['query_fraction']:.1f}",
                f"{_keys_per_query(r):.1f}" if _keys_per_query(r) is not None else "all",
                f"{r['iou_vs_baseline']:.4f}" if "iou_vs_baseline" in r else "ref",
                f"{r['chamfer_vs_baseline']:.2e}" if "chamfer_vs_baseline" in r else "ref",
                f"{r['fscore_vs_baseline']:.4f}" if "fscore_vs_baseline" in r else "ref",
            ]
        )
    note = (
        "(times: median of the repeats, after a warm-up; speedup: decode-time ratio against the unaccelerated run;\n"
        " IoU, Chamfer and F-score: the accelerated output against the unaccelerated one)"
    )
    return text_table(header, lines, note)


def text_table(header: list[str], lines: list[list[str]], note: str) -> str:
    """Columns padded to their widest cell (first column left-aligned), a rule under the header, a note below."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda row: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(row) for row in lines] + [note])


def write_report(out_dir: Path, report: dict[str, Any], table: str) -> dict[str, Any]:
    """Write report.json (stamped with its creation time) and print the table and what was written."""
    report["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(out_dir / "report.json", report)
    print(table)
    print(f"\nwrote {', '.join(report['files'].values())} and report.json to {out_dir}")
    return report


def summary_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten sweep reports into one row per job."""
    out = []
    for rep in reports:
        if "summary" in rep:  # pipelines that summarise themselves
            out.append(rep["summary"])
            continue
        run = rep["runs"].get(rep["stack"], rep["runs"].get("baseline", {}))
        out.append(
            {
                "stack": rep["stack"],
                "resolution": rep["resolution"],
                "decode_s": run.get("decode_s", np.nan),
                "speedup_decode": run.get("speedup_decode", 1.0),
                "query_fraction": run.get("query_fraction", 1.0),
                "keys_per_query": _keys_per_query(run) or np.nan,
                "iou_vs_baseline": run.get("iou_vs_baseline", 1.0),
                "chamfer_vs_baseline": run.get("chamfer_vs_baseline", 0.0),
                "fscore_vs_baseline": run.get("fscore_vs_baseline", 1.0),
            }
        )
    return out
