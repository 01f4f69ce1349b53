import numpy as np
import pytest
import torch
import trimesh

from accel3d.core.io import atomic_write
from accel3d.decoding import DenseVolumeDecoder
from accel3d.geometry import shapes
from accel3d.geometry.metrics import chamfer_and_fscore, volume_iou
from accel3d.geometry.surface import export_mesh, extract_mesh, render_preview
from accel3d.geometry.volume import VolumeGrid
from tests.fields import truncated


@pytest.fixture(scope="module")
def sphere_mesh():
    grid = DenseVolumeDecoder(progress=False).decode(truncated(shapes.sphere(0.5, (0.2, 0.0, 0.0))), 64)
    return extract_mesh(grid)


def test_marching_cubes_maps_bounds_and_winds_outward(sphere_mesh):
    assert sphere_mesh.is_watertight
    assert sphere_mesh.volume == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=0.02)  # positive: the faces wind outward
    assert np.allclose(sphere_mesh.vertices.mean(0), [0.2, 0, 0], atol=5e-3)
    radii = np.linalg.norm(sphere_mesh.vertices - [0.2, 0, 0], axis=1)
    assert np.allclose(radii, 0.5, atol=0.01)


def test_inside_negative_flips_nothing_but_the_sign_convention():
    field = truncated(shapes.sphere(0.5))
    grid = DenseVolumeDecoder(progress=False).decode(lambda p: -field(p), 32)
    mesh = extract_mesh(grid, inside="negative")
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=0.05)  # positive: still wound outward
    assert abs(np.linalg.norm(mesh.vertices, axis=1).mean() - 0.5) < 0.01


def test_empty_field_gives_empty_mesh_and_warning():
    grid = DenseVolumeDecoder(progress=False).decode(lambda p: -torch.ones(len(p)), 16)
    with pytest.warns(UserWarning, match="no surface"):
        mesh = extract_mesh(grid)
    assert len(mesh.faces) == 0


def test_nan_grid_is_refused():
    values = torch.zeros(9, 9, 9)
    values[4, 4, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        extract_mesh(VolumeGrid(values, 8, 1.0, queries=0))


@pytest.mark.parametrize("fmt", ["glb", "ply", "obj"])
def test_export_round_trip(tmp_path, sphere_mesh, fmt):
    path = export_mesh(sphere_mesh, tmp_path / f"m.{fmt}")
    loaded = trimesh.load(path, force="mesh")
    assert len(loaded.faces) == len(sphere_mesh.faces)
    assert np.allclose(loaded.bounds, sphere_mesh.bounds, atol=1e-5)


def test_export_refuses_unknown_format(tmp_path, sphere_mesh):
    with pytest.raises(ValueError, match="glb"):
        export_mesh(sphere_mesh, tmp_path / "m.xyz")


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_preview_is_a_png(tmp_path, sphere_mesh):
    empty = trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=int))
    path = render_preview({"a": sphere_mesh, "empty": empty}, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_detect_differences(sphere_mesh):
    shifted = sphere_mesh.copy()
    shifted.apply_translation([0.05, 0, 0])
    same = chamfer_and_fscore(sphere_mesh, sphere_mesh, 0.01)
    moved = chamfer_and_fscore(sphere_mesh, shifted, 0.01)
    assert same["fscore"] > 0.99 and moved["fscore"] < 0.5 and moved["chamfer"] > 5 * same["chamfer"]
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert volume_iou(a, b) == pytest.approx(1 / 3)
    assert volume_iou(a & False, b & False) == 1.0
