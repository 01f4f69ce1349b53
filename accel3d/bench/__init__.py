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
    """Write the report to ``args.out`` (or a new output folder); with ``--save-results``, also merge it into docs/results/."""
    from accel3d.core.io import write_json

    out = output_path(args, name)
    write_json(out, report)
    print(f"\nwrote {out}")
    if not args.save_results:
        return
    _save(args, name, report, merge, out)


def output_path(args: argparse.Namespace, name: str) -> Path:
    """Where the report goes; call it before the work as well, so a bad ``--out`` fails at once."""
    if args.out is None:  # one folder per run, fixed at the first call
        stamp = time.strftime("%Y-%m-%d"), time.strftime("%H-%M-%S")
        args.out = Path("outputs") / "bench" / stamp[0] / f"{stamp[1]}_{name}" / f"{name}.json"
    out = args.out
    if out.is_dir():
        sys.exit(f"--out: '{out}' is a folder; expected a JSON file name")
    return out


def _save(args: argparse.Namespace, name: str, report: dict[str, Any], merge: Callable[[dict, dict], dict] | None, out: Path) -> None:
    from accel3d.core.io import write_json

    if not RESULTS_DIR.is_dir():
        sys.exit(
            f"--save-results: no docs/results/ folder at {RESULTS_DIR} (it exists only in a source checkout); the results are in {out}"
        )
    target = RESULTS_DIR / f"bench_{name}.json"
    merged = report
    if target.is_file() and merge is not None:
        merged = merge(json.loads(target.read_text()), report)
    write_json(target, merged)
    print(f"updated {target}")
