"""The command line's conveniences: help that answers at once, completion, machine defaults."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from accel3d.bench import options


def _accel3d(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from accel3d.cli import main; sys.argv = ['accel3d', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_bench_help_lists_every_benchmark_with_its_summary():
    out = _accel3d("bench", "--help")
    assert out.returncode == 0, out.stderr
    for name in ("caching", "decoding", "kernels"):
        assert f"  {name:<10} {options.summary(name)}" in out.stdout
    assert options.summary("decoding") == "dense vs hierarchical vs hierarchical + adaptive KV."


def test_bench_options_help_shows_defaults_and_choices_without_importing_torch():
    code = (
        "import sys\n"
        "from accel3d.cli import main\n"
        "try:\n    main(['bench', 'caching', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'bench --help imported torch'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--tiny-iterations TINY_ITERATIONS" in out.stdout and "(default: 500)" in out.stdout
    assert "{tiny,sd21,novel_view}" in out.stdout


def test_unknown_benchmark_names_the_valid_ones():
    out = _accel3d("bench", "caching_typo")
    assert out.returncode != 0 and "expected one of caching, decoding, kernels" in out.stderr


def test_decoding_subject_choices_are_the_shapes_that_exist():
    from accel3d.geometry import shapes

    assert options.DECODING_SUBJECTS == ("model", *shapes.SHAPES, "fields", "local")  # plus the mesh-field families and local attention


@pytest.mark.parametrize("text,ok", [("16", True), ("64", True), ("256", True), ("17", False), ("8", False), ("512", False)])
def test_triton_tile_sizes_are_refused_before_any_work(text, ok):
    import argparse

    if ok:
        assert options.power_of_two(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="power of two"):
            options.power_of_two(text)


def test_kernels_machine_defaults_fill_every_unset_option():
    from accel3d.bench.kernels import MACHINE_DEFAULTS

    args = options.kernels_parser().parse_args([])
    unset = {k for k, v in vars(args).items() if v is None} - {"topk", "out"}  # topk None is Hunyuan3D-2's rule
    assert unset == set(MACHINE_DEFAULTS)


def test_run_help_shows_the_config_groups_and_the_keys():
    out = _accel3d("run", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("accel3d run [OVERRIDES...]")
    assert "stack: easycache, fastsam3d, flashvdm, flashvdm_mean, flashvdm_merge" in out.stdout
    assert "pipeline: custom, hunyuan3d, image_to_3d, sds, vecset_shape" in out.stdout
    assert "  resolution: 256" in out.stdout  # the composed config with its keys


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_through_hydras_own_script():
    bin_dir = os.path.dirname(sys.executable)  # the script calls `accel3d`, as a user's shell would
    script = (
        'eval "$(accel3d run -sc install=bash)"\n'
        "complete() {\n"
        '  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -r -a COMP_WORDS <<< "$1"\n'
        '  [[ "$1" == *" " ]] && COMP_WORDS+=("")\n'
        '  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); hydra_bash_completion; echo "${COMPREPLY[*]}"\n'
        "}\n"
        'complete "accel3d run stack=hier"\n'
        'complete "accel3d run pipeline.resol"\n'
        'complete "accel3d be"\n'
        'complete "accel3d bench "\n'
    )
    if shutil.which("accel3d", path=bin_dir) is None:
        pytest.skip("the accel3d console script is not installed beside this Python")
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()[-4:]
    assert lines[0].split() == ["stack=hierarchical", "stack=hierarchical_fast", "stack=hierarchical_flashvdm"]
    assert lines[1].split() == ["pipeline.resolution="]
    assert lines[2].split() == ["bench"]
    assert lines[3].split() == ["caching", "decoding", "kernels", "pruning"]


def test_list_reads_the_declarations_without_importing_torch_and_matches_the_classes():
    code = (
        "import sys\nfrom accel3d.cli import main\nmain(['list', 'stacks', 'accelerators'])\n"
        "assert 'torch' not in sys.modules, 'accel3d list imported torch'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    full = subprocess.run([sys.executable, "-m", "accel3d.cli", "list"], capture_output=True, text=True)  # pipelines too
    assert full.returncode == 0, full.stderr
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from accel3d.jobs.configs import config_dir, discover

    parts = re.split(r"^(pipelines|stacks|accelerators) \(.*\):$", full.stdout, flags=re.M)  # heading, its lines, ...
    sections = {heading.removesuffix("s"): body for heading, body in zip(parts[1::2], parts[2::2])}
    assert out.stdout.strip() in full.stdout  # the torch-free sections are the same
    for path in sorted((config_dir() / "pipeline").glob("*.yaml")):
        line = next(ln for ln in sections["pipeline"].splitlines() if ln.split()[:1] == [path.stem])
        if OmegaConf.is_missing(OmegaConf.load(path), "_target_"):  # pipeline=custom: the user names the class
            assert "pipeline._target_=MODULE.CLASS" in line, line
            continue
        stages = get_class(OmegaConf.load(path)["_target_"]).stage_names  # what importing the class says
        assert "stages: " + ", ".join(stages) in line, (path.stem, line)
    for name, config in discover().items():
        cls = get_class(config._target_)
        line = next(ln for ln in sections["accelerator"].splitlines() if ln.split()[:1] == [name])
        assert f"stage {cls.stage};" in line and all(f"{k}=" in line for k in config.knob_names()), (name, line)
    with pytest.raises(SystemExit, match="unknown section"):
        from accel3d.cli import main

        main(["list", "nope"])
