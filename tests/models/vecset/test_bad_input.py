"""Bad inputs of the vecset family. Weight files and VAE configurations: each error names ``weights`` or
the config field. The shape pipeline: input meshes, point clouds and latents each get a clear error naming
``input``, and its knobs are checked before the VAE loads."""

import numpy as np
import pytest
import torch
import trimesh

from accel3d.geometry.meshes import check_mesh, load_mesh
from accel3d.models.vecset.pipeline import VecsetShapePipeline, load_shape_inputs
from accel3d.models.vecset.vae import VecsetVAE


def test_a_text_file_named_pt_is_refused_without_the_weights_only_advice(tmp_path, tiny_weights):
    text = tmp_path / "latents.pt"
    text.write_text("these are not latents\n")
    with pytest.raises(ValueError, match="^input: .* is not a readable PyTorch tensor file") as info:
        load_shape_inputs(text, 256)
    assert "weights_only" not in str(info.value) and info.value.__cause__ is None
    with pytest.raises(ValueError, match="^weights: .* is not a readable PyTorch tensor file") as info:
        VecsetVAE.from_pretrained(text)
    assert "weights_only" not in str(info.value)
    with pytest.raises(ValueError, match="^weights: expected null"):
        VecsetShapePipeline(weights="")


def test_weights_that_are_not_a_vae_or_hold_nan(tmp_path, tiny_weights):
    torch.save({"something": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="^weights: .* is not an accel3d VecsetVAE checkpoint"):
        VecsetVAE.from_pretrained(tmp_path / "other.pt")
    payload = torch.load(tiny_weights, weights_only=True)
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first][0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=f"^weights: .* NaN or inf in 1 tensors, first {first}"):
        VecsetVAE.from_pretrained(tmp_path / "nan.pt")


def test_review_findings_in_weights(tmp_path, tiny_weights, tiny_config):
    from dataclasses import asdict

    from accel3d.models.vecset.vae import VecsetVAEConfig

    for key, value in (("qk_norm", "false"), ("num_latents", 256.0), ("bounds", float("nan")), ("scale_factor", 0.0)):
        with pytest.raises(ValueError, match=f"VecsetVAEConfig.{key}: expected"):
            VecsetVAEConfig(**{**asdict(tiny_config), key: value})
        payload = torch.load(tiny_weights, weights_only=True)
        payload["config"][key] = value
        torch.save(payload, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match=f"^weights: .*VecsetVAEConfig.{key}: expected"):
            VecsetVAE.from_pretrained(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="^map_location: expected a device"):
        VecsetVAE.from_pretrained(tiny_weights, map_location="banana")


def _write_mesh(path, vertices, faces):
    trimesh.Trimesh(np.asarray(vertices, dtype=float), np.asarray(faces), process=False).export(path)
    return path


def _box(tmp_path):
    box = trimesh.creation.box()
    return box.vertices.copy(), box.faces.copy()


def test_a_nan_vertex_is_refused_not_dropped(tmp_path):
    v, f = _box(tmp_path)
    v[2] = np.nan
    path = _write_mesh(tmp_path / "nan.obj", v, f)
    with pytest.raises(ValueError, match=r"^input: '.*nan\.obj' has 1 of 8 vertices with NaN or inf"):
        load_shape_inputs(path, 256)


def test_a_zero_area_mesh_is_refused(tmp_path):
    v = [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]]  # collinear: every triangle degenerate
    path = _write_mesh(tmp_path / "flat.ply", v, [[0, 1, 2], [1, 2, 3]])
    with pytest.raises(ValueError, match="^input: .*zero surface area"):
        load_shape_inputs(path, 256)


def test_a_mesh_whose_vertices_coincide_is_refused_before_the_model_runs(tmp_path):
    path = _write_mesh(tmp_path / "point.ply", [[0.2, 0.2, 0.2]] * 3, [[0, 1, 2]])
    with pytest.raises(ValueError, match="^input: .*all vertices of its faces coincide"):
        load_shape_inputs(path, 256)
    with pytest.raises(ValueError, match="coincide"):
        check_mesh(trimesh.Trimesh([[1.0, 1, 1]] * 3, [[0, 1, 2]], process=False))


def test_load_mesh_names_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="^weights: no file"):
        load_mesh(tmp_path / "missing.obj", name="weights")
    with pytest.raises(FileNotFoundError, match="^input: no file"):
        load_shape_inputs(tmp_path / "missing.obj", 256)


def test_points_and_normals_of_different_lengths(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "pc.npz", points=rng.uniform(-0.5, 0.5, (300, 3)), normals=rng.normal(size=(299, 3)))
    with pytest.raises(ValueError, match="^input: .* has 300 points but 299 normals"):
        load_shape_inputs(tmp_path / "pc.npz", 100)
    np.savez(tmp_path / "wide.npz", points=rng.uniform(-0.5, 0.5, (300, 4)), normals=rng.normal(size=(300, 3)))
    with pytest.raises(ValueError, match=r"^input: 'points' in .* must be \(P, 3\)"):
        load_shape_inputs(tmp_path / "wide.npz", 100)


def test_zero_normals_and_a_single_repeated_point_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(300, 3))
    normals[:5] = 0
    np.savez(tmp_path / "zero.npz", points=rng.uniform(-0.5, 0.5, (300, 3)), normals=normals)
    with pytest.raises(ValueError, match="^input: 5 of 300 normals .* are zero"):
        load_shape_inputs(tmp_path / "zero.npz", 100)
    np.save(tmp_path / "same.npy", np.concatenate([np.full((300, 3), 0.1), rng.normal(size=(300, 3))], 1))
    with pytest.raises(ValueError, match="^input: every point .* is the same point"):
        load_shape_inputs(tmp_path / "same.npy", 100)


def test_non_numeric_and_unreadable_arrays(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 6, dtype=object).reshape(1, 6), allow_pickle=True)
    with pytest.raises(ValueError, match="^input: could not read"):
        load_shape_inputs(tmp_path / "objects.npy", 1)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="^input: .* is not a readable .npz archive"):
        load_shape_inputs(tmp_path / "junk.npz", 1)


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_input_is_refused_not_replaced_by_the_bunny(value, tiny_weights):
    with pytest.raises(ValueError, match="^input: expected null .* got"):
        VecsetShapePipeline(weights=str(tiny_weights), input=value)
    with pytest.raises(ValueError, match="^input: expected a mesh"):
        load_shape_inputs(value, 256)


@pytest.mark.parametrize(
    ("knob", "value"),
    [("resolution", 256.0), ("resolution", 1), ("num_points", "2048"), ("level", float("nan")), ("inside", "in"), ("chunk_size", 0)],
)
def test_shape_pipeline_knobs_are_refused_before_the_vae_loads(knob, value, monkeypatch):
    loaded = []
    monkeypatch.setattr("accel3d.models.vecset.pipeline.load_vae", lambda *a, **k: loaded.append(1))
    with pytest.raises((ValueError, TypeError), match=f"^{knob}: expected"):
        VecsetShapePipeline(**{knob: value})
    assert loaded == []


def test_review_findings_in_inputs(tmp_path, tiny_weights):
    v, f = _box(tmp_path)
    with pytest.raises(ValueError, match="^input: .* coordinates beyond 1e\\+12"):
        load_shape_inputs(_write_mesh(tmp_path / "huge.obj", v * 1e300, f), 256)
    with pytest.raises(ValueError, match="^input: .* all vertices of its faces coincide"):
        load_shape_inputs(_write_mesh(tmp_path / "tiny.ply", v * 1e-30, f), 256)
    with pytest.raises(ValueError, match="^num_points: expected an integer >= 1"):
        load_shape_inputs(None, -3)
    rng = np.random.default_rng(0)
    few = np.repeat(rng.uniform(-0.5, 0.5, (5, 3)), 60, axis=0)
    np.savez(tmp_path / "few.npz", points=few, normals=rng.normal(size=few.shape))
    pipe = VecsetShapePipeline(weights=str(tiny_weights), input=str(tmp_path / "few.npz"), num_points=256)
    with pytest.raises(ValueError, match="^input: .* only 5 distinct points; the VAE needs at least num_latents=16"):
        pipe.load_inputs()
    line = np.linspace(-0.5, 0.5, 300)[:, None] * np.array([[1.0, 0.5, 0.2]])
    np.savez(tmp_path / "line.npz", points=line, normals=rng.normal(size=line.shape))
    pipe.input = str(tmp_path / "line.npz")
    with pytest.raises(ValueError, match="^input: the points of .* lie on a line"):
        pipe.load_inputs()


def test_point_cloud_inputs(tmp_path):
    import numpy as np

    from accel3d.models.vecset.pipeline import load_shape_inputs

    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.5, 0.5, (300, 3))
    nrm = rng.normal(size=(300, 3))
    np.savez(tmp_path / "ok.npz", points=pts, normals=nrm)
    loaded = load_shape_inputs(tmp_path / "ok.npz", 200)
    assert loaded.points.shape == (200, 3) and torch.allclose(loaded.normals.norm(dim=-1), torch.ones(200))
    np.save(tmp_path / "ok.npy", np.concatenate([pts, nrm], 1))
    assert load_shape_inputs(tmp_path / "ok.npy", 300).points.shape == (300, 3)
    np.savez(tmp_path / "nonormals.npz", points=pts)
    with pytest.raises(ValueError, match="lacks arrays \\['normals'\\]"):
        load_shape_inputs(tmp_path / "nonormals.npz", 100)
    with pytest.raises(ValueError, match="num_points: 400"):
        load_shape_inputs(tmp_path / "ok.npz", 400)
    np.save(tmp_path / "big.npy", np.concatenate([pts * 5, nrm], 1))
    with pytest.raises(ValueError, match=r"inside \[-1, 1\]"):
        load_shape_inputs(tmp_path / "big.npy", 100)
    with pytest.raises(ValueError, match=r"\(P, 6\)"):
        np.save(tmp_path / "bad.npy", pts)
        load_shape_inputs(tmp_path / "bad.npy", 100)
