"""`accel3d report DIR`: every run record under DIR, at any depth, into one table and one plot.

It writes ``report.csv``, ``report.md`` (a table per pipeline, ready for a paper)
and ``speed_vs_fidelity.png`` (headline speedup against the pipeline's fidelity
metric, with the Pareto front), and lists the jobs that failed, were interrupted
(SIGINT, SIGTERM), are still running (or were killed), are missing from a sweep, or
whose record is unreadable or incomplete (``completed`` without the runs that make
a result: never counted as one). A sweep folder
stamped by a multirun counts only the jobs of its latest sweep. The sweep
callback calls the same code when a multirun ends.

Example::

    from accel3d.jobs.report import write_report

    files = write_report(Path("multirun/2026-12-02"))
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accel3d.core.io import atomic_write
from accel3d.core.validate import ArgumentError

RECORD = "record.json"
SWEEP_MARKER = ".accel3d_sweep.json"


@dataclass
class Collection:
    """What was found under a folder: usable records, and those that are not."""

    completed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    interrupted: list[dict[str, Any]] = field(default_factory=list)  # stopped by SIGINT or SIGTERM
    running: list[dict[str, Any]] = field(default_factory=list)  # still running, or killed (SIGKILL, power loss)
    stale: list[Path] = field(default_factory=list)
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    incomplete: list[tuple[Path, str]] = field(default_factory=list)  # "completed" without the runs of a result
    missing: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.completed or self.failed or self.interrupted or self.running or self.corrupt or self.incomplete or self.missing)


def read_sweep_marker(folder: Path) -> dict[str, Any] | None:
    """The stamp a multirun left in its sweep folder (``id``, ``started``, ``jobs``), or None."""
    try:
        return json.loads((Path(folder) / SWEEP_MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _sweep_ids(root: Path) -> dict[Path, dict[str, Any]]:
    markers = {m.parent: read_sweep_marker(m.parent) for m in root.rglob(SWEEP_MARKER)}
    return {folder: marker for folder, marker in markers.items() if marker is not None}


def incomplete_reason(record: dict[str, Any]) -> str | None:
    """Why a ``completed`` record holds no result (None when it holds one): the pipeline, the stack and the runs
    a row is made of (the stack's run, or the baseline's for a job without accelerators) must be there."""
    missing = [k for k in ("pipeline", "stack", "accelerators", "runs") if k not in record]
    if missing:
        return f"completed, but without {', '.join(repr(k) for k in missing)}"
    runs, accelerators = record["runs"], record["accelerators"]
    if not isinstance(runs, dict) or not isinstance(accelerators, list):
        return "completed, but 'runs' is not an object or 'accelerators' not a list"
    name = record["stack"] if accelerators else "baseline"
    run = runs.get(name)
    if not isinstance(run, dict):
        return f"completed, but 'runs' has no run {name!r} (it has {sorted(runs)})"
    if not any(isinstance(run.get(k), dict) and run[k] for k in ("timings", "speedups")):
        return f"completed, but run {name!r} has no timings"
    return None


def collect(root: Path) -> Collection:
    """Read every ``record.json`` under ``root``; sort them into completed, failed, interrupted, running, stale,
    corrupt (unreadable) and incomplete."""
    found = Collection()
    sweeps = _sweep_ids(root)
    seen: dict[Path, set[int]] = {d: set() for d in sweeps}
    for path in sorted(root.rglob(RECORD)):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or "status" not in record:
                raise ValueError("not an accel3d run record (no 'status')")
        except (OSError, ValueError) as exc:
            found.corrupt.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        folder = next((p for p in path.parents if p in sweeps), None)  # the nearest sweep folder above it
        if folder is not None:
            if record.get("sweep") != sweeps[folder].get("id"):
                found.stale.append(path)  # left in a reused sweep folder by an earlier sweep
                continue
            seen[folder].add(record.get("job"))
        if record["status"] == "completed" and (why := incomplete_reason(record)):
            found.incomplete.append((path, why))
            continue
        record["path"] = str(path.parent)
        lists = {"completed": found.completed, "failed": found.failed, "interrupted": found.interrupted}
        lists.get(record["status"], found.running).append(record)
    for folder, sweep in sweeps.items():
        for num, overrides in enumerate(sweep.get("jobs") or []):
            if num not in seen[folder]:
                found.missing.append(f"{folder}: job {num} ({' '.join(overrides)})")
    return found


def row_of(record: dict[str, Any], fidelity: str | None = None) -> dict[str, Any]:
    """One flat table row of a completed record: what ran, the headline speedup, fidelity, headline figures."""
    head = record.get("headline", {})
    run = record.get("runs", {}).get(record.get("stack"), {}) if record.get("accelerators") else {}
    row: dict[str, Any] = {"pipeline": record.get("pipeline"), "stack": record.get("stack"), "job": record.get("job", "")}
    row.update({k: v for k, v in record.get("pipeline_info", {}).items()})
    timing = head.get("timing", "total_s")
    row["timing"] = timing
    row["speedup"] = run.get("speedups", {}).get(timing, 1.0 if not record.get("accelerators") else None)
    row["work_ratio"] = run.get("work_ratio")
    base = record.get("runs", {}).get("baseline", {}).get("timings", {}).get(timing, {})
    row[f"baseline_{timing}"] = base.get("median")
    for key, value in run.get("fidelity", {}).items():
        row[key] = value
    metric = fidelity or head.get("fidelity_metric")
    row["fidelity_metric"] = metric
    row["higher_is_better"] = head.get("higher_is_better", True) if not fidelity else not fidelity.startswith(("chamfer", "rel_l2"))
    row["fidelity"] = run.get("fidelity", {}).get(metric, None) if run else None
    for acc, figures in run.get("summary", {}).items():
        for key, value in figures.items():
            row[f"{acc}.{key}"] = value
    row["flags"] = "; ".join(run.get("flags", []))
    env = record.get("environment", {})
    row["threads"] = env.get("threads")
    row["parallel_jobs"] = env.get("parallel_jobs", 1)
    row["repeats"] = run.get("repeats", record.get("runs", {}).get("baseline", {}).get("repeats"))
    row["overrides"] = " ".join(record.get("overrides", []))
    row["path"] = record.get("path")
    return row


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool = True) -> list[tuple[float, float]]:
    """The points no other point beats in both speedup and fidelity, by increasing speedup."""
    sign = 1.0 if higher_is_better else -1.0
    front: list[tuple[float, float]] = []
    best = -float("inf")
    for x, y in sorted(points, key=lambda p: (-p[0], -sign * p[1])):
        if sign * y > best:
            front.append((x, y))
            best = sign * y
    return sorted(front)


def write_report(root: Path, out_dir: Path | None = None, fidelity: str | None = None) -> list[Path]:
    """Aggregate the records under ``root`` into report.csv, report.md and speed_vs_fidelity.png (in ``out_dir``)."""
    root, out_dir = Path(root), Path(out_dir or root)
    found = collect(root)
    if found.empty:
        raise FileNotFoundError(f"report: no {RECORD} under '{root}'")
    rows = [row_of(r, fidelity) for r in found.completed]
    if fidelity and rows and all(r["fidelity"] is None for r in rows if r.get("speedup") not in (None, 1.0)):
        known = sorted({k for r in found.completed for k in r.get("runs", {}).get(r.get("stack"), {}).get("fidelity", {})})
        raise ArgumentError(f"--fidelity: no record has a fidelity figure '{fidelity}'; the records have {known}")
    rows.sort(key=lambda r: (str(r["pipeline"]), str(r["path"])))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    written = []
    csv_path = out_dir / "report.csv"
    with atomic_write(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns or ["pipeline"], restval="")
        writer.writeheader()
        writer.writerows(rows)
    written.append(csv_path)
    md_path = out_dir / "report.md"
    with atomic_write(md_path) as tmp:
        tmp.write_text(_markdown(rows, found))
    written.append(md_path)
    if rows:
        written.append(_plot(rows, found, out_dir / "speed_vs_fidelity.png"))
    return written


MISSING = "—"  # what a report cell shows for a figure a job does not have (never "nan" or "None")


def _fmt(value: Any) -> str:
    if value is None or value == "" or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


SHOWN_LAST = ("timing", "flags", "threads", "path", "fidelity_metric", "fidelity", "higher_is_better", "overrides", "job")


def _markdown(rows: list[dict[str, Any]], found: Collection) -> str:
    md: list[str] = []
    pipelines = list(dict.fromkeys(r["pipeline"] for r in rows))
    if len(pipelines) > 1:
        md += [f"Records from {len(pipelines)} pipelines ({', '.join(map(str, pipelines))}): one table each.", ""]
    for name in pipelines:
        group = [r for r in rows if r["pipeline"] == name]
        cols = [c for c in dict.fromkeys(k for r in group for k in r) if c not in SHOWN_LAST and c != "pipeline"]
        cols = [c for c in cols if any(_fmt(r.get(c)) != MISSING for r in group)]  # a column no job has says nothing
        cols = ["job", *cols, "flags", "overrides"] if any(r.get("overrides") for r in group) else [*cols, "flags"]
        md += [f"## {name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        md += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in group]
        if any(r.get("parallel_jobs", 1) > 1 for r in group):
            md += [
                "",
                "Jobs that ran in parallel (`parallel_jobs` > 1) timed each other's load: compare their speedups only among themselves.",
            ]
        md.append("")
    sections = [
        ("failed", [f"{r.get('path')}: {r.get('error', 'failed')}" for r in found.failed]),
        ("interrupted", [interrupted_line(r) for r in found.interrupted]),
        ("still running or killed", [str(r.get("path")) for r in found.running]),
        ("missing from their sweep", found.missing),
        ("unreadable records (skipped)", [f"{p}: {why}" for p, why in found.corrupt]),
        ("incomplete records (skipped)", [f"{p}: {why}" for p, why in found.incomplete]),
    ]
    for title, items in sections:
        if items:
            md += [f"## {len(items)} job(s) {title}", "", *(f"- {item}" for item in items), ""]
    if found.stale:
        md += [f"({len(found.stale)} record(s) of earlier sweeps in reused sweep folders were left out.)", ""]
    return "\n".join(md) + "\n"


def interrupted_line(record: dict[str, Any]) -> str:
    """``PATH: interrupted by SIGTERM after 12.3 s`` for an interrupted record."""
    wall = record.get("wall_s")
    after = f" after {wall:.1f} s" if isinstance(wall, int | float) else ""
    return f"{record.get('path')}: interrupted by {record.get('signal', 'a signal')}{after}"


def _plot(rows: list[dict[str, Any]], found: Collection, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = speed_fidelity_figure(rows)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def speed_fidelity_figure(rows: list[dict[str, Any]]) -> Any:
    """One panel per pipeline: each job's headline speedup against its fidelity, the 1x line, the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipelines = list(dict.fromkeys(r["pipeline"] for r in rows))
    fig, axes = plt.subplots(1, len(pipelines), figsize=(6.5 * len(pipelines), 5.0), squeeze=False)
    for ax, name in zip(axes[0], pipelines):
        group = [r for r in rows if r["pipeline"] == name and r.get("speedup") is not None and r.get("fidelity") is not None]
        metric = next((r["fidelity_metric"] for r in group), "fidelity")
        higher = next((r["higher_is_better"] for r in group), True)
        pts = [(float(r["speedup"]), float(r["fidelity"])) for r in group]
        varying = _varying_overrides(group)
        for (x, y), r in zip(pts, group):
            ax.scatter(x, y, s=45, zorder=3, marker="o" if not r.get("flags") else "x")
        # the front only from timings that can be compared: no flags, not run in parallel
        clean = [p for p, r in zip(pts, group) if not r.get("flags") and r.get("parallel_jobs", 1) == 1]
        front = pareto_front(clean, higher)
        if front:
            ax.plot(*zip(*front), color="tab:red", lw=1.2, ls="--", marker="s", mfc="none", ms=10, zorder=2, label="Pareto front")
        ax.axvline(1.0, color="grey", lw=1.0, ls=":", label="1x (unaccelerated speed)")
        if pts:
            xs = [p[0] for p in pts]
            ax.set_xlim(min(0.9, min(xs) * 0.9), max(xs) * 1.35)  # room for the labels on the right
            ys = [p[1] for p in pts]
            pad = max(0.05 * (max(ys) - min(ys)), 1e-3 * max(1.0, abs(max(ys))))
            ax.set_ylim(min(ys) - 4 * pad, max(ys) + 4 * pad)  # room for labels above and below
        ax.legend(loc="lower right" if higher else "upper right", fontsize=8, framealpha=0.6)
        timing = next((r["timing"] for r in group), "total_s")
        ax.set_xlabel(f"{timing.removesuffix('_s')} speedup vs unaccelerated (x)")
        ax.set_ylabel(f"{metric} vs unaccelerated ({'higher' if higher else 'lower'} is better)")
        parallel = sum(r.get("parallel_jobs", 1) > 1 for r in group)
        note = f"; {parallel} ran in parallel, not on the front" if parallel else ""
        ax.set_title(f"{name}: {len(group)} jobs (x: flagged timing{note})", fontsize=10)
        ax.grid(alpha=0.3)
        fig.canvas.draw()  # the labels are placed in pixels, so the axes must be laid out first
        place_labels(ax, pts, [_label(r, varying) for r in group])
    fig.suptitle("Speed against fidelity to the unaccelerated output", fontsize=12)
    fig.tight_layout()
    return fig


# Offsets (points) tried in turn for a label; the first whose box overlaps no other label and no marker wins.
LABEL_OFFSETS = [(6, 4), (6, -12), (-6, 4), (-6, -12), (6, 16), (6, -24), (-6, 16), (-6, -24), (6, 28), (6, -36), (-6, 28), (-6, -36)]


def place_labels(ax: Any, points: list[tuple[float, float]], labels: list[str]) -> list[Any]:
    """Annotate each point with its label where it overlaps no label already placed and no other point;
    when no offset is free, the label goes to the right of everything else on a leader line."""
    renderer = ax.figure.canvas.get_renderer()
    markers = [ax.transData.transform(p) for p in points]
    placed, boxes = [], []
    for i, ((x, y), label) in enumerate(zip(points, labels)):
        chosen = None
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(label, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7, ha="left" if dx > 0 else "right")
            box = text.get_window_extent(renderer).expanded(1.02, 1.1)
            hits_marker = any(box.contains(*m) for j, m in enumerate(markers) if j != i)
            if not hits_marker and not any(box.overlaps(b) for b in boxes):
                chosen = text, box
                break
            text.remove()
        for k in range(4 * len(points) + 1) if chosen is None else ():  # crowded: a free row further up, on a leader line
            text = ax.annotate(
                label, (x, y), textcoords="offset points", xytext=(40, 4 + 12 * k), fontsize=7, arrowprops={"arrowstyle": "-", "lw": 0.5}
            )
            box = text.get_window_extent(renderer).expanded(1.02, 1.1)
            chosen = text, box
            if not any(box.overlaps(b) for b in boxes):
                break
            text.remove()
        placed.append(chosen[0])
        boxes.append(chosen[1])
    return placed


def _varying_overrides(rows: list[dict[str, Any]]) -> list[str]:
    """The override keys whose values differ between the rows (what tells sweep points apart)."""
    values: dict[str, set[str]] = {}
    for r in rows:
        for item in str(r.get("overrides", "")).split():
            key, _, value = item.partition("=")
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1 and k != "stack"]


def _label(row: dict[str, Any], varying: list[str]) -> str:
    given = dict(item.partition("=")[::2] for item in str(row.get("overrides", "")).split())
    extra = [f"{k.rsplit('.', 1)[-1]}={given[k]}" for k in varying if k in given]
    return " ".join([str(row["stack"]), *extra])
