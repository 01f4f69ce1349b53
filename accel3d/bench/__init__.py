"""Benchmarks: ``accel3d bench <name>``. Each prints speed ratios measured side by
side in one process, after a warm-up, as medians, together with fidelity."""

from __future__ import annotations

import sys

BENCHMARKS = {"caching": "accel3d.bench.caching", "decoding": "accel3d.bench.decoding", "kernels": "accel3d.bench.kernels"}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in BENCHMARKS:
        sys.exit(f"accel3d bench: expected one of {sorted(BENCHMARKS)}, got {argv[0] if argv else 'nothing'}")
    import importlib

    importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])
