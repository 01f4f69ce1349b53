"""The image-to-3D mesh set: real meshes from packages, procedural shapes, the held-out split and its errors."""

import importlib.util

import numpy as np
import pytest
import trimesh

from accel3d.geometry import mesh_sources
from accel3d.geometry.mesh_sources import DEFAULT_MAX_FACES, decimate, eval_meshes, mesh_set, procedural_meshes, train_meshes

LOCAL = ("bundled", "procedural")  # the sources that need no optional package


def fingerprint(mesh: trimesh.Trimesh) -> bytes:
    return np.round(np.asarray(mesh.vertices), 6).tobytes()


def test_procedural_shapes_are_reproducible_normalised_and_closed():
    first, again, other = procedural_meshes(10, seed=3), procedural_meshes(10, seed=3), procedural_meshes(10, seed=4)
    assert list(first) == [f"proc{i:02d}_{kind}" for i, kind in enumerate(mesh_sources.PROCEDURAL_KINDS)]
    for name, mesh in first.items():
        assert fingerprint(mesh) == fingerprint(again[name])
        assert np.abs(mesh.vertices).max() == pytest.approx(0.9)  # normalize_mesh's half-side
        assert mesh.is_watertight and mesh.volume > 0 and len(mesh.faces) <= DEFAULT_MAX_FACES
    assert sum(fingerprint(first[n]) != fingerprint(other[n]) for n in first) >= 9  # a seed changes the proportions


def test_split_holds_out_the_bunny_and_fresh_procedural_shapes():
    entries = mesh_set(sources=LOCAL, procedural=10, procedural_eval=10)
    held = {name for name, e in entries.items() if e.split == "eval"}
    assert held == {"bunny"} | {name for name in entries if name.startswith("eval_")} and len(held) == 11
    train = {fingerprint(e.mesh) for e in entries.values() if e.split == "train"}
    assert not train & {fingerprint(entries[name].mesh) for name in held}  # no held-out shape is also trained on
    assert set(train_meshes(sources=LOCAL, procedural=10, procedural_eval=10)) == set(entries) - held
    assert set(eval_meshes(sources=LOCAL, procedural=10, procedural_eval=10)) == held
    moved = mesh_set("eval", sources=LOCAL, procedural=3, procedural_eval=0, held_out=("proc01_ellipsoid",))
    assert list(moved) == ["proc01_ellipsoid"]
    assert list(mesh_set("eval", sources=("procedural",), procedural=1, procedural_eval=0)) == []  # no bunny: nothing held out


@pytest.mark.skipif(importlib.util.find_spec("pymeshlab") is None, reason='needs pymeshlab: pip install -e ".[train]"')
def test_pymeshlab_meshes_are_decimated_to_the_face_budget():
    entries = mesh_set(sources=("pymeshlab",), procedural=0, procedural_eval=0)
    assert {name: len(e.mesh.faces) for name, e in entries.items()} == {"cow": 5000, "airplane": 5000, "bone": 3022}
    assert all(e.split == "train" and e.mesh.is_watertight for e in entries.values())
    sphere = trimesh.creation.icosphere(subdivisions=4)
    assert len(decimate(sphere, 1000).faces) == 1000


def test_bad_arguments_and_missing_packages_name_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match="^split"):
        mesh_set("test")
    with pytest.raises(ValueError, match="^sources"):
        mesh_set(sources=("shapenet",))
    with pytest.raises(ValueError, match="^sources"):
        mesh_set(sources="procedural")  # a string, not a sequence of names
    with pytest.raises(ValueError, match="^held_out names \\['dragon'\\]"):
        mesh_set(sources=LOCAL, procedural=1, held_out=("dragon",))
    with pytest.raises(ValueError, match="^count"):
        procedural_meshes(-1)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("pyvista", "pymeshlab") else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="^sources: 'pyvista' .*pip install --no-deps pyvista"):
        mesh_set(sources=("pyvista",))
    with pytest.raises(ModuleNotFoundError, match=r"^sources: 'pymeshlab' .*pip install -e \"\.\[train\]\""):
        mesh_set(sources=("pymeshlab",))
    with pytest.raises(ModuleNotFoundError, match="^big: decimating 5120 faces .* needs pymeshlab"):
        decimate(trimesh.creation.icosphere(subdivisions=4), 1000, "big")
