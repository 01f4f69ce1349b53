"""Fast-SAM3D's modules on the real TRELLIS v1 and SAM 3D Objects pipelines, with small random weights on CPU.

The paper's module-level ablation on the libraries' own classes: each configuration (a named stack, applied in one
call, ``accel3d.apply(pipeline, name)``) runs the pipeline's own ``sample_sparse_structure`` and ``sample_slat``,
and the table counts what each flow computed: SS model calls, SLaT model calls and the SLaT tokens they processed
(summed over forwards), the structure's voxels after the sparse-structure stage, and the median wall time after a
warm-up. With random weights this says nothing about fidelity, and the table does not report any: fidelity is
judged on the trained reference (``accel3d bench pruning``).

It needs the test-only installs of ``.ci/run`` (trellis-3d-ms, sam3d, spconv, ...) and runs from the repository
root: the real classes are imported by the tests' loaders (``tests/integrations/real_models.py``), which stand in for
the rendering packages their modules import.

    python scripts/bench_real_pruning.py                 # both libraries, 3 repeats
    python scripts/bench_real_pruning.py --library sam3d --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import accel3d  # noqa: E402
from tests.integrations import real_models, tiny_pipelines  # noqa: E402

CONFIGURATIONS = (
    "none", "modality_cache", "token_carving", "spectral_aggregation", "fastsam3d",
    "taylorseer", "easycache", "random_drop", "uniform_merge",
)  # fmt: skip


class Counter:
    """Forward calls of a model and the tokens its state held (a sparse tensor's rows, or a [B, N, C] tensor's N)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = self.tokens = 0
        self.hook = model.register_forward_pre_hook(self._count)

    def _count(self, _: Any, args: tuple) -> None:
        x = args[0]
        self.calls += 1
        self.tokens += int(x.feats.shape[0]) if hasattr(x, "feats") else int(x.shape[1]) if torch.is_tensor(x) and x.ndim == 3 else 0


def trellis_run(pipe: Any) -> tuple[Any, Any]:
    cond = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(3))
    cond = {"cond": cond, "neg_cond": torch.zeros_like(cond)}
    torch.manual_seed(0)
    coords = pipe.sample_sparse_structure(cond)
    return coords, pipe.sample_slat(cond, coords)


def sam3d_run(pipe: Any) -> tuple[Any, Any]:
    image = {"image": torch.linspace(0, 1, 48).reshape(1, 3, 4, 4)}
    torch.manual_seed(0)
    structure = pipe.sample_sparse_structure(dict(image))
    return structure["coords"], pipe.sample_slat(dict(image), structure["coords"], inference_steps=8)


LIBRARIES = {
    "trellis": (
        real_models.trellis_modules,
        tiny_pipelines.trellis_pipeline,
        trellis_run,
        "sparse_structure_flow_model",
        "slat_flow_model",
    ),
    "sam3d": (real_models.sam3d_modules, tiny_pipelines.sam3d_pipeline, sam3d_run, "ss_generator", "slat_generator"),
}


def _model(pipe: Any, key: str) -> torch.nn.Module:
    model = pipe.models[key]
    return getattr(getattr(model, "reverse_fn", None), "backbone", model)  # SAM3D: the generator's backbone


def bench(library: str, repeats: int, configurations: tuple[str, ...] = CONFIGURATIONS) -> list[dict[str, Any]]:
    """One row per configuration: model calls, SLaT tokens, voxels and the median seconds of ``repeats`` runs."""
    loader, build, run, ss_key, slat_key = LIBRARIES[library]
    rows = []
    with loader() as modules:
        if modules is None:
            sys.exit(real_models.TRELLIS_INSTALL if library == "trellis" else real_models.SAM3D_INSTALL)
        pipe = build(modules)
        for name in configurations:
            stack = None if name == "none" else accel3d.apply(pipe, name)
            try:
                with torch.no_grad():
                    run(pipe)  # warm-up
                    times = []
                    for _ in range(repeats):
                        ss, slat = Counter(_model(pipe, ss_key)), Counter(_model(pipe, slat_key))
                        start = time.perf_counter()
                        coords, _ = run(pipe)
                        times.append(time.perf_counter() - start)
                        ss.hook.remove()
                        slat.hook.remove()
            finally:
                if stack is not None:
                    accel3d.remove(pipe)
            rows.append(
                {"library": library, "config": name, "seconds": statistics.median(times), "ss_calls": ss.calls,
                 "slat_calls": slat.calls, "slat_tokens": slat.tokens, "voxels": len(coords)}
            )  # fmt: skip
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'library':<9}{'configuration':<22}{'time':>9}{'speed':>8}{'SS calls':>10}{'SLaT calls':>12}{'SLaT tokens':>13}{'voxels':>8}")
    for row in rows:
        base = next(r for r in rows if r["library"] == row["library"] and r["config"] == "none")
        print(
            f"{row['library']:<9}{row['config']:<22}{row['seconds']:>8.3f}s{base['seconds'] / row['seconds']:>7.2f}x"
            f"{row['ss_calls']:>10}{row['slat_calls']:>12}{row['slat_tokens']:>13}{row['voxels']:>8}"
        )
    print("random weights: the counts show what each module saves on the real classes; fidelity is not measured here")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", choices=(*LIBRARIES, "both"), default="both")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration, after one warm-up (default 3)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGURATIONS), help="the configurations to run (default: all)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1, got {args.repeats}")
    if unknown := sorted(set(args.configs) - set(CONFIGURATIONS)):
        parser.error(f"--configs: unknown {unknown}; expected some of {', '.join(CONFIGURATIONS)}")
    configurations = tuple(dict.fromkeys(["none", *args.configs]))  # the unaccelerated run is the reference
    torch.set_num_threads(max(1, torch.get_num_threads()))
    warnings.filterwarnings("ignore", message=".*autocast.*")
    libraries = LIBRARIES if args.library == "both" else [args.library]
    rows = [row for library in libraries for row in bench(library, args.repeats, configurations)]
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
