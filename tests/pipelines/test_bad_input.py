"""Bad inputs and knobs for the pipelines. The shape pipeline: input meshes, point clouds and latents
each get a clear error naming ``input``, and its knobs are checked before the VAE loads. The SDS
pipeline: knobs and ranges are checked before the U-Net is built, and a NaN that appears mid-run stops
the run at its step instead of being zeroed."""

import numpy as np
import pytest
import torch
import trimesh

from accel3d.geometry.meshes import check_mesh, load_mesh
from accel3d.pipelines.sds import SDSPipeline
from accel3d.pipelines.vecset_shape import VecsetShapePipeline, load_shape_inputs

NAN, INF = float("nan"), float("inf")


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
    monkeypatch.setattr("accel3d.pipelines.vecset_shape.load_vae", lambda *a, **k: loaded.append(1))
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


SMALL = dict(
    backbone="tiny", iterations=3, latent_size=16, grid_resolution=16, num_samples=16, turntable_views=2, turntable_size=16, progress=False
)


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("guidance_scale", NAN),
        ("guidance_scale", INF),
        ("guidance_scale", -1.0),
        ("lr", NAN),
        ("lr", 0.0),
        ("lr", INF),
        ("iterations", 0),
        ("iterations", 10.0),
        ("latent_size", "32"),
        ("grid_resolution", 1),
        ("num_samples", 48.5),
        ("turntable_views", 0),
        ("seed", "0"),
        ("progress", "false"),
        ("backbone", ""),
        ("embeddings", ""),
    ],
)
def test_sds_knobs_are_refused_before_the_unet_is_built(knob, value, monkeypatch):
    built = []
    monkeypatch.setattr("accel3d.pipelines.sds.build_unet", lambda *a, **k: built.append(1))
    with pytest.raises((ValueError, TypeError), match=f"^{knob}: expected"):
        SDSPipeline(**{**SMALL, knob: value})
    assert built == []


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("t_range", [0.02, NAN]),
        ("t_range", [0.9, 0.1]),
        ("t_range", [0.0, 1.5]),
        ("azimuth_range", [NAN, 180.0]),
        ("elevation_range", [-10.0, 95.0]),
        ("radius_range", [0.0, 2.0]),
        ("fovy_range", [40.0, INF]),
    ],
)
def test_sds_ranges_are_refused_by_name(knob, value):
    with pytest.raises(ValueError, match=f"^{knob}"):
        SDSPipeline(**{**SMALL, knob: value})


@pytest.fixture(scope="module")
def pipe():
    return SDSPipeline(**SMALL)


def test_nan_text_embeddings_in_a_file_are_refused(tmp_path, pipe):
    emb = torch.randn(2, 7, pipe.unet.config.cross_attention_dim)
    emb[1, 3, 5] = NAN
    torch.save(emb, tmp_path / "emb.pt")
    other = SDSPipeline(**{**SMALL, "embeddings": str(tmp_path / "emb.pt")})
    with pytest.raises(ValueError, match="^embeddings: .* NaN or inf"):
        other.load_inputs()


def test_nan_embeddings_given_directly_stop_the_run_instead_of_zeroing_the_gradient(pipe):
    # Before: nan_to_num turned the NaN gradient into 0, the loss read 0 and PSNR inf, exit code 0.
    inputs = pipe.load_inputs()
    inputs.embeddings[1, 0, 0] = NAN
    with pytest.raises(FloatingPointError, match="embeddings"):
        pipe.run(inputs)


def test_a_unet_that_turns_nan_mid_run_stops_at_that_step(pipe):
    inputs = pipe.load_inputs()
    calls = []
    original = pipe.unet.forward

    def flaky(*args, **kwargs):
        calls.append(1)
        out = original(*args, **kwargs)
        if len(calls) == 2:
            out.sample[:] = NAN
        return out

    pipe.unet.forward = flaky
    try:
        with pytest.raises(FloatingPointError, match=r"sds: .* NaN or inf in the U-Net's noise prediction at step 2 of 3"):
            pipe.run(inputs)
    finally:
        del pipe.unet.forward
    assert len(calls) == 2  # stopped there; no further step was taken on a corrupted field


def test_run_iterations_override_is_checked(pipe):
    with pytest.raises(ValueError, match="^iterations: expected an integer >= 1"):
        pipe.run(pipe.load_inputs(), iterations=0)


def test_scene_and_camera_knobs():
    from accel3d.pipelines.sds_scene import CameraSampler, VoxelField, turntable

    for kwargs, match in [
        ({"bound": INF}, "^bound: expected"),
        ({"blob_radius": NAN}, "^blob_radius: expected"),
        ({"resolution": 16.0}, "^resolution: expected an integer"),
        ({"channels": True}, "^channels: expected an integer"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            VoxelField(**kwargs)
    with pytest.raises(ValueError, match=r"^radius_range\[1\]: expected a finite number"):
        CameraSampler(radius_range=(1.0, "2"))
    field = VoxelField(resolution=8)
    for kwargs, match in [({"fovy": NAN}, "^fovy: expected"), ({"elevation": 120.0}, "^elevation: expected"), ({"size": 0}, "^size")]:
        with pytest.raises(ValueError, match=match):
            turntable(field, **kwargs)


def test_review_findings_in_the_sds_pipeline():
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match="^seed: expected an integer >= 0"):
            SDSPipeline(**{**SMALL, "seed": seed})
    with pytest.raises(ValueError, match="^azimuth_range"):
        SDSPipeline(**{**SMALL, "azimuth_range": [-1e308, 1e308]})


def test_t_range_up_to_one_means_the_last_training_step(pipe):
    top = SDSPipeline(**{**SMALL, "t_range": [1.0, 1.0]})
    assert top.min_step == top.max_step == 999
    result = top.run(top.load_inputs(), iterations=2)  # was an IndexError inside diffusers' add_noise
    assert len(result.losses) == 2


def test_embeddings_file_that_is_not_a_tensor_file(tmp_path, pipe):
    (tmp_path / "emb.pt").write_text("a prompt, not embeddings")
    with pytest.raises(ValueError, match="^embeddings: .* is not a readable PyTorch tensor file"):
        SDSPipeline(**{**SMALL, "embeddings": str(tmp_path / "emb.pt")}).load_inputs()
    inputs = pipe.load_inputs()
    inputs.embeddings = torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match=r"^embeddings: expected a \(2, seq, 64\) tensor"):
        pipe.run(inputs)


def test_point_cloud_inputs(tmp_path):
    import numpy as np

    from accel3d.pipelines.vecset_shape import load_shape_inputs

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
