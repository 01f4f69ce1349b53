"""What a person looks at in a report: no nan/None cells, a titled plot whose labels do not overlap."""

from __future__ import annotations

import json
from pathlib import Path

from accel3d.jobs.report import MISSING, row_of, speed_fidelity_figure, write_report


def _record(folder: Path, stack: str, speedup: float, iou: float | None, work_ratio: float | None = 3.0, **extra) -> None:
    runs = {"baseline": {"timings": {"decode_s": {"median": 10.0}}, "repeats": 1}}
    if stack != "none":
        fidelity = {"iou": iou, "chamfer": None} if iou is not None else {}
        runs[stack] = {"speedups": {"decode_s": speedup}, "fidelity": fidelity, "work_ratio": work_ratio, "flags": [], "summary": {}}
    record = {
        "status": "completed",
        "pipeline": "vecset_shape",
        "stack": stack,
        "accelerators": [] if stack == "none" else [stack],
        "headline": {"timing": "decode_s", "fidelity_metric": "iou", "higher_is_better": True},
        "runs": runs,
        "environment": {"threads": 2, "parallel_jobs": 1},
        **extra,
    }
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record))


def test_report_md_has_no_nan_or_none_cells(tmp_path):
    _record(tmp_path / "a", "hierarchical", 4.0, 1.0)
    _record(tmp_path / "b", "flashvdm", 5.0, None, work_ratio=None)  # a job without fidelity figures (JSON null)
    _record(tmp_path / "c", "none", 1.0, None)
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    cells = [c.strip() for line in table for c in line.strip("|").split("|")]
    assert len(table) == 4  # header + 3 jobs
    assert not {"nan", "None", "null", ""} & set(cells), md
    assert cells.count(MISSING) >= 3  # flashvdm's iou, none's iou and work ratio
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert "chamfer" not in header  # a column no job has a value for is left out


def _overlaps(boxes):
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def test_plot_labels_of_points_on_top_of_each_other_do_not_overlap(tmp_path):
    # six jobs at nearly one point (a sweep of settings that all give IoU 1 at the same speed), two apart
    for k in range(6):
        _record(tmp_path / f"j{k}", "hierarchical", 4.0 + 0.01 * k, 1.0, overrides=[f"stack.accelerators.hierarchical.band={k / 10}"])
    _record(tmp_path / "far", "flashvdm", 8.0, 0.98, overrides=["stack.accelerators.hierarchical.band=0.9"])
    _record(tmp_path / "none", "none", 1.0, None, overrides=["stack.accelerators.hierarchical.band=0.0"])
    from accel3d.jobs.report import collect

    rows = [row_of(r) for r in collect(tmp_path).completed]
    fig = speed_fidelity_figure(rows)
    fig.canvas.draw()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text()]
    assert len(labels) == 7  # every job with a fidelity figure (the unaccelerated job has none)
    assert {t.get_text() for t in labels} >= {"hierarchical band=0.3", "flashvdm band=0.9"}
    assert _overlaps([t.get_window_extent(renderer) for t in labels]) == []
    assert fig._suptitle is not None and "fidelity" in fig._suptitle.get_text()
    one_x = [line for line in ax.get_lines() if list(line.get_xdata()) == [1.0, 1.0]]
    assert len(one_x) == 1 and "1x" in one_x[0].get_label()
