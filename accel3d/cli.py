"""The ``accel3d`` command.

accel3d run [HYDRA OVERRIDES...]        one job, or a sweep with -m
accel3d bench caching [OPTIONS]         SDS with and without Hash3D (tiny U-Net and the SD-2.1-base architecture)
accel3d bench decoding [OPTIONS]        dense vs hierarchical (+ adaptive KV) decoding benchmark
accel3d bench kernels [OPTIONS]         Triton kernels vs their PyTorch references (times Triton on a GPU)
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = __doc__


def config_dir() -> Path:
    """The packaged configs (wheel install) or the repository's ``configs/`` (editable install)."""
    packaged = Path(__file__).parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "configs"


def _run(argv: list[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="run")
    def app(cfg: DictConfig) -> None:
        from hydra.types import RunMode

        from accel3d.runner import run_job

        hc = HydraConfig.get()
        out_dir = Path(hc.runtime.output_dir)
        if hc.mode != RunMode.MULTIRUN:
            run_job(cfg, out_dir)
            return
        # A sweep job records itself, and a failure is recorded instead of raised, so that the
        # other jobs run and the sweep's summary is written; the sweep then exits with an error.
        from accel3d.sweep import begin_job, end_job

        record = begin_job(out_dir, Path(hc.sweep.dir), int(hc.job.num), list(hc.overrides.task))
        try:
            run_job(cfg, out_dir)
        except Exception as exc:
            import traceback

            traceback.print_exc()
            end_job(out_dir, record, exc)
            return
        end_job(out_dir, record)

    sys.argv = ["accel3d run", *argv]
    app()
    from accel3d import sweep

    if sweep.last_sweep_failure is not None:
        sys.exit(f"accel3d run: {sweep.last_sweep_failure}")


def main(argv: list[str] | None = None) -> None:
    try:
        _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # files are written atomically, so nothing half-written is left behind
        print("\naccel3d: interrupted", file=sys.stderr)
        sys.exit(130)


def _main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command == "run":
        _run(rest)
    elif command == "bench":
        from accel3d.bench import main as bench_main

        bench_main(rest)
    else:
        sys.exit(f"accel3d: unknown command '{command}'; expected 'run' or 'bench'\n{USAGE}")


if __name__ == "__main__":
    main()
