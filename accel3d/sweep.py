"""Sweeps: job records, and a Hydra callback that turns a multirun into a table and a speed-vs-fidelity plot.

A multirun stamps its sweep directory with a fresh id (``.accel3d_sweep.json``)
before any job starts. Each job writes ``job.json`` into its own folder with that
id and its status (running, completed, failed with the error), and removes a
stale ``report.json`` first. The summary then covers exactly the jobs of this
sweep, whatever an earlier sweep left in a reused directory, and lists the jobs
that failed instead of losing the others' results. The records live on the
filesystem, so they work the same for jobs run in parallel processes (joblib) or
on a cluster (submitit).
"""

from __future__ import annotations

import csv
import json
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from accel3d.core.io import atomic_write, write_json

SWEEP_MARKER = ".accel3d_sweep.json"
JOB_RECORD = "job.json"


class SweepFailed(RuntimeError):
    """Some jobs of a sweep failed; the summary of the others was written."""


# Set by the callback when a sweep ends with failed jobs: Hydra turns a callback's exception into a
# warning, so `accel3d run -m` reads this after the sweep to exit with an error.
last_sweep_failure: SweepFailed | None = None


class SweepSummary(Callback):
    """Stamps the sweep directory when a multirun starts; writes ``summary.csv``, ``summary.md`` and
    ``speed_vs_fidelity.png`` when it ends, then fails if any job failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        start_sweep(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_sweep_failure
        last_sweep_failure = None
        sweep_dir = Path(config.hydra.sweep.dir)
        written = write_sweep_summary(sweep_dir)
        if written:
            print(f"[accel3d] sweep summary: {', '.join(str(p) for p in written)}")
        failed = [job for job in sweep_jobs(sweep_dir) if job["status"] != "completed"]
        if failed:
            lines = "; ".join(f"job {j['num']} ({' '.join(j['overrides'])}): {j.get('error', j['status'])}" for j in failed)
            last_sweep_failure = SweepFailed(f"{len(failed)} sweep job(s) did not complete: {lines}. The summary covers the others.")


def start_sweep(sweep_dir: Path) -> str:
    """Give ``sweep_dir`` a new sweep id; jobs of earlier sweeps in it stop counting."""
    sweep_id = uuid.uuid4().hex
    write_json(sweep_dir / SWEEP_MARKER, {"id": sweep_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return sweep_id


def current_sweep_id(sweep_dir: Path) -> str | None:
    marker = sweep_dir / SWEEP_MARKER
    if not marker.is_file():
        return None
    return json.loads(marker.read_text()).get("id")


def begin_job(job_dir: Path, sweep_dir: Path, num: int, overrides: list[str]) -> dict[str, Any]:
    """Record a sweep job as running (and drop what an earlier job left in its folder)."""
    (job_dir / "report.json").unlink(missing_ok=True)
    record = {"sweep": current_sweep_id(sweep_dir), "num": num, "overrides": list(overrides), "status": "running"}
    record["started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(job_dir / JOB_RECORD, record)
    return record


def end_job(job_dir: Path, record: dict[str, Any], error: BaseException | None = None) -> None:
    """Record a sweep job as completed or failed (with the error and its traceback)."""
    record = {**record, "status": "completed" if error is None else "failed", "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = "".join(traceback.format_exception(error))
    write_json(job_dir / JOB_RECORD, record)


def sweep_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The job records of the sweep that last started in ``sweep_dir``, by job number, with their folder."""
    sweep_id = current_sweep_id(sweep_dir)
    jobs = []
    for path in sweep_dir.glob(f"*/{JOB_RECORD}"):
        record = json.loads(path.read_text())
        if sweep_id is not None and record.get("sweep") == sweep_id:
            jobs.append({**record, "dir": path.parent})
    return sorted(jobs, key=lambda j: j["num"])


def write_sweep_summary(sweep_dir: Path) -> list[Path]:
    """Summarise the jobs of this sweep (a directory without a sweep id: every ``*/report.json`` in it)."""
    from accel3d.runner import summary_rows

    if current_sweep_id(sweep_dir) is None:  # not stamped by a multirun: summarise what is there
        reports = sorted(sweep_dir.glob("*/report.json"))
        jobs = [{"num": i, "overrides": [], "status": "completed", "dir": p.parent} for i, p in enumerate(reports)]
    else:
        jobs = sweep_jobs(sweep_dir)
    done = [j for j in jobs if j["status"] == "completed" and (j["dir"] / "report.json").is_file()]
    failed = [j for j in jobs if j not in done]
    if not jobs:
        return []
    metrics = summary_rows([json.loads((j["dir"] / "report.json").read_text()) for j in done])
    rows = [{"job": j["num"], "status": "completed", **m} for j, m in zip(done, metrics)]
    rows += [{"job": j["num"], "status": j["status"], "error": j.get("error", "did not finish")} for j in failed]
    rows.sort(key=lambda r: r["job"])
    overrides = {j["num"]: " ".join(j["overrides"]) for j in jobs}
    for r in rows:
        r["overrides"] = overrides[r["job"]]
    columns = list(dict.fromkeys(key for r in rows for key in r))
    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with atomic_write(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    written = [csv_path, md_path]
    with atomic_write(md_path) as tmp:
        tmp.write_text(_markdown(rows, columns, failed))
    if metrics:
        written.append(_plot(metrics, sweep_dir / "speed_vs_fidelity.png"))
    return written


def _markdown(rows: list[dict[str, Any]], columns: list[str], failed: list[dict[str, Any]]) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    shown = [c for c in columns if c not in ("error", "overrides")] + ["overrides"]
    ok = [r for r in rows if r["status"] == "completed"]
    md = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    md += ["| " + " | ".join(fmt(r.get(c, "")) for c in shown) + " |" for r in ok]
    if failed:
        md += ["", f"## {len(failed)} job(s) did not complete", ""]
        md += [f"- job {j['num']} ({' '.join(j['overrides'])}): {j.get('error', j['status'])}" for j in failed]
    return "\n".join(md) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    decoding = "speedup_decode" in rows[0]
    x_key, y_key = ("speedup_decode", "iou_vs_baseline") if decoding else ("speedup_total", "psnr_vs_baseline")
    for row in rows:
        if row.get(y_key) is None or row.get(x_key) is None:  # e.g. no fidelity for an unaccelerated job
            continue
        label = f"{row['stack']} @{row['resolution']}" if decoding else row["stack"]
        ax.scatter(row[x_key], row[y_key], s=40)
        ax.annotate(
            label,
            (row[x_key], row[y_key]),
            textcoords="offset points",
            xytext=(5, 3),
            fontsize=8,
        )
    ax.set_xlabel(("decode" if decoding else "end-to-end") + " speedup vs unaccelerated (x)")
    ax.set_ylabel("volume IoU vs unaccelerated" if decoding else "render PSNR vs unaccelerated (dB)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
