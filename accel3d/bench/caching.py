"""``accel3d bench caching``: the same SDS loop, same seed, with and without Hash3D.

Sections:

1. ``tiny``: the tiny U-Net. The unaccelerated loop and Hash3D with the paper's
   settings are run ``--repeats`` times, alternating, after a warm-up; medians.
   Then the ablations, one run each against the median baseline: fixed grids of
   10/20/30 against the adaptive grid, the retrieval probability, feature against
   noise caching, a temporal-only (DeepCache-style) grid, exact-cell matching, and
   the number of hash buckets.
2. ``sd21``: the SD-2.1-base architecture at a 32x32 latent (random init). First the
   ceiling: one full and one partial forward, timed side by side (median of
   ``--calibration-repeats`` after a warm-up). Then the unaccelerated loop and
   Hash3D, ``--sd-iterations`` steps each.
3. ``novel_view``: the trained novel-view U-Net (the ``sds`` pipeline's default), image-
   conditioned SDS of the bundled bunny, ``--novel-iterations`` steps, ``--repeats``
   alternating runs; then the ablations that test the paper's claims: adaptive against
   fixed grids, exact cells against colliding buckets (also at about the exact cells' hit
   rate, through a lower retrieval probability), feature against noise caching, and
   temporal-only reuse. Then one pair of runs ``--novel-long-iterations`` long, to find the
   step count from which the U-Net-only speedup stays above the paper's 3.3x. Each run also
   reports its turntable's PSNR and SSIM against the true views of the mesh (poses never
   trained on).

Every row reports the end-to-end and U-Net-only speedups (wall time of the whole
loop and of its U-Net calls, fidelity checks excluded), the hit rate, the share of
hits served across a hash collision, the fidelity of the reused noise predictions
against a full forward on the same input (cosine similarity and relative L2 error,
sampled every ``--check-every``-th call with hits), the PSNR between the final
turntable renders of the two runs, and the hash-table overhead as a share of the
step time.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Any

import torch

from accel3d.bench import output_path, write_results
from accel3d.bench.options import CACHING_SECTIONS as SECTIONS
from accel3d.bench.options import caching_parser
from accel3d.caching import Hash3D
from accel3d.caching.unet_cut import UNetCut
from accel3d.core.stack import Stack
from accel3d.geometry.metrics import psnr
from accel3d.jobs.compare import compare as compare_runs
from accel3d.models.sds.pipeline import SDSPipeline

ABLATIONS: dict[str, dict[str, Any]] = {
    "fixed grid 10": {"grids": [[10, 10, 0.1, 10]]},
    "fixed grid 20": {"grids": [[20, 20, 0.15, 20]]},
    "fixed grid 30": {"grids": [[30, 30, 0.2, 30]]},
    "adaptive (paper)": {},
    "retrieve_prob 0.3": {"retrieve_prob": 0.3},
    "retrieve_prob 0.5": {"retrieve_prob": 0.5},
    "retrieve_prob 0.7": {"retrieve_prob": 0.7},
    "retrieve_prob 1.0": {"retrieve_prob": 1.0},
    "noise caching": {"mode": "noise"},
    "temporal only (DeepCache-style)": {"grids": [[math.inf, math.inf, math.inf, 10]]},
    "temporal only, retrieve_prob 1.0": {"grids": [[math.inf, math.inf, math.inf, 10]], "retrieve_prob": 1.0},
    "exact cells": {"exact_cells": True},
    "retrieve_prob 0.15 (about the exact cells' hit rate)": {"retrieve_prob": 0.15},
    "num_buckets 50": {"num_buckets": 50},
    "num_buckets 1000": {"num_buckets": 1000},
}


TARGET_UNET_SPEEDUP = 3.3  # the paper's Zero-123 figure, the target over a whole run

NOVEL_VIEW_ABLATIONS = ("fixed grid 10", "fixed grid 20", "fixed grid 30", "exact cells",
                        "retrieve_prob 0.15 (about the exact cells' hit rate)", "noise caching",
                        "temporal only (DeepCache-style)", "temporal only, retrieve_prob 1.0", "retrieve_prob 1.0")  # fmt: skip


def paper_settings() -> dict[str, Any]:
    """Hash3D's settings from configs/accelerator/hash3d.yaml (what `stack=hash3d` runs), less the per-bench knobs."""
    from accel3d.jobs.configs import accelerator_settings

    settings = accelerator_settings("hash3d", "hash3d", pipeline="sds")
    return {k: v for k, v in settings.items() if k not in ("check_every", "seed")}


def merge_sections(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A run of some sections replaces only those sections of the saved results."""
    merged = {**saved, **new}
    merged["args_by_section"] = {**saved.get("args_by_section", {}), **{s: new["args"] for s in SECTIONS if s in new}}
    return merged


def _run_of(comparison: Any, name: str, hash3d: Hash3D | None) -> dict[str, Any]:
    """One method's figures from the comparison job: median times (fidelity checks already taken out), and the
    statistics, per-call hits and per-step U-Net times of its last run (the runs repeat exactly, same seed)."""
    row, result = comparison.rows[name], comparison.last(name)
    run = {"result": result, **{k: t["median"] for k, t in row["timings"].items()}}
    if hash3d is not None:
        run["stats"] = hash3d.stats()
        run["hits"] = list(hash3d.history)
        run["unet_steps"] = [u - c for u, c in zip(result.unet_steps, hash3d.check_history)]
    return run


def cumulative_speedup(base_steps: list[float], run_steps: list[float]) -> list[float]:
    """U-Net-only speedup over the first n steps, for every n, from one run of each. The runs share seed, cameras,
    timesteps and noise, and the table only fills, so the first n steps of a long run are an n-step run."""
    base_total = run_total = 0.0
    curve = []
    for b, r in zip(base_steps, run_steps):
        base_total, run_total = base_total + b, run_total + r
        curve.append(base_total / run_total if run_total > 0 else math.inf)
    return curve


def crossover_step(curve: list[float], target: float) -> int | None:
    """The first step count n from which the speedup over the first n steps stays >= target to the end
    (None: it ends below the target)."""
    below = [n for n, value in enumerate(curve, 1) if value < target]
    if not below:
        return 1 if curve else None
    return below[-1] + 1 if below[-1] < len(curve) else None


def row(name: str, base: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    stats = run["stats"]
    curve = cumulative_speedup(base["result"].unet_steps, run["unet_steps"])
    hits = stats.get("hits", 0)
    quarter = max(len(run["hits"]) // 4, 1)
    return run["result"].truth_scores | {
        "method": name,
        "total_s": run["total_s"],
        "unet_s": run["unet_s"],
        "speedup_total": base["total_s"] / run["total_s"],
        "speedup_unet": base["unet_s"] / run["unet_s"],
        "hit_rate": stats["hit_rate"],
        "cross_cell_share": stats.get("cross_cell_hits", 0) / hits if hits else 0.0,
        "eps_cosine": stats.get("check_cosine", math.nan),
        "eps_rel_l2": stats.get("check_rel_l2", math.nan),
        "checked": stats.get("checks", 0),
        "psnr_db": psnr(base["result"].renders, run["result"].renders),
        "hash_overhead": stats.get("hash_s", 0.0) / run["total_s"],
        "hash_ms_per_step": 1000 * stats.get("hash_s", 0.0) / max(stats.get("calls", 1), 1),
        "last_quarter_hit_rate": sum(run["hits"][-quarter:]) / quarter,
        "last_quarter_speedup_unet": sum(base["result"].unet_steps[-quarter:]) / sum(run["unet_steps"][-quarter:]),
        "unet_speedup_by_tenth": [curve[max(len(curve) * k // 10, 1) - 1] for k in range(1, 11)] if curve else [],
        "crossover_step": crossover_step(curve, TARGET_UNET_SPEEDUP),
        "table_entries": stats.get("table_entries", 0),
        "table_megabytes": stats.get("table_bytes", 0) / 2**20,
    }


def compare(pipe: SDSPipeline, repeats: int, check_every: int, seed: int, ablations: bool | tuple[str, ...]) -> dict[str, Any]:
    """The unaccelerated loop against Hash3D (paper settings), alternating, through the comparison job; then each
    ablation once against the same baseline."""
    inputs = pipe.load_inputs()
    log = lambda text: print(f"[bench caching] {text}", file=sys.stderr, flush=True)
    paper = Hash3D(check_every=check_every, seed=seed, **paper_settings())
    main = compare_runs(pipe, Stack({"hash3d": paper}, name="hash3d (paper settings)"), inputs, repeats=repeats, log=log)
    base = _run_of(main, "baseline", None)
    rows = [row("hash3d (paper settings)", base, _run_of(main, "hash3d (paper settings)", paper))]
    if ablations:
        chosen = {n: o for n, o in ABLATIONS.items() if ablations is True or n in ablations}
        accs = {name: Hash3D(check_every=check_every, seed=seed, **{**paper_settings(), **o}) for name, o in chosen.items()}
        stacks = [Stack({"hash3d": acc}, name=name) for name, acc in accs.items()]
        more = compare_runs(pipe, stacks, inputs, repeats=1, baseline=False, warmup=False, log=log)
        rows += [row(name, base, _run_of(more, name, acc)) for name, acc in accs.items()]
    baseline = {"total_s": base["total_s"], "unet_s": base["unet_s"], "render_s": base["render_s"], "repeats": repeats}
    return {"baseline": baseline | base["result"].truth_scores, "rows": rows}


def calibrate(pipe: SDSPipeline, repeats: int) -> dict[str, float]:
    """Full and partial forward of the U-Net on one CFG pair, timed side by side."""
    unet = pipe.unet
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, unet.config.in_channels, pipe.latent_size, pipe.latent_size, generator=gen)
    inputs = pipe.load_inputs()
    text = pipe.conditioning(inputs, inputs.reference.camera if inputs.reference is not None else None)
    cut = UNetCut(unet)
    with torch.no_grad(), cut.capture() as captured:
        unet(x, 500, encoder_hidden_states=text)
    feature = captured["feature"]
    full, partial = [], []
    with torch.no_grad():
        cut.partial(feature, x, 500, text)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            unet(x, 500, encoder_hidden_states=text)
            full.append(time.perf_counter() - start)
            start = time.perf_counter()
            cut.partial(feature, x, 500, text)
            partial.append(time.perf_counter() - start)
    f, p = statistics.median(full), statistics.median(partial)
    return {"full_s": f, "partial_s": p, "ceiling": f / p, "cut": cut.point.name}


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("method", "{}"),
        ("speedup_total", "{:.2f}x"),
        ("speedup_unet", "{:.2f}x"),
        ("hit_rate", "{:.1%}"),
        ("cross_cell_share", "{:.0%}"),
        ("eps_cosine", "{:.4f}"),
        ("eps_rel_l2", "{:.4f}"),
        ("psnr_db", "{:.2f}"),
        ("hash_overhead", "{:.2%}"),
        ("last_quarter_hit_rate", "{:.1%}"),
        ("last_quarter_speedup_unet", "{:.2f}x"),
    ]
    head = ["method", "end-to-end", "U-Net only", "hit rate", "hits across a collision", "eps cosine", "eps rel L2", "PSNR dB"]
    head += ["hash overhead", "hit rate, last 1/4", "U-Net only, last 1/4"]
    if rows and "truth_psnr_db" in rows[0]:  # image-conditioned SDS of a mesh: each run against the true views
        cols += [("truth_psnr_db", "{:.2f}"), ("truth_ssim", "{:.3f}")]
        head += ["PSNR vs truth dB", "SSIM vs truth"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(r[k]) for k, fmt in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """``accel3d bench caching`` with these command-line arguments."""
    run(caching_parser().parse_args(argv))


def run(args: argparse.Namespace) -> None:
    output_path(args, "caching")  # a bad --out fails now, not after the work
    report: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch_threads": torch.get_num_threads(), "args": vars(args)}
    common = {"seed": args.seed, "progress": False}
    if "tiny" in args.sections:
        print(f"[bench caching] tiny U-Net, {args.tiny_iterations} SDS steps", file=sys.stderr)
        pipe = SDSPipeline(backbone="tiny", iterations=args.tiny_iterations, **common)
        report["tiny"] = {"iterations": args.tiny_iterations, "calibration": calibrate(pipe, max(args.calibration_repeats, 5))}
        report["tiny"].update(compare(pipe, args.repeats, args.check_every, args.seed, not args.no_ablations))
        print_section("tiny U-Net (random init), 32x32 latent", report["tiny"])
    if "sd21" in args.sections:
        print(f"[bench caching] SD-2.1-base architecture, {args.sd_iterations} SDS steps", file=sys.stderr)
        pipe = SDSPipeline(backbone="sd21_base", iterations=args.sd_iterations, **common)
        report["sd21"] = {"iterations": args.sd_iterations, "calibration": calibrate(pipe, args.calibration_repeats)}
        report["sd21"].update(compare(pipe, 1, args.sd_check_every, args.seed, ablations=False))
        print_section("SD-2.1-base architecture (random init), 32x32 latent", report["sd21"])
    if "novel_view" in args.sections:
        print(f"[bench caching] trained novel-view U-Net, {args.novel_iterations} SDS steps", file=sys.stderr)
        pipe = SDSPipeline(iterations=args.novel_iterations, **common)
        report["novel_view"] = {"iterations": args.novel_iterations, "calibration": calibrate(pipe, max(args.calibration_repeats, 5))}
        ablations = False if args.no_ablations else NOVEL_VIEW_ABLATIONS
        report["novel_view"].update(compare(pipe, args.repeats, args.check_every, args.seed, ablations))
        print_section("trained novel-view U-Net, image-conditioned SDS of the bunny, 32x32 RGB", report["novel_view"])
        if args.novel_long_iterations:  # where the cold start stops limiting: one longer pair of runs
            steps = args.novel_long_iterations
            print(f"[bench caching] trained novel-view U-Net, a longer run: {steps} SDS steps", file=sys.stderr)
            long_pipe = SDSPipeline(iterations=steps, **common)
            report["novel_view"]["long_run"] = {"iterations": steps} | compare(long_pipe, 1, args.check_every, args.seed, False)
            print_long_run(report["novel_view"]["long_run"])
    for section in SECTIONS:
        for part in (report.get(section, {}), report.get(section, {}).get("long_run", {})):
            for r in part.get("rows", []):
                r.pop("result", None)
    write_results(args, "caching", report, merge_sections)


def print_section(title: str, section: dict[str, Any]) -> None:
    cal, base = section["calibration"], section["baseline"]
    print(f"\n## {title}: {section['iterations']} SDS steps")
    print(
        f"U-Net forward on a CFG pair: full {cal['full_s'] * 1000:.1f} ms, partial (cut {cal['cut']}) {cal['partial_s'] * 1000:.1f} ms "
        f"-> U-Net-only ceiling {cal['ceiling']:.2f}x"
    )
    truth = f"; turntable vs truth {base['truth_psnr_db']:.2f} dB, SSIM {base['truth_ssim']:.3f}" if "truth_psnr_db" in base else ""
    print(f"unaccelerated loop: {base['total_s']:.2f} s, of which U-Net {base['unet_s']:.2f} s (median of {base['repeats']}){truth}\n")
    print(markdown(section["rows"]))
    print(crossover_line(section["rows"][0], section["iterations"]))


def crossover_line(r: dict[str, Any], steps: int) -> str:
    """The paper row's U-Net-only speedup as the run goes on, and where it reaches the target for good."""
    by_tenth = ", ".join(f"{value:.2f}x" for value in r["unet_speedup_by_tenth"])
    step = r["crossover_step"]
    where = f"from step {step} of {steps} on" if step is not None else f"not within {steps} steps"
    return (f"\n{r['method']}: U-Net-only speedup over the first 10%, 20%, ... of the steps (last run of each): {by_tenth}; "
            f">= {TARGET_UNET_SPEEDUP}x {where}")  # fmt: skip


def print_long_run(section: dict[str, Any]) -> None:
    base, (r,) = section["baseline"], section["rows"]
    truth = f"; vs truth {base['truth_psnr_db']:.2f} dB unaccelerated, {r['truth_psnr_db']:.2f} dB Hash3D" if "truth_psnr_db" in r else ""
    print(f"\n### the same, {section['iterations']} SDS steps (one run each)")
    speed = f"Hash3D {r['unet_s']:.2f} s ({r['speedup_unet']:.2f}x), hit rate {r['hit_rate']:.1%}"
    print(f"unaccelerated U-Net {base['unet_s']:.2f} s; {speed}{truth}")
    print(crossover_line(r, section["iterations"]))
