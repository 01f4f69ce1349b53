"""`accel3d run`: check the configuration, compare, and leave a record whether the job succeeds or fails.

Every job writes ``record.json`` into its output folder: the resolved config and
seed, every repeat's timings with medians and speedups against its own baseline,
fidelity, the accelerators' headline figures, ceilings and flags, the versions,
device, commit, threads and load average, the wall time, and ``status``
(``running`` while it runs, then ``completed``, ``failed`` with the error, or
``interrupted`` with the signal, SIGINT or SIGTERM, that stopped it). A job that does
not complete removes the partial files of the exports it was writing.
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from accel3d.core.io import remove_partial_files, write_json
from accel3d.core.memory import memory_measure
from accel3d.core.stack import Stack
from accel3d.core.validate import ArgumentError, check_bool, check_int, check_seed
from accel3d.jobs.compare import Comparison, compare
from accel3d.jobs.environment import choose_threads, environment
from accel3d.jobs.interrupt import cleaning_up
from accel3d.jobs.report import RECORD
from accel3d.jobs.table import captions, format_table


def check_job_config(cfg: DictConfig) -> dict[str, Any]:
    """The job-level knobs of ``run.yaml``, checked; ``export_formats`` comes back as a list."""
    from accel3d.geometry.surface import MESH_FORMATS

    formats = cfg.get("export_formats", [])
    if isinstance(formats, str):  # `export_formats=glb` on the command line: one format
        formats = [formats]
    if formats is not None and not isinstance(formats, Sequence | ListConfig):  # a number, a mapping: no list of names
        raise ArgumentError(f"export_formats: expected a list of {MESH_FORMATS} (or one of them), got {formats!r}")
    formats = list(formats) if formats is not None else []
    for fmt in formats:
        if fmt not in MESH_FORMATS:
            raise ArgumentError(f"export_formats: expected a list of {MESH_FORMATS}, got {formats!r}")
    return {
        "seed": check_seed("seed", cfg.get("seed", 0)),
        "baseline": check_bool("baseline", cfg.get("baseline", True)),
        "warmup": check_bool("warmup", cfg.get("warmup", True)),
        "repeats": check_int("repeats", cfg.get("repeats", 3), low=1),
        "preview": check_bool("preview", cfg.get("preview", True)),
        "threads": check_int("threads", cfg.get("threads"), low=1, allow_none=True),
        "export_formats": list(dict.fromkeys(formats)),
    }


def build(node: DictConfig, what: str, convert: str = "object") -> Any:
    """Instantiate a config node; an argument error comes out as ``<config key>: ...`` without Hydra's wrapping.

    A stack is built with ``convert="none"``: its accelerators' nodes go to ``build_stack`` as they are, whose
    config dataclasses check them (converting them to objects first would skip those messages)."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node, _convert_=convert)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, (ValueError, TypeError, FileNotFoundError)):
            found = re.search(r"full_key: (\S+)", str(exc))  # e.g. stack.accelerators0
            key = re.sub(r"(\D)(\d+)$", r"\1.\2", found.group(1)) if found else what
            message = str(cause) if str(cause).startswith(key) else f"{key}: {cause}"
            raise ArgumentError(message) from cause
        raise


def prepare_job(cfg: DictConfig) -> tuple[Any, Stack, dict[str, Any]]:
    """Check the whole configuration and build pipeline and stack, before any model call.

    Job knobs first, then the stack (cheap), then the pipeline (which checks its knobs
    before loading weights), then whether the stack fits the pipeline: its stages exist,
    every accelerator attaches (and detaches again), and each accelerator's own checks
    against the pipeline pass.
    """
    job = check_job_config(cfg)
    if "accelerator" in cfg:  # `+accelerator=x` adds a config nobody reads
        raise ArgumentError(
            "accelerator: a top-level accelerator config is not part of any stack; add one to a stack with "
            "+accelerator@stack.accelerators.<name>=<file> (for example +accelerator@stack.accelerators.hash3d=hash3d)"
        )
    stack = build(cfg.stack, "stack", convert="none")
    if not isinstance(stack, Stack):
        raise ArgumentError(f"stack: expected the config to build an accel3d.core.Stack, got {type(stack).__name__}")
    pipeline = build(cfg.pipeline, "pipeline")
    stack.check_stages(
        pipeline,
        hint="pick a stack for this pipeline, e.g. `pipeline=sds stack=hash3d`, `pipeline=vecset_shape stack=hierarchical` "
        "or `pipeline=image_to_3d stack=fastsam3d`",
    )
    stack.check(pipeline)
    return pipeline, stack, job


def run_job(cfg: DictConfig, out_dir: Path, job_info: dict[str, Any] | None = None, parallel_jobs: int = 1) -> dict[str, Any]:
    """Run the configured comparison; write ``record.json`` (also on failure or interruption, then re-raise) and
    the artefacts.

    An exception ends the job ``failed`` with its error and traceback; a ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM,
    which ``accel3d.jobs.interrupt`` turns into one carrying ``signal_name``) ends it ``interrupted``. Either way the record gets
    its wall time and the partial files of unfinished exports are removed."""
    started, started_at = time.perf_counter(), time.time()
    record: dict[str, Any] = {"status": "running", **(job_info or {}), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    record["config"] = OmegaConf.to_container(cfg, resolve=False)
    record["seed"] = cfg.get("seed")
    record["environment"] = environment(torch.get_num_threads(), parallel_jobs)  # a failed record keeps it too
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / RECORD, record)
    try:
        record.update(_run(cfg, out_dir, parallel_jobs))
        record["status"] = "completed"
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (accel3d.jobs.interrupt)
        cleaning_up()
        record.update(status="interrupted", signal=getattr(exc, "signal_name", "SIGINT"))
        raise
    except Exception as exc:
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback="".join(traceback.format_exception(exc)))
        raise
    finally:
        record["wall_s"] = time.perf_counter() - started
        if record["status"] != "completed":
            removed = remove_partial_files(out_dir, since=started_at - 1.0)  # (a second of slack for coarse file times)
            if removed:
                record["removed_partial_files"] = [p.name for p in removed]
        write_json(out_dir / RECORD, record)
    return record


def load_inputs(pipeline: Any) -> Any:
    """``pipeline.load_inputs()``; a ``ValueError`` there is about the input the user named (a file the reader
    refuses, too few points, ...), so it comes out as an ``ArgumentError`` naming ``pipeline.<knob>``: the CLI
    then says it in one line. A ``TypeError`` there is left as it is: it is more likely a bug than an input."""
    try:
        return pipeline.load_inputs()
    except ArgumentError:
        raise
    except ValueError as exc:
        text = str(exc)
        knob = re.match(r"(\w+): ", text)
        message = f"pipeline.{text}" if knob and knob[1] in getattr(pipeline, "__dict__", {}) else f"pipeline.input: {text}"
        raise ArgumentError(message) from exc


def _run(cfg: DictConfig, out_dir: Path, parallel_jobs: int) -> dict[str, Any]:
    pipeline, stack, job = prepare_job(cfg)
    threads = choose_threads(job["threads"], parallel_jobs)
    torch.set_num_threads(threads)  # explicit, so that busy cores do not silently change the timings
    env = environment(threads, parallel_jobs)
    inputs = load_inputs(pipeline)
    print(f"[accel3d] pipeline={pipeline.name} stack={stack.name} input={inputs.source} threads={threads}", file=sys.stderr)
    comparison = compare(pipeline, stack, inputs, job["repeats"], job["baseline"], job["warmup"])
    result = comparison.last(stack.name) if not stack.is_empty else comparison.baseline
    baseline = comparison.baseline if comparison.baseline is not result else None
    rows = _with_figures(pipeline, comparison)
    # the pictures carry their numbers: {"baseline": caption, "accelerated": caption} (table.captions)
    lines = captions(pipeline, rows)
    picture_captions = {"baseline": lines.get("baseline", ""), "accelerated": lines.get(stack.name, lines.get("baseline", ""))}
    options = {"export_formats": job["export_formats"], "preview": job["preview"], "stack": stack.name, "captions": picture_captions}
    files = pipeline.write_artefacts(result, baseline, out_dir, options)
    print(format_table(pipeline, rows, parallel_jobs, job["warmup"]))
    print(f"\nwrote {', '.join(files.values()) or 'no files'} and {RECORD} to {out_dir}")
    return {
        "pipeline": pipeline.name,
        "pipeline_info": pipeline.describe(),
        "stack": stack.name,
        "accelerators": stack.names,
        "input": inputs.source,
        "seed": job["seed"],
        "config": OmegaConf.to_container(cfg, resolve=True),
        "headline": {
            "timing": pipeline.headline_timing,
            "fidelity_metric": pipeline.fidelity_metric,
            "higher_is_better": pipeline.higher_is_better,
        },
        "runs": rows,
        "environment": env,
        "timings_comparable": parallel_jobs == 1,
        "peak_memory_measure": memory_measure(),  # what each run's peak_memory_bytes counts (accel3d.core.memory)
        "files": files,
    }


def _with_figures(pipeline: Any, comparison: Comparison) -> dict[str, dict[str, Any]]:
    """The rows, each with the pipeline's figures of its last result (queries, faces, ...)."""
    rows = {}
    for name, row in comparison.rows.items():
        rows[name] = {**row, "figures": pipeline.result_figures(comparison.last(name))}
    return rows
