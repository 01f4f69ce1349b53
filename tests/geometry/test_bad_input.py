"""Bad fields, grids, meshes and metric arguments for the geometry package: each error names the
argument, a grid too large for memory is refused before any query, and Ctrl-C during the metrics exits cleanly."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import trimesh

from accel3d.geometry import shapes
from accel3d.geometry.meshes import load_mesh
from accel3d.geometry.metrics import chamfer_and_fscore
from accel3d.geometry.volume import DenseVolumeDecoder, check_resolution
from tests.fields import truncated

NAN, INF = float("nan"), float("inf")


def test_inf_is_refused_like_nan():
    with pytest.raises(ValueError, match="NaN or inf"):
        DenseVolumeDecoder(progress=False).decode(lambda p: torch.full((len(p),), float("inf")), 8)


def test_grid_too_large_for_memory_is_refused_up_front():
    with pytest.raises(MemoryError, match=r"4096\^3 grid needs about [\d.]+ GiB"):
        check_resolution(4096)
    calls = []
    with pytest.raises(MemoryError):
        DenseVolumeDecoder(max_memory_bytes=1000, progress=False).decode(lambda p: calls.append(1) or p[:, 0], 64)
    assert calls == []


def test_unreadable_mesh_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        load_mesh(tmp_path / "missing.ply")
    garbage = tmp_path / "broken.ply"
    garbage.write_bytes(b"ply\nformat nonsense\n\x00\x01")
    with pytest.raises(ValueError, match="broken.ply"):
        load_mesh(garbage)


def test_surface_extraction_refuses_a_nan_level_instead_of_returning_an_empty_mesh():
    from accel3d.geometry.surface import extract_mesh

    grid = DenseVolumeDecoder(progress=False).decode(truncated(shapes.sphere(0.5)), 16)
    for level in (NAN, INF, "0"):
        with pytest.raises((ValueError, TypeError), match="^level: expected a finite number"):
            extract_mesh(grid, level=level)
    with pytest.raises(ValueError, match="^inside: expected one of"):
        extract_mesh(grid, inside="in")
    grid.values[0, 0, 0] = INF
    with pytest.raises(ValueError, match="^grid: 1 NaN or inf values"):
        extract_mesh(grid)


@pytest.mark.parametrize("threshold", [-0.01, 0.0, float("nan"), float("inf")])
def test_fscore_threshold_must_be_positive_and_finite(threshold):
    box = trimesh.creation.box()
    with pytest.raises(ValueError, match="^fscore_threshold: expected a finite number > 0"):
        chamfer_and_fscore(box, box, threshold)


INTERRUPTED = """
import signal, sys, trimesh
signal.signal(signal.SIGINT, signal.default_int_handler)
from accel3d.geometry.metrics import chamfer_and_fscore
a, b = trimesh.creation.icosphere(5), trimesh.creation.icosphere(5, radius=1.01)
print("ready", flush=True)
while True:
    chamfer_and_fscore(a, b, 0.01, samples=400_000)
"""


def test_ctrl_c_during_the_metrics_exits_with_keyboard_interrupt_not_a_segfault():
    # scipy's threaded KD-tree query (workers=-1) segfaulted (-11) when SIGINT arrived mid-query.
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (-signal.SIGINT, 1), (proc.returncode, err[-500:])
    assert "KeyboardInterrupt" in err


def test_surface_and_export_arguments(tmp_path):
    from accel3d.geometry.surface import export_mesh, extract_mesh
    from accel3d.geometry.volume import VolumeGrid

    with pytest.raises(TypeError, match="^grid: expected a VolumeGrid"):
        extract_mesh(torch.zeros(9, 9, 9))
    values = torch.linspace(-1, 1, 9)[:, None, None].expand(9, 9, 9).clone()
    with pytest.raises(ValueError, match="^bound: expected a finite number > 0"):
        extract_mesh(VolumeGrid(values, 8, float("nan"), queries=729))
    box = trimesh.creation.box()
    with pytest.raises(TypeError, match="^path: expected a file path"):
        export_mesh(box, None)
    with pytest.raises(TypeError, match="^mesh: expected a trimesh.Trimesh"):
        export_mesh(None, tmp_path / "m.glb")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        export_mesh(box, tmp_path)
    bad = box.copy()
    bad.vertices[0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf vertices"):
        export_mesh(bad, tmp_path / "nan.glb")
    assert not list(tmp_path.glob("*.glb*"))
