"""``accel3d run pipeline=custom pipeline._target_=MODULE.CLASS``: a user's own Pipeline subclass from the working
directory, through the installed console script, with its knobs checked against its constructor."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MY_PIPELINES = """
from accel3d.models.vecset.pipeline import VecsetShapePipeline


class SmallShape(VecsetShapePipeline):
    name = "small_shape"

    def __init__(self, weights=None, resolution: int = 32, tag: str = "mine"):
        super().__init__(weights=weights, resolution=resolution, num_points=256, progress=False)
        self.tag = tag

    def describe(self):
        return {**super().describe(), "tag": self.tag}


class NotAPipeline:
    pass
"""
HIERARCHICAL = [
    "stack=hierarchical",
    "stack.accelerators.hierarchical.min_resolution=8",
    "stack.accelerators.hierarchical.band_units=field",
]


def console_script() -> str:
    found = Path(sys.executable).parent / "accel3d"
    return str(found) if found.is_file() else (shutil.which("accel3d") or pytest.skip("no accel3d console script on PATH"))


def run(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([console_script(), "run", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "mypipes.py").write_text(MY_PIPELINES)
    return tmp_path


def test_a_users_pipeline_class_from_the_working_directory_runs_the_comparison_job(workdir, tiny_weights):
    out = workdir / "out"
    target = ["pipeline=custom", "pipeline._target_=mypipes.SmallShape", f"pipeline.weights={tiny_weights}", "pipeline.tag=ours"]
    run(workdir, *target, *HIERARCHICAL, "repeats=1", "preview=false", f"hydra.run.dir={out}")
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "completed" and record["pipeline_info"]["tag"] == "ours"
    assert record["runs"]["hierarchical"]["stats"]["hierarchical"]["calls"] == 1


def test_its_knobs_are_checked_against_its_constructor(workdir):
    proc = run(workdir, "pipeline=custom", "pipeline._target_=mypipes.SmallShape", "pipeline.tga=x", *HIERARCHICAL, ok=False)
    assert "pipeline.tga: pipeline 'mypipes.SmallShape' has no knob 'tga'; its knobs are resolution, tag, weights" in proc.stderr
    assert not list(workdir.rglob("record.json"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pipeline=custom"], "pipeline=custom needs pipeline._target_=MODULE.CLASS"),
        (
            ["pipeline=custom", "pipeline._target_=mypipes.NotAPipeline"],
            "'mypipes.NotAPipeline' is not a subclass of accel3d.core.Pipeline",
        ),
        (["pipeline=custom", "pipeline._target_=nowhere.Missing"], "pipeline._target_: cannot import 'nowhere.Missing'"),
    ],
)
def test_a_missing_or_wrong_target_is_one_line(workdir, args, message):
    proc = run(workdir, *args, *HIERARCHICAL, ok=False)
    assert message in proc.stderr and "Traceback" not in proc.stderr
