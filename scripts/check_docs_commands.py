"""Run every command of README.md and docs/*.md at reduced sizes; fail listing each command that failed.

    python scripts/check_docs_commands.py                  # every page (tests/test_docs_commands.py runs this)
    python scripts/check_docs_commands.py --list           # the commands as they will run, without running them
    python scripts/check_docs_commands.py docs/caching.md  # one page

What runs:

- a ```bash block: each line is one command (a line ending in ``\\`` continues on the next), run by bash;
- a ```python block: the whole block is one script, run by python;
- a block whose first line is ``# file: PATH`` is not run: it is written to PATH in the page's tree, so that
  a page can add files (docs/add_a_strategy.md adds a strategy) and then run commands that use them;
- not run: a command or block marked ``# docs-check: skip (reason)``, the install commands of SKIPPED (CI has
  just run them), and an ``accel3d run`` command that an earlier page already runs as it is (listed as a repeat).

How small: every command goes through REDUCTIONS, in order. Python blocks are not rewritten: they are written
small enough to run as they are.

Where: in copies of the repository (``accel3d/``, ``configs/``, ``scripts/``, ``docs/``, README.md) with the
fixture files, as the working directory and first on PYTHONPATH, so that nothing a command writes (``outputs/``,
``--save-results``, a new strategy) reaches the checkout. A page that writes files has a copy of its own; the
other pages share one copy per lane, and the commands of a lane run in page order (``accel3d report multirun/``
reads the sweeps before it). HOME is a temporary folder holding the fixtures (``make_fixtures``), so
``~/models/...`` and ``$HOME/models/...`` find small stand-ins of real weights.

How fast: each lane has one runner process that imports torch, diffusers, Hydra and accel3d (from its copy)
once, then forks for every ``accel3d ...`` command without shell syntax and for every Python block; the child
calls ``accel3d.cli.main`` with the command's arguments, which is what the ``accel3d`` console script runs
(checked once with ``accel3d --version``). Commands with shell syntax (``$HOME``, ``~``, pipes, quotes) run
through bash and the console script. Two lanes run at once (``--jobs``), each command with half the cores as
torch threads. ``--no-fork`` runs every command through bash.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/*.md"]
TREE = ["accel3d", "configs", "scripts", "docs", "README.md", "pyproject.toml"]  # what each page's copy holds
SKIP_MARK = re.compile(r"#\s*docs-check:\s*skip\b(.*)$")
FILE_MARK = re.compile(r"^#\s*file:\s*(\S+)\s*$")
TIMEOUT_S = 300
JOBS = 2  # lanes run at once
THREADS = max(1, (os.cpu_count() or 1) // JOBS)  # torch threads of every command
TAIL_LINES = 25

# Commands that are not run, by their start: (prefix, why).
SKIPPED = [
    ("python3 -m venv", "creates the virtual environment; CI has just done it"),
    ("pip install", "installs packages; CI has just installed accel3d with its dev extra"),
]


MIN_RES = "stack.accelerators.hierarchical.min_resolution="  # bench decoding's --set / --sdf-set of the coarsest level


def _small_resolutions(match: re.Match) -> str:
    """Every resolution of a run or sweep -> 48 (the shipped stack's coarsest level; a sweep keeps one job each)."""
    return match.group(1) + "48"


RUN = r"^accel3d run\b"
SDS = r"^accel3d run\b.*(pipeline=sds|\+experiment=caching_ablation)"
SDS_TEXT = r"^accel3d run\b(?=.*(pipeline=sds|\+experiment=caching_ablation))(?=.*pipeline\.backbone=(tiny|sd21_base))"
SHAPE = r"^accel3d run\b(?!.*(pipeline=sds|pipeline=image_to_3d|\+experiment=caching_ablation|\+experiment=pruning_ablation))"
IMAGE_TO_3D = r"^accel3d run\b.*(pipeline=image_to_3d|\+experiment=pruning_ablation)"
SWEEP = r"^accel3d run\b.*( -m |--multirun|\+experiment=)"
FLASHVDM_BAND = r"^accel3d run\b.*(hierarchical_flashvdm|\+experiment=decoding_ablation)"
PROBE_SDS = r"^python scripts/probe_novel_view_sds\.py\b"
BENCH_DECODING, BENCH_CACHING, BENCH_KERNELS = (rf"^accel3d bench {name}\b" for name in ("decoding", "caching", "kernels"))


@dataclass(frozen=True)
class Reduction:
    """In commands matching ``when``: replace ``pattern`` by ``replace``; if ``pattern`` is absent, append ``append``."""

    when: str
    pattern: str
    replace: str | Callable[[re.Match], str]
    append: str | None
    why: str


# fmt: off
REDUCTIONS = [
    # accel3d run on the vecset_shape pipeline: 48^3 instead of 256^3 (hierarchical decoding then decodes one level)
    Reduction(SHAPE, r"(pipeline\.resolution=)([\d,]+)", _small_resolutions, "pipeline.resolution=48", "257^3 takes ~40 s"),
    Reduction(FLASHVDM_BAND, r"pipeline\.resolution=48", "pipeline.resolution=64", None, "its min_resolution is 63"),
    # accel3d run on the sds pipeline: 3 SDS steps (the novel-view model keeps its 32^2; text U-Nets a 16^2 latent)
    Reduction(SDS, r"pipeline\.iterations=[\d,]+", "pipeline.iterations=3", "pipeline.iterations=3", "each step calls the U-Net"),
    Reduction(SDS_TEXT, r"pipeline\.latent_size=\d+", "pipeline.latent_size=16", "pipeline.latent_size=16", "the U-Net input is latent^2"),
    Reduction(SDS, r"pipeline\.backbone=sd21_base", "pipeline.backbone=tiny", None, "866M parameters: ~25 s to build and run"),
    # accel3d run on the image_to_3d pipeline: 3 flow steps per stage
    Reduction(IMAGE_TO_3D, r"pipeline\.ss_steps=\d+", "pipeline.ss_steps=3", "pipeline.ss_steps=3", "25 SS steps with CFG"),
    Reduction(IMAGE_TO_3D, r"pipeline\.slat_steps=\d+", "pipeline.slat_steps=3", "pipeline.slat_steps=3", "25 SLaT steps"),
    # every accel3d run: one timed run of each side, one torch thread (two pages run at once)
    Reduction(RUN, r"\brepeats=\d+", "repeats=1", "repeats=1", "the timings are not what is checked"),
    Reduction(RUN, r"\bthreads=\w+", f"threads={THREADS}", f"threads={THREADS}", "two lanes share the cores"),
    # sweeps: one mesh and no preview per job (the single runs check those)
    Reduction(SWEEP, r"\bpreview=\w+", "preview=false", "preview=false", "a preview is ~1 s per job"),
    Reduction(SWEEP, r"\bexport_formats=\S+", "export_formats=glb", "export_formats=glb", "three formats per job"),
    # accel3d bench decoding: 32^3 with levels from 8, one repeat, an 8^3 warm-up
    Reduction(BENCH_DECODING, r"--resolutions( \d+)+", "--resolutions 32", "--resolutions 32", "384^3 takes minutes"),
    Reduction(BENCH_DECODING, rf"(--set (?:\S+ )*{re.escape(MIN_RES)})\d+", r"\g<1>8", f"--set {MIN_RES}8", "levels at 32^3"),
    Reduction(BENCH_DECODING, rf"(--sdf-set (?:\S+ )*{re.escape(MIN_RES)})\d+", r"\g<1>8", f"--sdf-set {MIN_RES}8", "levels at 32^3"),
    Reduction(BENCH_DECODING, r"--warmup-resolution \d+", "--warmup-resolution 8", "--warmup-resolution 8", "the warm-up"),
    Reduction(BENCH_DECODING, r"--repeats \d+", "--repeats 1", "--repeats 1", "one timed run of each method"),
    Reduction(BENCH_DECODING, r"--field-resolution \d+", "--field-resolution 64", "--field-resolution 64", "fields: 256^3 x 21"),
    Reduction(BENCH_DECODING, r"--field-sdf-resolution \d+", "--field-sdf-resolution 32", "--field-sdf-resolution 32", "mesh SDFs"),
    Reduction(BENCH_DECODING, r"--field-meshes( \S+)+", "--field-meshes eval_00_box", "--field-meshes eval_00_box", "one mesh"),
    Reduction(BENCH_DECODING, r"--local-points \d+", "--local-points 4096", "--local-points 4096", "65k queries"),
    # accel3d bench caching: the tiny U-Net's section only, without the ablations (tests/bench runs those), 8 SDS steps,
    # one calibration, a check on every hit
    Reduction(BENCH_CACHING, r"--sections sd21\b", "--sections tiny", "--sections tiny", "SD-2.1-base: minutes"),
    Reduction(BENCH_CACHING, r"--no-ablations\b", "--no-ablations", "--no-ablations", "13 more SDS runs"),
    Reduction(BENCH_CACHING, r"--tiny-iterations \d+", "--tiny-iterations 8", "--tiny-iterations 8", "500 steps"),
    Reduction(BENCH_CACHING, r"--novel-iterations \d+", "--novel-iterations 6", "--novel-iterations 6", "600 steps"),
    Reduction(BENCH_CACHING, r"--novel-long-iterations \d+", "--novel-long-iterations 8", "--novel-long-iterations 8", "1500 steps"),
    Reduction(BENCH_CACHING, r"--sd-iterations \d+", "--sd-iterations 2", None, "parsed, not run (no sd21 section)"),
    Reduction(BENCH_CACHING, r"--repeats \d+", "--repeats 1", "--repeats 1", "one timed run of each"),
    Reduction(BENCH_CACHING, r"--calibration-repeats \d+", "--calibration-repeats 1", "--calibration-repeats 1", "U-Net timings"),
    Reduction(BENCH_CACHING, r"--check-every \d+", "--check-every 1", "--check-every 1", "8 steps have few hits to check"),
    # the SDS probe: 3 SDS steps before the U-Net's predictions are scored, into a scratch file
    Reduction(PROBE_SDS, r"--iterations \d+", "--iterations 3", "--iterations 3", "each step calls the U-Net"),
    Reduction(PROBE_SDS, r"--out \S+", "--out probe/probe.png", "--out probe/probe.png", "keeps docs/results as committed"),
    # accel3d bench kernels: a few hundred queries and rows
    Reduction(BENCH_KERNELS, r"--queries \d+", "--queries 512", "--queries 512", "262k queries"),
    Reduction(BENCH_KERNELS, r"--keys \d+", "--keys 48", "--keys 48", "3072 keys"),
    Reduction(BENCH_KERNELS, r"--rows \d+", "--rows 256", "--rows 256", "262k rows"),
    Reduction(BENCH_KERNELS, r"--channels \d+", "--channels 8", "--channels 8", "256 channels"),
    Reduction(BENCH_KERNELS, r"--repeats \d+", "--repeats 1", "--repeats 1", "20 repeats"),
]
# fmt: on


def reduce(command: str) -> str:
    """``command`` with REDUCTIONS applied (appended options go before a trailing ``# comment``)."""
    body, comment = _split_comment(command)
    for r in REDUCTIONS:
        if not re.search(r.when, body):
            continue
        if re.search(r.pattern, body):
            body = re.sub(r.pattern, r.replace, body)
        elif r.append:
            body = f"{body} {r.append}"
    return body + comment


def _split_comment(command: str) -> tuple[str, str]:
    """``("accel3d run x=1", "   # note")``: the command and its trailing comment (a ``#`` outside quotes)."""
    quote = None
    for i, ch in enumerate(command):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip(), "   " + command[i:]
    return command.rstrip(), ""


# --------------------------------------------------------------------------- reading the pages


@dataclass
class Step:
    """One command, script or file of a page."""

    page: str
    line: int
    kind: str  # "bash", "python" or "file"
    text: str
    path: str | None = None  # for files
    skip: str | None = None  # why it is not run
    same_as: str | None = None  # where the identical command already runs

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def read_page(path: Path, root: Path = ROOT) -> list[Step]:
    """The steps of one Markdown page, in order."""
    page = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    lines = path.read_text().splitlines()
    steps: list[Step] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)", lines[i].strip())
        if not fence:
            i += 1
            continue
        lang, start = fence.group(1), i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            i += 1
        block = lines[start:i]
        i += 1
        steps += _block_steps(page, start + 1, lang, block)
    return steps


def _block_steps(page: str, first_line: int, lang: str, block: list[str]) -> list[Step]:
    if block and (m := FILE_MARK.match(block[0].strip())):
        return [Step(page, first_line, "file", "\n".join(block[1:]) + "\n", path=m.group(1))]
    if lang == "python":
        mark = SKIP_MARK.search(block[0]) if block else None
        return [Step(page, first_line, "python", "\n".join(block) + "\n", skip=_reason(mark))]
    if lang not in ("bash", "sh", "shell"):
        return []
    steps = []
    j = 0
    while j < len(block):
        line_no, text = first_line + j, block[j].rstrip()
        while text.endswith("\\") and j + 1 < len(block):
            j += 1
            text = text[:-1].rstrip() + " " + block[j].strip()
        j += 1
        command = text.strip()
        if not command or command.startswith("#"):
            continue
        mark = SKIP_MARK.search(command)
        skip = _reason(mark) or next((why for prefix, why in SKIPPED if command.startswith(prefix)), None)
        steps.append(Step(page, line_no, "bash", command, skip=skip))
    return steps


def _reason(mark: re.Match | None) -> str | None:
    if mark is None:
        return None
    return mark.group(1).strip(" ()") or "marked skip"


# --------------------------------------------------------------------------- the environment


def make_fixtures(home: Path, files: Path) -> None:
    """Small stand-ins for what the docs point at. In HOME:

    - ``models/Hunyuan3D-2/hunyuan3d-vae-v2-0``: the shipped VAE's decoder laid out as a Hunyuan3D-2 release
      (``config.yaml`` + ``model.safetensors``);
    - ``models/stable-diffusion-2-1-base``: the tiny U-Net as a diffusers pipeline folder (``unet/``).

    In ``files`` (copied into every page's tree): ``latents.pt`` (the bunny's latents from the shipped VAE) and
    ``my_mesh.obj`` (the bundled bunny).
    """
    import torch
    import trimesh
    import yaml
    from safetensors.torch import save_file

    from accel3d.geometry.meshes import BUNDLED_MESH
    from accel3d.models.sds.unets import build_unet
    from accel3d.models.vecset.checkpoint import load_vae
    from accel3d.models.vecset.pipeline import load_shape_inputs

    vae = load_vae()
    release = home / "models" / "Hunyuan3D-2" / "hunyuan3d-vae-v2-0"
    release.mkdir(parents=True)
    params = {k: v for k, v in vars(vae.config).items() if k not in ("num_encoder_layers", "bounds")}
    (release / "config.yaml").write_text(yaml.safe_dump({"target": "hy3dgen.shapegen.models.ShapeVAE", "params": params}))
    decoder = {k: v.contiguous() for k, v in vae.state_dict().items() if not k.startswith("encoder.")}
    save_file(decoder, str(release / "model.safetensors"))
    build_unet("tiny").save_pretrained(home / "models" / "stable-diffusion-2-1-base" / "unet")
    files.mkdir(parents=True)
    inputs = load_shape_inputs(None, 2048)
    with torch.no_grad():
        torch.save(vae.encode(inputs.points[None], inputs.normals[None]), files / "latents.pt")
    trimesh.load(BUNDLED_MESH, force="mesh").export(files / "my_mesh.obj")


def make_tree(dest: Path, files: Path) -> Path:
    """A copy of the repository for one page (no caches, no outputs), plus the fixture files."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "outputs", "multirun", "*.egg-info")
    dest.mkdir(parents=True)
    for name in TREE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    for f in files.iterdir():
        shutil.copy2(f, dest / f.name)
    return dest


def environment(tree: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)  # this environment's python and accel3d, activated or not
    env.update(
        PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
        HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]),
        MPLBACKEND="Agg",
        MPLCONFIGDIR=str(home / ".matplotlib"),
        TQDM_DISABLE="1",  # progress bars would fill the logs
        OMP_NUM_THREADS=str(THREADS),
    )
    return env


# --------------------------------------------------------------------------- running one page

PRELOAD = ["torch", "hydra", "omegaconf", "diffusers", "matplotlib.pyplot", "trimesh", "skimage.measure"]
PRELOAD += ["accel3d.cli", "accel3d.jobs.run", "accel3d.decoding", "accel3d.caching"]
PRELOAD += ["accel3d.models.vecset.pipeline", "accel3d.models.sds.pipeline"]
SHELL_SYNTAX = re.compile(r"[$~|&;<>()`*?\[\]{}!'\"\\]")


def forkable(command: str) -> bool:
    """An ``accel3d ...`` command that bash would pass on word for word (no expansions, quotes or operators)."""
    return command.startswith("accel3d ") and not SHELL_SYNTAX.search(_split_comment(command)[0])


def serve(spec_path: Path) -> None:
    """The runner of one page (``--serve``): run its steps in order, one JSON line of results per step on stdout."""
    import importlib
    import json

    spec = json.loads(spec_path.read_text())
    tree, fork, timeout = Path(spec["tree"]), spec["fork"], spec["timeout"]
    if fork:
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except Exception:  # the commands that need it will show the error themselves
                pass
        loaded = sys.modules.get("accel3d")
        if loaded is not None and not Path(loaded.__file__).is_relative_to(tree):
            sys.exit(f"check_docs_commands: accel3d was imported from {loaded.__file__}, not from the page's tree {tree}")
    for i, raw in enumerate(spec["steps"]):
        step = Step(**raw)
        result = _run_one(step, tree, fork, timeout, i)
        print(json.dumps(result), flush=True)
        status = "ok" if result["returncode"] == 0 else f"FAILED ({result['returncode']})"
        print(f"{result['seconds']:6.1f} s  {status:<11} {step.where}  {result['command']}", file=sys.stderr, flush=True)


def _run_one(step: Step, tree: Path, fork: bool, timeout: float, index: int) -> dict:
    if step.kind == "file":
        target = tree / step.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(step.text)
        return {"returncode": 0, "seconds": 0.0, "command": f"(wrote {step.path})", "output": ""}
    log = tree / ".docs_check" / f"step{index:02d}_line{step.line}.log"
    log.parent.mkdir(exist_ok=True)
    if step.kind == "python":
        script = log.with_suffix(".py")
        script.write_text(step.text)
        command = f"python <the block at line {step.line}>"
        target = ("python", str(script)) if fork else None
        argv = [sys.executable, str(script)]
    else:
        command = reduce(step.text)
        target = ("accel3d", shlex.split(_split_comment(command)[0])) if fork and forkable(command) else None
        argv = ["bash", "-o", "pipefail", "-c", command]
    start = time.perf_counter()
    if target is not None:
        code = _forked(target, tree, log, timeout)
    else:
        with open(log, "w") as out:
            try:
                code = subprocess.run(
                    argv, cwd=tree, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1
    output = log.read_text(errors="replace")
    if code == -1:
        output += f"\n(timed out after {timeout:.0f} s)"
    return {"returncode": code, "seconds": time.perf_counter() - start, "command": command, "output": output[-20000:]}


def _forked(target: tuple[str, object], tree: Path, log: Path, timeout: float) -> int:
    """Run ``accel3d.cli.main(args)`` or a Python script in a forked child (new session); its exit code, -1 on timeout."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.setsid()
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(tree)
            code = _child(target)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1
        time.sleep(0.05)


def _child(target: tuple[str, object]) -> int:
    import runpy
    import traceback

    kind, what = target
    try:
        if kind == "python":
            sys.argv = [str(what)]
            runpy.run_path(str(what), run_name="__main__")
        else:
            from accel3d.cli import main

            args = list(what)  # type: ignore[call-overload]
            sys.argv = args
            main(args[1:])
        return 0
    except SystemExit as exc:  # as the interpreter reports it: a message goes to stderr with status 1
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


# --------------------------------------------------------------------------- the whole check


def check(pages: list[Path], work: Path, jobs: int, timeout: float, fork: bool) -> int:
    import json
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    steps = {page: read_page(page) for page in pages}
    console = shutil.which("accel3d", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if console is None:
        print("FAILED: no `accel3d` console script beside this python or on PATH; install with pip install -e .")
        return 1
    entry = subprocess.run([console, "--version"], capture_output=True, text=True)  # the console script works
    if entry.returncode != 0:
        print(f"FAILED: `accel3d --version` exits {entry.returncode}: {entry.stderr[-2000:]}")
        return 1
    _mark_repeats(steps)
    home, files = work / "home", work / "files"
    home.mkdir()
    make_fixtures(home, files)

    def run_lane(n: int, lane: list[Path]) -> list[dict]:
        """The pages of one lane in one tree, by one runner; the results of its runnable steps, in order."""
        runnable = [s for page in lane for s in steps[page] if not s.skip and not s.same_as]
        if not runnable:
            return []
        tree = make_tree(work / f"lane{n}_{'+'.join(p.stem for p in lane)}"[:120], files)
        spec = tree / ".docs_check" / "spec.json"
        spec.parent.mkdir()
        spec.write_text(json.dumps({"tree": str(tree), "fork": fork, "timeout": timeout, "steps": [vars(s) for s in runnable]}))
        proc = subprocess.run(
            [sys.executable, __file__, "--serve", str(spec)],
            cwd=tree,
            env=environment(tree, home),
            stdout=subprocess.PIPE,
            text=True,
        )
        results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or len(results) != len(runnable):
            lost = {"returncode": proc.returncode or 1, "seconds": 0.0, "command": "(the runner stopped)", "output": ""}
            results += [lost] * (len(runnable) - len(results))
        return results

    lanes = _lanes(steps, jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        by_lane = list(pool.map(run_lane, range(len(lanes)), lanes))
    result_of = {}
    for lane, results in zip(lanes, by_lane):
        runnable = [s for page in lane for s in steps[page] if not s.skip and not s.same_as]
        result_of.update({id(s): r for s, r in zip(runnable, results)})
    outcomes = [(s, result_of.get(id(s))) for page in pages for s in steps[page]]
    ran = [(s, r) for s, r in outcomes if r is not None and s.kind != "file"]
    failed = [(s, r) for s, r in outcomes if r is not None and r["returncode"] != 0]
    skipped = [s for s, r in outcomes if r is None and s.skip]
    repeats = [s for s, r in outcomes if r is None and s.same_as]
    print(
        f"\n{len(ran)} commands and scripts run in {time.perf_counter() - started:.0f} s, {len(failed)} failed, "
        f"{len(repeats)} repeats of a command already run, {len(skipped)} skipped"
    )
    for s in repeats:
        print(f"  {s.where} is {s.same_as}: {s.text}")
    for s in skipped:
        print(f"  skipped {s.where}: {s.text.splitlines()[0]}  ({s.skip})")
    for s, r in failed:
        tail = "\n".join(r["output"].rstrip().splitlines()[-TAIL_LINES:])
        print(f"\nFAILED {s.where} (exit {r['returncode']}): {r['command']}\n{tail}")
    return 1 if failed else 0


def _lanes(steps: dict[Path, list[Step]], jobs: int) -> list[list[Path]]:
    """Pages grouped into lanes, each run in order in one tree by one runner (its imports paid once).

    A page that writes files gets a lane of its own, so no other page sees its files; the others are spread over
    ``jobs`` lanes by their number of steps, largest first.
    """
    lanes: list[list[Path]] = []
    shared: list[tuple[int, list[Path]]] = [(0, []) for _ in range(jobs)]
    for page in sorted(steps, key=lambda p: -len(steps[p])):
        if any(s.kind == "file" for s in steps[page]):
            lanes.append([page])
            continue
        i = min(range(jobs), key=lambda j: shared[j][0])
        shared[i] = (shared[i][0] + len(steps[page]), shared[i][1] + [page])
    order = list(steps)
    return lanes + [sorted(pages, key=order.index) for _, pages in shared if pages]


def _mark_repeats(steps: dict[Path, list[Step]]) -> None:
    """An ``accel3d run`` command that an earlier page already runs, as reduced, runs once: the later one is marked
    ``same_as`` the first. A page that writes files keeps all its commands (they may see those files)."""
    first: dict[str, str] = {}
    for page_steps in steps.values():
        if any(s.kind == "file" for s in page_steps):
            continue
        seen_here: dict[str, str] = {}
        for s in page_steps:
            if s.kind != "bash" or s.skip:
                continue
            command = _split_comment(reduce(s.text))[0]
            if not command.startswith("accel3d run"):
                continue
            if command in first:
                s.same_as = first[command]
            else:
                seen_here.setdefault(command, s.where)
        first.update(seen_here)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", type=Path, help="Markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--list", action="store_true", help="print the steps as they will run, then stop")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per command")
    parser.add_argument("--jobs", type=int, default=JOBS, help="lanes run at once")
    parser.add_argument("--no-fork", action="store_true", help="run every command through bash and the console script")
    parser.add_argument("--keep", type=Path, default=None, help="work in this new folder and keep it (default: a temporary one)")
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    pages = [p.resolve() for p in args.pages] or sorted({p for pattern in PAGES for p in ROOT.glob(pattern)})
    if args.list:
        steps = {page: read_page(page) for page in pages}
        _mark_repeats(steps)
        for page, page_steps in steps.items():
            print(f"== {page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}")
            for s in page_steps:
                if s.kind == "file":
                    shown = f"writes {s.path}"
                elif s.kind == "python":
                    shown = f"<{len(s.text.splitlines())} lines of Python>"
                else:
                    shown = reduce(s.text) + ("" if forkable(reduce(s.text)) else "   [bash]")
                mark = f"SKIP ({s.skip}) " if s.skip else f"SAME AS {s.same_as}: " if s.same_as else ""
                print(f"  {s.line:>4} {s.kind:<6} {mark}{shown}")
        return 0
    work = args.keep or Path(tempfile.mkdtemp(prefix="docs_check_"))
    work.mkdir(parents=True, exist_ok=args.keep is None)
    try:
        return check(pages, work, max(1, args.jobs), args.timeout, not args.no_fork)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
