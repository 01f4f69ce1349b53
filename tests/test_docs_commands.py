"""Every command of README.md and docs/*.md runs (at reduced sizes): scripts/check_docs_commands.py."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_docs_commands.py"


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_docs_commands", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


PAGE = """# A page

```bash
python3 -m venv .venv && pip install -e .
accel3d run stack=none   # a comment; with a semicolon
accel3d run -m stack=none,hierarchical \\
    pipeline.resolution=128,256 repeats=5
# a comment line
accel3d run pipeline=sds stack=hash3d pipeline.backbone=sd21_base pipeline.iterations=50
accel3d bench decoding --resolutions 128 256 --set stack.accelerators.hierarchical.min_resolution=48
sbatch job.sh   # docs-check: skip (needs Slurm)
accel3d run pipeline.weights=$HOME/x.pt
```

```python
print("hello")
```

```yaml
# file: configs/accelerator/extra.yaml
_target_: x.Y
```

```text
accel3d run not-a-command
```
"""


def test_pages_are_read_into_commands_scripts_and_files(checker, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    steps = checker.read_page(page, root=tmp_path)
    kinds = [(s.kind, s.line, s.skip is not None) for s in steps]
    assert kinds == [
        ("bash", 4, True),  # the install line
        ("bash", 5, False),
        ("bash", 6, False),  # continued on line 7
        ("bash", 9, False),
        ("bash", 10, False),
        ("bash", 11, True),  # marked
        ("bash", 12, False),
        ("python", 16, False),
        ("file", 20, False),
    ]
    assert steps[2].text == "accel3d run -m stack=none,hierarchical pipeline.resolution=128,256 repeats=5"
    assert steps[5].skip == "needs Slurm"
    assert steps[8].path == "configs/accelerator/extra.yaml" and steps[8].text == "_target_: x.Y\n"
    assert steps[1].where == "page.md:5"


def test_reductions(checker):
    reduce = checker.reduce
    single = reduce("accel3d run stack=none   # a comment; x")
    threads = f"threads={checker.THREADS}"
    assert single == f"accel3d run stack=none pipeline.resolution=48 repeats=1 {threads}   # a comment; x"
    sweep = reduce("accel3d run -m stack=none,hierarchical pipeline.resolution=128,256 repeats=5")
    assert sweep == f"accel3d run -m stack=none,hierarchical pipeline.resolution=48 repeats=1 {threads} preview=false export_formats=glb"
    sds = reduce("accel3d run pipeline=sds stack=hash3d pipeline.backbone=sd21_base pipeline.iterations=50")
    assert "pipeline.iterations=3" in sds and "pipeline.backbone=tiny" in sds and "pipeline.resolution" not in sds
    assert "pipeline.iterations=3" in reduce("accel3d run +experiment=caching_ablation")
    bench = reduce("accel3d bench decoding --resolutions 128 256 --set stack.accelerators.hierarchical.min_resolution=48")
    assert "--resolutions 32 " in bench and "--set stack.accelerators.hierarchical.min_resolution=8 " in bench and "--repeats 1" in bench
    assert "--sdf-set stack.accelerators.hierarchical.min_resolution=8" in bench  # appended where the command has none
    caching = reduce("accel3d bench caching --sections sd21 --sd-iterations 500")
    assert caching.startswith("accel3d bench caching --sections tiny --sd-iterations 2 --no-ablations --tiny-iterations 8")
    assert "pipeline.resolution=64" in reduce("accel3d run -m stack=none,hierarchical_flashvdm pipeline.resolution=256")
    assert reduce("accel3d report multirun/") == "accel3d report multirun/"
    assert checker.forkable("accel3d run stack=none   # it's fine; here")
    assert not checker.forkable("accel3d run pipeline.weights=$HOME/x.pt")
    assert not checker.forkable("python scripts/x.py")


def test_a_failing_command_is_listed_with_its_output(checker, tmp_path, monkeypatch, capsys):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "echo fine\n"
        "ls /nonexistent/docs-check-folder   # fails\n"
        "```\n\n"
        "```python\n"
        "raise RuntimeError('the example is broken')\n"
        "```\n"
    )
    monkeypatch.setattr(checker, "make_fixtures", lambda home, files: files.mkdir())
    work = tmp_path / "work"
    work.mkdir()
    code = checker.check([page], work, jobs=1, timeout=120, fork=False)
    out = capsys.readouterr().out
    assert code == 1
    assert "3 commands and scripts run" in out and "2 failed" in out
    assert "page.md:3 (exit 2): ls /nonexistent/docs-check-folder" in out and "No such file" in out
    assert "page.md:7 (exit 1)" in out and "RuntimeError: the example is broken" in out
    assert "page.md:2 (exit" not in out


def test_every_command_of_the_readme_and_docs_runs():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # as a user runs them
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-12000:]
