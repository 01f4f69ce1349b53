"""A fourth strategy is one new folder plus one config file, with nothing else edited.

The test copies the package and its configs as they are into a temporary tree, adds
``accel3d/toy/`` (its config dataclass and its accelerator) and ``configs/accelerator/toy.yaml``,
and runs the unchanged command line from that tree. It fails if anything had to be
registered by hand: the registry's name lookup, ``accel3d list``, the knob-name check
and the job layer must all find the new strategy by themselves.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import accel3d
from accel3d.jobs.configs import config_dir

TOY_CONFIG_MODULE = '''
"""The toy strategy's one declaration: its name, stage and knobs (torch-free)."""

from dataclasses import dataclass
from typing import ClassVar

from accel3d.core.config import AcceleratorConfig, knob
from accel3d.core.validate import check_int


@dataclass(frozen=True)
class ToyConfig(AcceleratorConfig):
    NAME: ClassVar[str] = "toy"
    STAGE: ClassVar[str] = "volume_decoder"
    _target_: str = "accel3d.toy.CoarseDecoding"
    factor: int = knob(2, "decode at resolution / factor; higher is faster and coarser", check_int, low=1)
'''

TOY_STRATEGY = '''
"""A toy strategy: decode the volume at a coarser resolution and upsample it."""

import torch

from accel3d.core import BaseAccelerator
from accel3d.geometry.volume import VolumeGrid
from accel3d.toy.config import ToyConfig


class CoarseDecoding(BaseAccelerator):
    Config = ToyConfig

    def _attach(self, decoder):
        self.patches.wrap(decoder, "decode", self._wrap)

    def _wrap(self, decode):
        def coarse(fn, resolution, bound=1.01):
            low = decode(fn, resolution // self.config.factor, bound)
            n = resolution + 1
            values = torch.nn.functional.interpolate(low.values[None, None], size=(n, n, n), mode="trilinear")[0, 0]
            self.statistics.add("calls")
            self.statistics.add("queries", low.queries)
            return VolumeGrid(values, resolution, bound, queries=low.queries)

        return coarse

    def summary(self):
        return {"calls": self.statistics.counters["calls"]}
'''

TOY_CONFIG = """
# Coarse decoding, a toy strategy (accel3d.toy.CoarseDecoding); its knobs are in accel3d/toy/config.py.
defaults:
  - /schema/accelerator/toy@_here_
  - _self_
"""

CHECK_REGISTRY = """
import accel3d
from accel3d.jobs.configs import discover
print("PACKAGE", accel3d.__file__)
from accel3d.cli import main
main(["list", "accelerators"])
from accel3d.toy import CoarseDecoding
print("REGISTRY", sorted(discover()), CoarseDecoding(factor=4).config.factor, CoarseDecoding.name, CoarseDecoding.stage)
"""


def _tree(tmp_path: Path) -> Path:
    """The package and configs as they are, plus the new folder and the new file."""
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(accel3d.__file__).parent, tree / "accel3d", ignore=ignore)
    if not (tree / "accel3d" / "configs").is_dir():  # editable install: the configs sit beside the package
        shutil.copytree(config_dir(), tree / "configs", ignore=ignore)
    configs = tree / "accel3d" / "configs" if (tree / "accel3d" / "configs").is_dir() else tree / "configs"
    assert not (tree / "accel3d" / "toy").exists() and not (configs / "accelerator" / "toy.yaml").exists()
    (tree / "accel3d" / "toy").mkdir()
    (tree / "accel3d" / "toy" / "__init__.py").write_text(textwrap.dedent(TOY_STRATEGY).lstrip())
    (tree / "accel3d" / "toy" / "config.py").write_text(textwrap.dedent(TOY_CONFIG_MODULE).lstrip())
    (configs / "accelerator" / "toy.yaml").write_text(TOY_CONFIG.lstrip())
    return tree


def _python(tree: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the tree comes before the installed package
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def toy_tree(tmp_path_factory) -> Path:
    return _tree(tmp_path_factory.mktemp("new_strategy"))


def test_the_registry_and_the_listing_find_the_new_folder(toy_tree, tmp_path):
    proc = _python(toy_tree, "-c", CHECK_REGISTRY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PACKAGE {toy_tree / 'accel3d' / '__init__.py'}" in proc.stdout  # the copy, not the installed package
    registry = next(line for line in proc.stdout.splitlines() if line.startswith("REGISTRY"))
    assert "'toy'" in registry and "'hierarchical'" in registry and registry.endswith(" 4 toy volume_decoder")
    assert "toy" in proc.stdout and "stage volume_decoder; enabled=True, factor=2" in proc.stdout  # accel3d list


def test_a_misspelled_knob_of_the_new_strategy_names_the_valid_ones(toy_tree, tmp_path):
    args = ["run", "+accelerator@stack.accelerators.toy=toy", "stack.accelerators.toy.fctor=3"]
    proc = _python(toy_tree, "-m", "accel3d.cli", *args, cwd=tmp_path)
    assert proc.returncode != 0
    assert "accelerator 'toy' has no knob 'fctor'; its knobs are enabled, factor" in proc.stderr, proc.stderr[-3000:]


def test_the_job_layer_runs_the_new_strategy(toy_tree, tmp_path, tiny_weights):
    out = tmp_path / "run"
    args = [
        "run",
        "stack=none",
        "stack.name=toy",
        "+accelerator@stack.accelerators.toy=toy",  # any stack can take it; a stack file is optional
        "stack.accelerators.toy.factor=2",
        f"pipeline.weights={tiny_weights}",
        "pipeline.resolution=32",
        "pipeline.num_points=256",
        "pipeline.progress=false",
        "repeats=1",
        "preview=false",
        "export_formats=[glb]",
        f"hydra.run.dir={out}",
    ]
    proc = _python(toy_tree, "-m", "accel3d.cli", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "completed" and record["stack"] == "toy" and record["accelerators"] == ["toy"]
    toy = record["runs"]["toy"]
    assert toy["stats"]["toy"]["calls"] == 1 and toy["summary"]["toy"]["calls"] == 1
    # it really decoded coarsely: 17^3 queries instead of the baseline's 33^3
    assert toy["figures"]["queries"] == toy["stats"]["toy"]["queries"] == 17**3
    assert record["runs"]["baseline"]["figures"]["queries"] == 33**3
    assert "toy.calls" in proc.stdout and (out / "mesh.glb").is_file()
