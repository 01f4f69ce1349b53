"""Hydra callback that turns a multirun sweep into a table and a speed-vs-fidelity plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from accel3d.core.io import atomic_write


class SweepSummary(Callback):
    """Collects every job's ``report.json`` into ``summary.csv``, ``summary.md`` and
    ``speed_vs_fidelity.png`` in the sweep directory when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        written = write_sweep_summary(sweep_dir)
        if written:
            print(f"[accel3d] sweep summary: {', '.join(str(p) for p in written)}")


def write_sweep_summary(sweep_dir: Path) -> list[Path]:
    from accel3d.runner import summary_rows

    reports = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/report.json"))]
    if not reports:
        return []
    rows = summary_rows(reports)
    columns = list(rows[0])
    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with atomic_write(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    with atomic_write(md_path) as tmp:
        tmp.write_text("\n".join(md) + "\n")
    return [csv_path, md_path, _plot(rows, sweep_dir / "speed_vs_fidelity.png")]


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
