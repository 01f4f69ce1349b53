"""The comparison job: one pipeline, unaccelerated and with a stack, side by side.

Warm-up, then baseline and accelerated runs alternating (so that machine noise
hits both alike), N repeats, medians with their spread, the pipeline's fidelity,
each accelerator's headline figures and ceiling, and flags where a number should
not be trusted. It knows only the :class:`accel3d.core.Pipeline` contract and the
accelerator protocol, so every pipeline and strategy goes through it unchanged.

Example::

    from accel3d.jobs.compare import compare

    result = compare(pipeline, stack, pipeline.load_inputs(), repeats=3)
    result.rows["hierarchical"]["speedups"]["decode_s"]
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from accel3d.core.memory import peak_bytes, reset_peak
from accel3d.core.stack import Stack

NOISY_SPREAD = 1.5  # repeats whose slowest is more than 1.5x their fastest are flagged
CEILING_TOLERANCE = 1.25  # a speedup more than 25% above the ceiling the skipped work allows is noise


@dataclass
class Comparison:
    """Results and rows of one comparison: ``rows[run]`` for ``baseline`` and the stack's name."""

    runs: dict[str, list[Any]]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    warmup: bool = True

    @property
    def baseline(self) -> Any | None:
        return self.runs["baseline"][-1] if self.runs.get("baseline") else None

    def last(self, name: str) -> Any:
        return self.runs[name][-1]


def compare(
    pipeline: Any,
    stack: Stack | list[Stack],
    inputs: Any,
    repeats: int = 3,
    baseline: bool = True,
    warmup: bool = True,
    log: Callable[[str], None] | None = None,
) -> Comparison:
    """Run ``pipeline`` on ``inputs`` without and with ``stack`` (or each of several stacks), ``repeats`` times
    each, alternating: baseline, stack 1, stack 2, ..., then again."""
    from accel3d.core.validate import ArgumentError, check_int

    check_int("repeats", repeats, low=1)
    stacks = [s for s in ([stack] if isinstance(stack, Stack) else list(stack)) if not s.is_empty]
    names = [s.name for s in stacks]
    if "baseline" in names or len(set(names)) != len(names):
        raise ArgumentError(f"stack: names must be unique and not 'baseline' (the unaccelerated run), got {names}")
    log = log or (lambda text: print(f"[accel3d] {text}", file=sys.stderr, flush=True))
    if warmup:
        log("warm-up run (untimed) ...")
        pipeline.run(inputs, **pipeline.warmup_overrides())
    runs: dict[str, list[Any]] = {"baseline": [], **{s.name: [] for s in stacks}}
    figures: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    with_baseline = baseline or not stacks
    total = repeats * (with_baseline + len(stacks))
    done = 0
    for i in range(repeats):
        tag = f" ({i + 1}/{repeats})" if repeats > 1 else ""
        if with_baseline:
            log(f"unaccelerated run{tag}{_eta(start, done, total)} ...")
            runs["baseline"].append(_measured(pipeline, inputs))
            done += 1
        for s in stacks:
            log(f"accelerated run ({s.name}){tag}{_eta(start, done, total)} ...")
            s.reset()
            with s.applied(pipeline):
                result = _measured(pipeline, inputs)
            _exclude_measurement(pipeline, s, result)
            figures[s.name] = _accelerator_figures(s)
            runs[s.name].append(result)
            done += 1
    comparison = Comparison(runs, warmup=warmup)
    base_rows = runs["baseline"]
    if base_rows:
        comparison.rows["baseline"] = _timing_row(base_rows)
    for s in stacks:
        row = comparison.rows[s.name] = _timing_row(runs[s.name])
        row.update(figures[s.name])
        if base_rows:
            base_t = comparison.rows["baseline"]["timings"]
            row["speedups"] = {
                k: base_t[k]["median"] / v["median"]
                for k, v in row["timings"].items()
                if k in base_t and v["median"] > 0 and k != "excluded_s"
            }
            row["fidelity"] = pipeline.fidelity(base_rows[-1], runs[s.name][-1])
        row["flags"] = _flags(pipeline, comparison.rows, s.name)
    return comparison


def _eta(start: float, done: int, total: int) -> str:
    if not done:
        return ""
    left = (time.perf_counter() - start) / done * (total - done)
    return f", about {left:.0f} s left"


def _exclude_measurement(pipeline: Any, stack: Stack, result: Any) -> None:
    """Time the accelerators spent only measuring themselves (fidelity checks) is not part of the run."""
    for acc in stack.accelerators:
        spent = acc.excluded_seconds()
        if spent:
            key = pipeline.stage_timings.get(acc.stage)
            for k in {key, "total_s"} - {None}:
                if k in result.timings:
                    result.timings[k] -= spent
            result.timings["excluded_s"] = result.timings.get("excluded_s", 0.0) + spent


def _accelerator_figures(stack: Stack) -> dict[str, Any]:
    figures: dict[str, Any] = {"summary": stack.summary(), "stats": stack.stats(), "ceilings": {}, "fallbacks": {}}
    bounds = []
    for key, acc in zip(stack.names, stack.accelerators):
        ceiling = acc.ceiling()
        bounds.append(ceiling)
        if ceiling is not None:
            figures["ceilings"][key] = {"stage": acc.stage, "ceiling": ceiling}
        reason = acc.fell_back()
        if reason:
            figures["fallbacks"][key] = reason
    # The work ratio of the whole stack is known only when every accelerator states its own; savings of
    # accelerators on different parts of the work multiply.
    figures["work_ratio"] = float(math.prod(bounds)) if bounds and all(b is not None for b in bounds) else None
    return figures


def _timing_row(results: list[Any]) -> dict[str, Any]:
    keys = [k for k in results[-1].timings if all(k in r.timings for r in results)]
    timings = {}
    for k in keys:
        values = [float(r.timings[k]) for r in results]
        med = statistics.median(values)
        timings[k] = {"median": med, "min": min(values), "max": max(values), "repeats": values}
    memory: dict[str, int] = {}  # the highest peak of each stage over the repeats, in bytes
    for r in results:
        found = getattr(r, "memory", None)
        for k, v in (found if isinstance(found, dict) else {}).items():
            memory[k] = max(memory.get(k, 0), int(v))
    return {"repeats": len(results), "timings": timings, "peak_memory_bytes": memory}


def _measured(pipeline: Any, inputs: Any) -> Any:
    """One run; where the pipeline does not measure its stages' peak memory itself, the whole run's (``total_s``)."""
    reset_peak()
    result = pipeline.run(inputs)
    found = getattr(result, "memory", None)
    if not (isinstance(found, dict) and found):
        with contextlib.suppress(AttributeError):  # a result that takes no attributes goes without
            result.memory = {"total_s": peak_bytes()}
    return result


def _flags(pipeline: Any, rows: dict[str, dict[str, Any]], name: str) -> list[str]:
    """Why a ratio should not be trusted: noisy repeats, a speedup above its ceiling, a dense fallback."""
    flags = []
    headline = pipeline.headline_timing
    for run in ("baseline", name):
        t = rows.get(run, {}).get("timings", {}).get(headline)
        if t and t["min"] > 0 and t["max"] / t["min"] > NOISY_SPREAD:
            flags.append(f"noisy: {run} {headline} repeats range {t['min']:.3g}-{t['max']:.3g} s")
    row = rows[name]
    ratio = row.get("work_ratio")
    stages = {c["stage"] for c in row.get("ceilings", {}).values()}
    stage_key = pipeline.stage_timings.get(next(iter(stages)), headline) if len(stages) == 1 else headline
    measured = row.get("speedups", {}).get(stage_key)
    if ratio is not None and measured is not None and measured > ratio * CEILING_TOLERANCE:
        flags.append(
            f"{stage_key} speedup {measured:.2f}x is more than 25% above the {ratio:.2f}x that the skipped work alone "
            "would give: either the work left costs less per unit, or the timings are noisy"
        )
    for reason in row.get("fallbacks", {}).values():
        flags.append(f"no saving: {reason}")
    return flags
