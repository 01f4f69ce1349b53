"""The plain-text table of a comparison, built from the pipeline contract and the accelerators' headline figures."""

from __future__ import annotations

from typing import Any

from accel3d.core.memory import MEASURES, memory_measure


def text_table(header: list[str], lines: list[list[str]], note: str) -> str:
    """Columns padded to their widest cell (first column left-aligned), a rule under the header, a note below."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda row: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(row) for row in lines] + ([note] if note else []))


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _timing(t: dict[str, Any]) -> str:
    med = t["median"]
    spread = (t["max"] - t["min"]) / 2 / med * 100 if med > 0 and len(t["repeats"]) > 1 else 0.0
    return f"{med:.2f} ±{spread:.0f}%" if len(t["repeats"]) > 1 else f"{med:.2f}"


def format_table(pipeline: Any, rows: dict[str, dict[str, Any]], parallel_jobs: int = 1, warmup: bool = True) -> str:
    """One line per run: headline and total time (median ± half the range of the repeats), the headline
    speedup, the ceiling the skipped work allows, the pipeline's figures and fidelity, and the accelerators'
    headline figures; flags below."""
    head_key = pipeline.headline_timing
    timing_keys = list(dict.fromkeys([head_key, *pipeline.table_timings, "total_s"]))
    figure_keys = list(dict.fromkeys(k for r in rows.values() for k in r.get("figures", {})))
    fidelity_keys = list(dict.fromkeys(k for r in rows.values() for k in r.get("fidelity", {})))
    summary_keys = list(dict.fromkeys((a, k) for r in rows.values() for a, s in r.get("summary", {}).items() for k in s))
    header = ["run", *(k.removesuffix("_s") + " s" for k in timing_keys), *(k.removesuffix("_s") + " speedup" for k in timing_keys)]
    memory_keys = [k for k in timing_keys if any(k in r.get("peak_memory_bytes", {}) for r in rows.values())]
    header += [k.removesuffix("_s") + " peak MiB" for k in memory_keys]
    header += ["work ratio", *figure_keys]
    header += [*fidelity_keys, *(f"{a}.{k}" for a, k in summary_keys)]
    lines = []
    for name, r in rows.items():
        t = r["timings"]
        line = [name, *(_timing(t[k]) if k in t else "-" for k in timing_keys)]
        for k in timing_keys:
            line.append(f"{r['speedups'][k]:.2f}x" if k in r.get("speedups", {}) else ("1.00x" if name == "baseline" else "-"))
        peaks = r.get("peak_memory_bytes", {})
        line += [f"{peaks[k] / 2**20:,.0f}" if k in peaks else "-" for k in memory_keys]
        line.append(f"{r['work_ratio']:.2f}x" if r.get("work_ratio") else "-")
        line += [number(r.get("figures", {}).get(k, "-")) for k in figure_keys]
        line += [number(r["fidelity"][k]) if k in r.get("fidelity", {}) else ("ref" if name == "baseline" else "-") for k in fidelity_keys]
        line += [number(r.get("summary", {}).get(a, {}).get(k, "-")) for a, k in summary_keys]
        lines.append(line)
    notes = [
        f"(times: median of the repeats ± half their range{', after a warm-up' if warmup else ', no warm-up'}; speedups: time ratios"
        f" against the unaccelerated run, {head_key} the headline;",
        " work ratio: the speedup the skipped work alone would give (dense/kept queries, full/partial U-Net cost x hit rate);",
        " fidelity: the accelerated output against the unaccelerated one)",
    ]
    if memory_keys:
        notes.append(f"(peak MiB: {MEASURES[memory_measure()]}, the highest over the repeats)")
    if parallel_jobs > 1:
        notes.append(f"note: {parallel_jobs} jobs ran at once; these timings are not comparable with sequential ones")
    for name, r in rows.items():
        notes += [f"flag ({name}): {flag}" for flag in r.get("flags", [])]
    return text_table(header, lines, "\n".join(notes))


def captions(pipeline: Any, rows: dict[str, dict[str, Any]]) -> dict[str, str]:
    """One line per run for the pictures a job writes: its headline time, its speedup, its fidelity and its
    accelerators' headline figures.

    The pipeline's ``caption_metrics`` (default: every fidelity figure) choose the fidelity figures shown.
    Example: ``{"baseline": "decode 46.24 s", "hierarchical": "decode 3.58 s (12.90x) · iou 1 · chamfer 0 · fscore 1
    · hierarchical query_fraction 0.08397"}``.
    """
    key = pipeline.headline_timing
    shown = pipeline.caption_metrics
    out = {}
    for name, r in rows.items():
        t = r["timings"].get(key)
        parts = [f"{key.removesuffix('_s')} {t['median']:.2f} s" if t else f"{key.removesuffix('_s')} -"]
        if key in r.get("speedups", {}):
            parts[0] += f" ({r['speedups'][key]:.2f}x)"
        fidelity = r.get("fidelity", {})
        parts += [f"{k} {number(fidelity[k])}" for k in (shown or fidelity) if k in fidelity]
        parts += [f"{acc} {k} {number(v)}" for acc, figures in r.get("summary", {}).items() for k, v in figures.items()]
        out[name] = " · ".join(parts)
    return out
