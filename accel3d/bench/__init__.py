"""Benchmarks: ``accel3d bench <name>``. Each prints speed ratios measured side by
side in one process, after a warm-up, as medians, together with fidelity."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "caching": "accel3d.bench.caching",
    "decoding": "accel3d.bench.decoding",
    "kernels": "accel3d.bench.kernels",
    "pruning": "accel3d.bench.pruning",
}


def main(argv: list[str]) -> None:
    """``accel3d bench [NAME] [OPTIONS]``: options are parsed (and ``--help`` answered) before torch is imported."""
    from accel3d.bench.options import parser, summary

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: accel3d bench NAME [OPTIONS]   (accel3d bench NAME --help: its options and defaults)\n\nbenchmarks:")
        for name in BENCHMARKS:
            print(f"  {name:<10} {summary(name)}")
        if not argv:
            sys.exit(2)
        return
    if argv[0] not in BENCHMARKS:
        sys.exit(f"accel3d bench: unknown benchmark '{argv[0]}'; expected one of {', '.join(BENCHMARKS)}")
    args = parser(argv[0]).parse_args(argv[1:])
    import importlib

    importlib.import_module(BENCHMARKS[argv[0]]).run(args)


def _checked(value: Any, check: Callable[..., Any], **bounds: Any) -> Any:
    """``value`` checked by ``accel3d.core.validate``, its error an argparse one (argparse then names the option)."""
    from accel3d.core.validate import ArgumentError

    try:
        return check("value", value, **bounds)
    except ArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("value: ")) from None


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    from accel3d.core.validate import check_int

    return _checked(int(text), check_int, low=1)


def nonnegative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    from accel3d.core.validate import check_int

    return _checked(int(text), check_int, low=0)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    from accel3d.core.validate import check_float

    return _checked(float(text), check_float, low=0.0, low_open=True)


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    from accel3d.core.validate import check_float

    return _checked(float(text), check_float, low=0.0)


RESULTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "results"  # only in a source checkout


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out`` (default: a fresh folder under ``outputs/bench/``) and ``--save-results``."""
    parser.add_argument(
        "--out", type=Path, default=None, help=f"JSON file to write (default: outputs/bench/<date>/<time>_{name}/{name}.json)"
    )
    parser.add_argument(
        "--save-results",
        action="store_true",
        help=f"also merge the results into the committed docs/results/bench_{name}.json (source checkouts only)",
    )


def write_results(args: argparse.Namespace, name: str, report: dict[str, Any], merge: Callable[[dict, dict], dict] | None = None) -> None:
    """Write the report to ``args.out`` (or a new output folder); with ``--save-results``, also merge it into docs/results/.

    In docs/results/ every row (``results``) or section (the benchmark's parts, e.g. ``tiny``) names the run that
    measured it (``bench_run``), and ``bench_runs`` holds each such run's settings (its ``meta``, or the report's
    other entries: ``created``, ``args``, ...), so rows kept from earlier runs keep their own settings when a
    later run replaces others. The top-level settings are the latest run's.
    """
    from accel3d.core.io import write_json

    out = output_path(args, name)
    write_json(out, report)
    print(f"\nwrote {out}")
    if not args.save_results:
        return
    _save(args, name, report, merge, out)


def output_path(args: argparse.Namespace, name: str) -> Path:
    """Where the report goes; call it before the work as well, so a bad ``--out`` (a folder, a folder that cannot
    be written) or an impossible ``--save-results`` fails at once, not after the work."""
    from accel3d.core.io import check_output_folder

    if args.out is None:  # one folder per run, fixed at the first call
        stamp = time.strftime("%Y-%m-%d"), time.strftime("%H-%M-%S")
        args.out = Path("outputs") / "bench" / stamp[0] / f"{stamp[1]}_{name}" / f"{name}.json"
    out = args.out
    if out.is_dir():
        sys.exit(f"--out: '{out}' is a folder; expected a JSON file name")
    knob = "--out (default)" if out.parts[:2] == ("outputs", "bench") else "--out"
    try:
        check_output_folder(out.parent, knob)
        if getattr(args, "save_results", False):
            _check_results_dir()
    except OSError as exc:
        sys.exit(str(exc))
    return out


def _check_results_dir() -> None:
    from accel3d.core.io import check_output_folder

    if not RESULTS_DIR.is_dir():
        sys.exit(f"--save-results: no docs/results/ folder at {RESULTS_DIR} (it exists only in a source checkout)")
    check_output_folder(RESULTS_DIR, "--save-results")


RUN_KEY, RUNS_KEY = "bench_run", "bench_runs"  # a row's or section's run, and every run's settings, in docs/results/
SETTINGS_KEYS = ("meta", "args", "args_by_section", RUNS_KEY)  # dict-valued entries that are settings, not sections


def _parts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What a merge keeps or replaces: the rows of ``results`` if the report has them, else its sections (every
    dict-valued entry that is not a setting)."""
    if isinstance(report.get("results"), list):
        return [r for r in report["results"] if isinstance(r, dict)]
    return [v for k, v in report.items() if isinstance(v, dict) and k not in SETTINGS_KEYS]


def run_settings(report: dict[str, Any]) -> dict[str, Any]:
    """A report's settings: its ``meta``, or else its entries that are neither rows nor sections."""
    if isinstance(report.get("meta"), dict):
        return dict(report["meta"])
    if isinstance(report.get("results"), list):
        return {k: v for k, v in report.items() if k not in ("results", "summary", RUNS_KEY)}
    parts = {id(p) for p in _parts(report)}
    return {k: v for k, v in report.items() if id(v) not in parts and k not in (RUNS_KEY, "args_by_section")}


def stamp_run(report: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A copy of ``report`` whose rows (or sections) name ``run_id`` as the run that measured them, unless they
    already name one (a saved file's)."""
    import copy

    stamped = copy.deepcopy(report)
    for part in _parts(stamped):
        part.setdefault(RUN_KEY, run_id)
    return stamped


def merge_with_settings(saved: dict[str, Any] | None, report: dict[str, Any], merge: Callable[[dict, dict], dict] | None) -> dict[str, Any]:
    """``merge(saved, report)`` (or ``report`` alone), with every row or section naming its run and ``bench_runs``
    holding the settings of the runs that rows or sections still name.

    Usable as it is by any benchmark's merge function: the function merges the rows or sections, this keeps each
    one's settings. A saved file from before ``bench_runs`` gets one entry for its rows, with the settings it had.
    """
    settings = run_settings(report)
    runs: dict[str, Any] = {}
    if saved is not None:
        runs.update(saved.get(RUNS_KEY) or {})
        earlier = f"saved {run_settings(saved).get('created', 'earlier')}"
        if any(RUN_KEY not in p for p in _parts(saved)):
            note = "the file's settings before each row kept its own: those of its latest run then"
            runs.setdefault(earlier, {**run_settings(saved), "note": note})
        saved = stamp_run(saved, earlier)
    run_id, n = str(settings.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S")), 1
    while f"{run_id}{f' #{n}' if n > 1 else ''}" in runs:
        n += 1
    run_id = f"{run_id}{f' #{n}' if n > 1 else ''}"
    runs[run_id] = settings
    new = stamp_run(report, run_id)
    merged = merge(saved, new) if saved is not None and merge is not None else new
    used = {p.get(RUN_KEY) for p in _parts(merged)}
    merged[RUNS_KEY] = {k: v for k, v in runs.items() if k in used}
    return merged


def _save(args: argparse.Namespace, name: str, report: dict[str, Any], merge: Callable[[dict, dict], dict] | None, out: Path) -> None:
    from accel3d.core.io import write_json

    if not RESULTS_DIR.is_dir():
        sys.exit(
            f"--save-results: no docs/results/ folder at {RESULTS_DIR} (it exists only in a source checkout); the results are in {out}"
        )
    target = RESULTS_DIR / f"bench_{name}.json"
    saved = json.loads(target.read_text()) if target.is_file() and merge is not None else None
    write_json(target, merge_with_settings(saved, report, merge))
    print(f"updated {target}")
