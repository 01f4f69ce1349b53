"""Sweeps: a Hydra callback that stamps a multirun's folder and reports on it when it ends.

When a multirun starts, the sweep folder gets a fresh id and the list of its jobs
(``.accel3d_sweep.json``). Every job's ``record.json`` carries that id, so the
report covers exactly this sweep's jobs, whatever an earlier sweep left in a
reused folder, and names the jobs that failed or never ran. A failed job is
recorded instead of stopping the sweep (see ``accel3d.cli``), and the command
exits with an error after the report is written: the callback raises ``SystemExit``, which Hydra,
unlike an exception, does not turn into a warning. Records live on the
filesystem, so this holds for parallel (joblib) and cluster (submitit) jobs alike.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from accel3d.core.io import write_json
from accel3d.jobs.report import SWEEP_MARKER, collect, read_sweep_marker, write_report


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweep of ``config`` will launch, in order.

    As in Hydra's basic sweeper, the sweeper's ``params`` (an experiment's sweep) come first and the command
    line after them, so a command-line value for a swept key replaces that sweep
    (``+experiment=decoding_ablation pipeline.resolution=64`` runs one resolution).
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    overrides = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


class SweepSummary(Callback):
    """Stamps the sweep folder when a multirun starts; writes report.csv, report.md and speed_vs_fidelity.png
    there when it ends, then marks the sweep failed if any job failed or did not run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            jobs = sweep_jobs(config)
        except Exception:  # another sweeper (e.g. an optimiser) whose jobs are not known in advance
            jobs = None
        start_sweep(Path(config.hydra.sweep.dir), jobs)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            written = write_report(sweep_dir)
        except FileNotFoundError:
            written = []
        if written:
            print(f"[accel3d] sweep report: {', '.join(str(p) for p in written)}")
        found = collect(sweep_dir)
        bad = [f"{Path(r['path']).name}: {r.get('error', r['status'])}" for r in found.failed + found.interrupted + found.running]
        bad += [f"{path.parent.name}: incomplete record ({why})" for path, why in found.incomplete] + found.missing
        if bad:
            raise SystemExit(f"accel3d run: {len(bad)} sweep job(s) did not complete: {'; '.join(bad)}. The report covers the others.")


def start_sweep(sweep_dir: Path, jobs: list[list[str]] | None = None) -> str:
    """Give ``sweep_dir`` a new sweep id (jobs of earlier sweeps in it stop counting) and its job list."""
    sweep_id = uuid.uuid4().hex
    write_json(sweep_dir / SWEEP_MARKER, {"id": sweep_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "jobs": jobs})
    return sweep_id


def current_sweep_id(sweep_dir: Path) -> str | None:
    marker = read_sweep_marker(sweep_dir)
    return marker.get("id") if marker else None
