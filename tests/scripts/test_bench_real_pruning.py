"""scripts/bench_real_pruning.py: every Fast-SAM3D module cuts what it should on the real TRELLIS and SAM3D classes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.integrations import real_models

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_real_pruning.py"
pytestmark = pytest.mark.filterwarnings("ignore:'locale.getdefaultlocale' is deprecated:DeprecationWarning")


def _script():
    spec = importlib.util.spec_from_file_location("bench_real_pruning", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("library", ["sam3d"])  # TRELLIS: through accel3d bench pruning --real, below
def test_each_module_cuts_its_own_work_on_the_real_classes(library, capsys):
    requires = real_models.TRELLIS_REQUIRES if library == "trellis" else real_models.SAM3D_REQUIRES
    if not real_models._installed(*requires):
        pytest.skip(real_models.TRELLIS_INSTALL if library == "trellis" else real_models.SAM3D_INSTALL)
    modules = ["modality_cache", "token_carving", "spectral_aggregation", "fastsam3d"]
    rows = {row["config"]: row for row in _script().main(["--library", library, "--repeats", "1", "--configs", *modules])}
    none = rows["none"]
    assert rows["modality_cache"]["ss_calls"] < none["ss_calls"]  # SS steps cached
    assert rows["token_carving"]["slat_tokens"] < none["slat_tokens"]  # steps skipped, tokens carved
    assert rows["token_carving"]["slat_calls"] < none["slat_calls"]
    assert rows["spectral_aggregation"]["voxels"] < none["voxels"]  # the structure merged before the SLaT
    assert rows["spectral_aggregation"]["slat_tokens"] < none["slat_tokens"]
    fast = rows["fastsam3d"]
    assert fast["ss_calls"] < none["ss_calls"] and fast["slat_calls"] < none["slat_calls"] and fast["voxels"] < none["voxels"]
    assert "fidelity is not measured here" in capsys.readouterr().out


def test_accel3d_bench_pruning_real_runs_the_script_and_writes_its_rows(tmp_path, capsys):
    if not real_models._installed(*real_models.TRELLIS_REQUIRES):
        pytest.skip(real_models.TRELLIS_INSTALL)
    from accel3d.bench import main

    out = tmp_path / "real.json"
    main(["pruning", "--real", "trellis", "--repeats", "1", "--out", str(out)])
    rows = {row["config"]: row for row in json.loads(out.read_text())["results"]}
    assert set(rows) == {"none", "modality_cache", "token_carving", "spectral_aggregation", "fastsam3d",
                         "taylorseer", "easycache", "random_drop", "uniform_merge"}  # fmt: skip
    none, fast = rows["none"], rows["fastsam3d"]
    assert rows["modality_cache"]["ss_calls"] < none["ss_calls"] and rows["token_carving"]["slat_tokens"] < none["slat_tokens"]
    assert rows["spectral_aggregation"]["voxels"] < none["voxels"] and rows["uniform_merge"]["voxels"] < none["voxels"]
    assert fast["ss_calls"] < none["ss_calls"] and fast["slat_calls"] < none["slat_calls"] and fast["voxels"] < none["voxels"]
    assert "fidelity is not measured here" in capsys.readouterr().out
