"""The ``accel3d`` command.

accel3d run [HYDRA OVERRIDES...]        one job, or a sweep with -m
accel3d report DIR [--fidelity METRIC]  every run record under DIR into report.csv, report.md and a plot
accel3d list [SECTION...]               pipelines and their stages, stacks, accelerators and their knobs
accel3d --version
accel3d run -sc install=bash             tab completion for accel3d run (bash; zsh with bashcompinit)
accel3d bench caching [OPTIONS]         SDS with and without Hash3D (tiny U-Net and the SD-2.1-base architecture)
accel3d bench decoding [OPTIONS]        dense vs hierarchical (+ adaptive KV) decoding benchmark
accel3d bench kernels [OPTIONS]         Triton kernels vs their PyTorch references (times Triton on a GPU)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from accel3d.jobs.configs import config_dir  # the configs' location (re-exported for callers)

USAGE = __doc__


# Errors: one line, or a traceback. An error that can only come from what the user gave -- a knob, an input
# file, an output folder, the data -- is printed as `accel3d <command>: <message>` (for `run`, with where the
# failed record is; the record keeps the traceback, and HYDRA_FULL_ERROR=1 prints it as well). These are:
#   - accel3d.core.validate.ArgumentError: every knob check raises it, and the job layer marks the user's input
#     with it where it reads it (jobs.run.build for the configs, jobs.run.load_inputs for the input file,
#     jobs.report for --fidelity);
#   - a plain ValueError whose message begins with the name of one of the command's knobs (`level: 0.5 gives no
#     surface`, `input: ...`): accel3d's messages name the argument first, a bug's do not;
#   - FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError, and the OSErrors
#     of a full or read-only disk: a path the user chose, to read or to write;
#   - FloatingPointError: accel3d's kernels and checks raise it when NaN or inf reach them, naming the tensor;
#   - MemoryError: a grid or a model that does not fit this machine (the resolution check says by how much).
# Everything else keeps its traceback as a bug in accel3d (or a library): a TypeError that is not an
# ArgumentError (a wrong call is the commonest bug), a ValueError naming no knob, RuntimeError, AttributeError...
PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)
DISK_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS"}


def user_facing(exc: BaseException, knobs: Collection[str] = ()) -> bool:
    """Whether ``exc`` is the user's to fix (one line) rather than a bug (a traceback); see the rule above."""
    import errno
    import re

    from accel3d.core.validate import ArgumentError

    if isinstance(exc, (ArgumentError, *PATH_ERRORS, FloatingPointError, MemoryError)):
        return True
    if isinstance(exc, OSError) and exc.errno is not None and errno.errorcode.get(exc.errno) in DISK_ERRNOS:
        return True
    if isinstance(exc, ValueError) and not isinstance(exc, TypeError):
        named = re.match(r"\s*-{0,2}([A-Za-z_][\w.-]*)(\[\w+\])?: ", str(exc))
        return bool(named) and (named[1] in knobs or named[1].rsplit(".", 1)[-1] in knobs)
    return False


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _full_error() -> bool:
    """HYDRA_FULL_ERROR=1: tracebacks for every error, as Hydra gives them (the one-line forms stay off)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _knobs_of(cfg: Any) -> set[str]:
    """Every key of a composed config, as its leaf name and as its dotted path (``level``, ``pipeline.level``)."""
    from omegaconf import OmegaConf

    names: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items() if isinstance(node, dict) else ():
            names.update((str(key), f"{prefix}{key}"))
            walk(value, f"{prefix}{key}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return names


def _run(argv: list[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="run")
    def app(cfg: DictConfig) -> None:
        from hydra.types import RunMode

        from accel3d.jobs.run import run_job

        hc = HydraConfig.get()
        out_dir = Path(hc.runtime.output_dir)
        parallel = _parallel_jobs(hc)
        if parallel > 1:  # progress bars of jobs running at once would interleave; the one-line logs stay
            os.environ["TQDM_DISABLE"] = "1"
        if hc.mode != RunMode.MULTIRUN:
            try:
                run_job(cfg, out_dir, parallel_jobs=parallel)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: main() says which and exits
                print(f"accel3d run: the interrupted job's record is in {out_dir}", file=sys.stderr)
                raise
            except Exception as exc:
                if _full_error() or not user_facing(exc, _knobs_of(cfg)):
                    raise  # a bug: Hydra prints its traceback
                sys.exit(f"accel3d run: {_message(exc)}\n(the failed record is in {out_dir}; HYDRA_FULL_ERROR=1 shows the traceback)")
            return
        # A sweep job's failure is recorded (record.json, status failed) instead of raised, so that the
        # other jobs run and the sweep's report is written; the sweep then exits with an error. An interruption
        # (KeyboardInterrupt) stops the sweep.
        from accel3d.jobs.sweep import current_sweep_id

        info = {"sweep": current_sweep_id(Path(hc.sweep.dir)), "job": int(hc.job.num), "overrides": list(hc.overrides.task)}
        try:
            run_job(cfg, out_dir, info, parallel_jobs=parallel)
        except KeyboardInterrupt:
            print(f"accel3d run: job {hc.job.num} was interrupted; its record is in {out_dir}", file=sys.stderr)
            raise
        except Exception as exc:
            import traceback

            if not _full_error() and user_facing(exc, _knobs_of(cfg)):
                print(f"accel3d run: job {hc.job.num}: {_message(exc)}", file=sys.stderr)
            else:
                traceback.print_exc()

    argv = _expand_home(argv)
    if _pipeline_target(argv) and os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m` finds it
        sys.path.append(os.getcwd())  # after the installed packages: a local file does not shadow them
        # and for a launcher's worker processes (joblib, submitit), which start afresh
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), os.getcwd()]))
    argv = _custom_pipeline_overrides(argv)
    _check_knob_names(argv)
    _check_output_folders(argv)
    from accel3d.jobs.configs import register_configs

    register_configs()  # the accelerators' dataclasses, which configs/accelerator/*.yaml extend
    # Hydra names the program in its help and its completion script after argv[0]; completion queries
    # go to `accel3d -sc`, which routes them here.
    sys.argv = ["accel3d" if argv[:1] in (["-sc"], ["--shell-completion"]) else "accel3d run", *argv]
    app()  # a sweep with failed jobs exits from its SweepSummary callback, after its report


NO_OUTPUT_FLAGS = ("-h", "--help", "--hydra-help", "-i", "--info", "-c", "--cfg", "-sc", "--shell-completion")


def output_folders(argv: list[str]) -> list[tuple[str, Path]]:
    """The folder `accel3d run` ARGV writes into, with the knob that chooses it: ``hydra.run.dir`` for one job,
    ``hydra.sweep.dir`` for a multirun (its jobs' folders are inside it); none for --help, --cfg, completion.

    A value with interpolations (run.yaml's ``outputs/${now:...}``) is judged by its fixed leading part (the
    folder ``outputs``, in the working directory)."""
    from omegaconf import OmegaConf

    if any(a in NO_OUTPUT_FLAGS for a in argv):
        return []
    key = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in argv) else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in argv if a.lstrip("+").split("=", 1)[0] == key and "=" in a]
    if given:
        value = given[-1].strip()
        if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
    else:
        node: Any = OmegaConf.to_container(OmegaConf.load(config_dir() / "run.yaml"), resolve=False)
        for part in key.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        value = node if isinstance(node, str) else ""
        if not value:  # run.yaml does not set it: Hydra's own default, outputs/... or multirun/...
            value = "outputs/${now:}" if key == "hydra.run.dir" else "multirun/${now:}"
    fixed = value.split("${", 1)[0]
    if "${" in value:
        if not fixed:
            return []  # nothing known before the run resolves it
        fixed = os.path.dirname(fixed)
    return [(key, Path(os.path.expanduser(fixed or ".")))]


def _check_output_folders(argv: list[str]) -> None:
    """Refuse an output folder that cannot be written, before Hydra creates it (and before any model call)."""
    from accel3d.core.io import check_output_folder

    for knob, folder in output_folders(argv):
        try:
            check_output_folder(folder, knob)
        except OSError as exc:
            sys.exit(f"accel3d run: {exc}; choose another with {knob}=FOLDER")


def _expand_home(argv: list[str]) -> list[str]:
    """``key=~/path`` as a shell would expand it: Hydra's override parser refuses a bare ``~`` in a value.
    (A leading ``~`` on the key, ``~key``, is Hydra's delete override and stays as it is.)"""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and not key.startswith("~") and value.startswith("~"):
            arg = f"{key}={os.path.expanduser(value)}"
        out.append(arg)
    return out


def _pipeline_target(argv: list[str]) -> str | None:
    """The ``pipeline._target_`` a command line sets (``pipeline=custom`` needs one), else None."""
    return next((a.split("=", 1)[1] for a in argv if a.split("=", 1)[0] in ("pipeline._target_", "+pipeline._target_")), None)


def _custom_pipeline_overrides(argv: list[str]) -> list[str]:
    """For a user's own pipeline class (``pipeline._target_=pkg.MyPipeline``): import it, refuse what is not an accel3d
    ``Pipeline`` or is not importable, check each ``pipeline.KNOB`` against its constructor's arguments, and pass the
    knobs its config file does not list as ``+pipeline.KNOB`` (Hydra adds them)."""
    import inspect

    from omegaconf import OmegaConf

    target = _pipeline_target(argv)
    if target is None:
        if _chosen("pipeline", argv) == "custom":
            sys.exit("accel3d run: pipeline=custom needs pipeline._target_=MODULE.CLASS, an accel3d Pipeline subclass importable "
                     "from the working directory or PYTHONPATH (see docs/own_backbone.md)")  # fmt: skip
        return argv
    from hydra.utils import get_class

    from accel3d.core.pipeline import Pipeline

    try:
        cls = get_class(target)
    except Exception as exc:  # ImportError, AttributeError, ValueError: Hydra's wording names the cause
        sys.exit(f"accel3d run: pipeline._target_: cannot import '{target}' from the working directory or PYTHONPATH ({exc})")
    if not (isinstance(cls, type) and issubclass(cls, Pipeline)):
        sys.exit(f"accel3d run: pipeline._target_: '{target}' is not a subclass of accel3d.core.Pipeline")
    params = inspect.signature(cls.__init__).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = sorted(n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    chosen = _chosen("pipeline", argv)
    path = config_dir() / "pipeline" / f"{chosen}.yaml"
    listed = {str(k) for k in OmegaConf.load(path)} - {"_target_"} if path.is_file() else set()
    if not open_ended and (extra := sorted(listed - set(valid))):
        sys.exit(f"accel3d run: pipeline._target_: pipeline={chosen} passes {', '.join(extra)}, which '{target}' does not take "
                 f"(its knobs are {', '.join(valid)}); use pipeline=custom")  # fmt: skip
    out = []
    for arg in argv:
        key = arg.split("=", 1)[0]
        knob = key.removeprefix("+").removeprefix("pipeline.") if key.lstrip("+").startswith("pipeline.") else None
        if knob is not None and knob != "_target_":
            if not open_ended and knob not in valid:
                sys.exit(f"accel3d run: {key.lstrip('+')}: pipeline '{target}' has no knob '{knob}'; its knobs are {', '.join(valid)}")
            if knob not in listed and not key.startswith("+"):
                arg = "+" + arg
        out.append(arg)
    return out


def _check_knob_names(argv: list[str]) -> None:
    """Refuse a misspelled pipeline or accelerator knob at once, naming the valid ones (Hydra's own refusal
    does not list them). An accelerator's knobs are read from its config dataclass, a pipeline's from its file."""
    import re

    from omegaconf import OmegaConf

    from accel3d.jobs.configs import discover

    pipeline, accelerators, names = _chosen("pipeline", argv), discover(), _accelerator_names(argv)
    for arg in argv:
        if arg.startswith(("+", "~")) or "=" not in arg:
            continue
        key = arg.split("=", 1)[0]
        if (m := re.fullmatch(r"stack\.accelerators\.(\w+)\.(\w+)", key)) and names.get(m[1], m[1]) in accelerators:
            name = names.get(m[1], m[1])
            what, knob, valid = f"accelerator '{name}'", m[2], ["enabled", *accelerators[name].knob_names()]
        elif _pipeline_target(argv) is not None:
            continue  # a user's own class: its constructor's arguments were checked by _custom_pipeline_overrides
        elif (m := re.fullmatch(r"pipeline\.(\w+)", key)) and (path := config_dir() / "pipeline" / f"{pipeline}.yaml").is_file():
            what, knob, valid = f"pipeline '{pipeline}'", m[1], [str(k) for k in OmegaConf.load(path) if not str(k).startswith("_")]
        else:
            continue
        if knob not in valid:
            sys.exit(f"accel3d run: {key}: {what} has no knob '{knob}'; its knobs are {', '.join(sorted(valid))}")


def _chosen(group: str, argv: list[str]) -> str:
    """The option of ``group`` (pipeline, stack) a command line picks: `group=`, else an experiment's
    `override /group`, else run.yaml's default."""
    from omegaconf import OmegaConf

    explicit = next((a.split("=", 1)[1] for a in argv if a.startswith(f"{group}=")), None)
    if explicit:
        return explicit
    for arg in argv:
        if arg.startswith("+experiment="):
            path = config_dir() / "experiment" / f"{arg.split('=', 1)[1]}.yaml"
            if path.is_file():
                for entry in OmegaConf.load(path).get("defaults", []):
                    if hasattr(entry, "keys") and f"override /{group}" in entry:
                        return str(entry[f"override /{group}"])
    defaults = OmegaConf.load(config_dir() / "run.yaml")["defaults"]
    return str(next(entry[group] for entry in defaults if hasattr(entry, "keys") and group in entry))


def _stack_accelerators(stack: Any) -> dict[str, str]:
    """A stack file's accelerators: key in ``stack.accelerators`` -> accelerator name, from its defaults list."""
    found = {}
    for entry in stack.get("defaults", []):
        if hasattr(entry, "keys"):
            target, name = next(iter(entry.items()))
            if str(target).startswith("/accelerator@accelerators."):
                found[str(target).removeprefix("/accelerator@accelerators.")] = str(name)
    return found


def _accelerator_names(argv: list[str]) -> dict[str, str]:
    """Key in ``stack.accelerators`` -> accelerator name, from the chosen stack's file and the command line's
    ``+accelerator@stack.accelerators.KEY=NAME`` (a key is usually the name itself)."""
    from omegaconf import OmegaConf

    path = config_dir() / "stack" / f"{_chosen('stack', argv)}.yaml"
    names = _stack_accelerators(OmegaConf.load(path)) if path.is_file() else {}
    for arg in argv:
        if arg.startswith("+accelerator@stack.accelerators.") and "=" in arg:
            key, name = arg.removeprefix("+accelerator@stack.accelerators.").split("=", 1)
            names[key] = name
    return names


def _parallel_jobs(hc: Any) -> int:
    """How many jobs the launcher runs at once (joblib's n_jobs; 1 for the basic launcher)."""
    launcher = hc.get("launcher") or {}
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n = launcher.get("n_jobs", -1)
        cores = os.cpu_count() or 1
        n = -1 if n is None else int(n)
        return max(1, cores + 1 + n if n < 0 else n)  # joblib: -1 all cores, -2 all but one, ...
    if "ray" in target.lower():
        return max(1, os.cpu_count() or 1)  # Ray runs as many jobs at once as it has CPUs
    if "submitit" in target.lower() and "local" in target.lower():  # starts every job of the sweep at once
        from accel3d.jobs.report import read_sweep_marker

        jobs = (read_sweep_marker(Path(hc.sweep.dir)) or {}).get("jobs")
        return max(1, len(jobs)) if jobs else 1
    return 1


LIST_SECTIONS = ("pipelines", "stacks", "accelerators")


def _list(argv: list[str]) -> None:
    """What can be combined: pipelines (with stages), stacks (with accelerators), accelerators (with stage and knobs).

    Accelerators and stacks are read from the configs and the accelerators' dataclasses without importing torch;
    a pipeline's stages are its class's, so listing pipelines imports them."""
    from omegaconf import OmegaConf

    from accel3d.jobs.configs import discover

    sections = argv or list(LIST_SECTIONS)
    unknown = [s for s in sections if s not in LIST_SECTIONS]
    if unknown:
        sys.exit(f"accel3d list: unknown section(s) {unknown}; expected some of {', '.join(LIST_SECTIONS)}")

    def configs(group: str) -> dict[str, Any]:
        return {p.stem: OmegaConf.load(p) for p in sorted((config_dir() / group).glob("*.yaml"))}

    if "pipelines" in sections:
        from hydra.utils import get_class

        print("pipelines (pipeline=NAME):")
        for name, cfg in configs("pipeline").items():
            if OmegaConf.is_missing(cfg, "_target_"):
                print(f"  {name:<22} your own Pipeline subclass: pipeline._target_=MODULE.CLASS")
                continue
            cls = get_class(cfg["_target_"])
            print(f"  {name:<22} {cls.__name__}; stages: {', '.join(cls.stage_names) or '?'}")
    if "stacks" in sections:
        print("stacks (stack=NAME):")
        for name, cfg in configs("stack").items():
            print(f"  {name:<22} {', '.join(_stack_accelerators(cfg)) or '(no accelerator)'}")
    if "accelerators" in sections:
        print("accelerators (stack.accelerators.NAME.KNOB=VALUE):")
        declared = discover()
        for name, cfg in configs("accelerator").items():
            if name not in declared:
                print(f"  {name:<22} (no config dataclass declares '{name}')")
                continue
            cls = declared[name]
            file_values = {str(k): v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "defaults"}
            values = {"enabled": True, **_defaults(cls), **file_values}
            knobs = ", ".join(f"{k}={v}" for k, v in values.items())
            print(f"  {name:<22} stage {cls.STAGE}; {knobs}")


def _defaults(cls: Any) -> dict[str, Any]:
    """A config dataclass's knobs and their defaults, without constructing it."""
    return {f.name: f.default for f in cls.knob_fields()}


def _report(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="accel3d report", description="Aggregate run records into a table and a plot.")
    parser.add_argument("dir", type=Path, help="a run or sweep folder, or any folder above several")
    parser.add_argument("--fidelity", default=None, help="the fidelity figure to plot (default: each pipeline's headline metric)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: DIR)")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        sys.exit(f"accel3d report: '{args.dir}' is not a folder")
    from accel3d.core.io import check_output_folder
    from accel3d.jobs.report import collect, write_report

    check_output_folder(args.out or args.dir, "--out" if args.out else "--out (default: DIR)")  # before reading
    try:
        written = write_report(args.dir, args.out, args.fidelity)
    except FileNotFoundError as exc:
        sys.exit(f"accel3d {exc}")
    found = collect(args.dir)
    print(
        f"{len(found.completed)} completed, {len(found.failed)} failed, {len(found.interrupted)} interrupted, "
        f"{len(found.running)} running or killed, {len(found.missing)} missing, {len(found.corrupt)} unreadable, "
        f"{len(found.incomplete)} incomplete"
    )
    for path, why in found.corrupt:
        print(f"skipped unreadable record {path}: {why}", file=sys.stderr)
    for path, why in found.incomplete:
        print(f"skipped incomplete record {path}: {why}", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written))


def main(argv: list[str] | None = None) -> None:
    from accel3d.jobs.interrupt import cleaning_up, signals_interrupt

    try:
        with signals_interrupt():  # SIGTERM (a scheduler stopping the job) is handled as Ctrl-C (SIGINT)
            _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt as exc:  # files are written atomically, and a job removes its partial ones
        cleaning_up()
        name = getattr(exc, "signal_name", "SIGINT")
        print(f"\naccel3d: {'interrupted' if name == 'SIGINT' else f'stopped by {name}'}", file=sys.stderr)
        sys.exit(130 if name == "SIGINT" else 143)  # 128 + the signal's number, as a shell reports it


COMMANDS = ("run", "report", "list", "bench", "--version", "--help")


def _complete(argv: list[str]) -> None:
    """Answer the shell-completion query that Hydra's script sends to the program (``accel3d -sc query=bash``).

    Hydra completes the overrides of ``accel3d run``; the words before them are completed here.
    """
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    done = words[1:] if line.endswith(" ") else words[1:-1]  # the words already typed in full
    if not argv or not argv[0].startswith("query="):  # install/uninstall: only for `accel3d run -sc ...`
        sys.exit('accel3d: shell completion is installed with: eval "$(accel3d run -sc install=bash)"')
    if not done:
        print(" ".join(COMMANDS))
    elif done[0] == "run":
        # Hydra strips the program's name from COMP_LINE and completes what follows: drop `run` first
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
        _run(["-sc", *argv])
    elif done[0] == "bench":
        from accel3d.bench import BENCHMARKS

        if len(done) == 1:
            print(" ".join(BENCHMARKS))
        elif done[1] in BENCHMARKS:
            from accel3d.bench.options import parser

            print(" ".join(o for a in parser(done[1])._actions for o in a.option_strings if o.startswith("--")))


def _main(argv: list[str]) -> None:
    if argv and argv[0] in ("-sc", "--shell-completion"):
        _complete(argv[1:])
        return
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] in ("-V", "--version"):
        from accel3d import __version__

        print(f"accel3d {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command == "run":
        _run(rest)
    elif command == "report":
        _one_line_errors("report", _report, rest, {"dir", "fidelity", "out"})
    elif command == "list":
        _list(rest)
    elif command == "bench":
        from accel3d.bench import main as bench_main

        name = rest[0] if rest else ""
        _one_line_errors(f"bench {name}".strip(), bench_main, rest, _bench_options(name))
    else:
        sys.exit(f"accel3d: unknown command '{command}'; expected one of {', '.join(COMMANDS[:4])}\n{USAGE}")


def _one_line_errors(command: str, func: Any, argv: list[str], knobs: Collection[str]) -> None:
    """``func(argv)``, its user-facing errors (see ``user_facing``) said in one line, its bugs with their traceback."""
    try:
        func(argv)
    except Exception as exc:
        if _full_error() or not user_facing(exc, knobs):
            raise
        sys.exit(f"accel3d {command}: {_message(exc)}")


def _bench_options(name: str) -> set[str]:
    """A benchmark's option names (``weights``, ``--weights``), the knobs its errors may name."""
    from accel3d.bench import BENCHMARKS

    if name not in BENCHMARKS:
        return set()
    from accel3d.bench.options import parser

    names = {o for action in parser(name)._actions for o in action.option_strings if o.startswith("--")}
    return names | {o.removeprefix("--").replace("-", "_") for o in names} | {o.removeprefix("--") for o in names}


if __name__ == "__main__":
    main()
