import pytest
import torch
from tests.fields import truncated

from accel3d.decoding import DenseVolumeDecoder, HierarchicalVolumeDecoder
from accel3d.geometry import shapes
from accel3d.geometry.meshes import load_mesh
from accel3d.geometry.volume import check_resolution

DECODERS = [DenseVolumeDecoder(progress=False), HierarchicalVolumeDecoder(min_resolution=8, progress=False)]


@pytest.mark.parametrize("decoder", DECODERS, ids=["dense", "hierarchical"])
@pytest.mark.parametrize(
    ("field", "error", "match"),
    [
        (lambda p: torch.zeros(len(p), 1), ValueError, r"shape \(\d+,\)"),
        (lambda p: torch.zeros(len(p), dtype=torch.long), TypeError, "floating-point"),
        (lambda p: p.norm(dim=-1).numpy(), TypeError, "return a Tensor"),
        (lambda p: torch.where(p[:, 0] > 0.5, float("nan"), 1.0), ValueError, "NaN"),
    ],
    ids=["shape", "dtype", "type", "nan"],
)
def test_bad_query_functions_are_named(decoder, field, error, match):
    with pytest.raises(error, match=f"field: .*{match}"):
        decoder.decode(field, 16)


def test_nan_appearing_only_at_fine_levels_is_caught():
    # NaN only near z = 0.016: no sample of the 16^3..64^3 levels lies there, but the 128^3 grid has z = 0.0158.
    sdf = truncated(shapes.sphere(0.5))
    field = lambda p: torch.where((p[:, 2] - 0.016).abs() < 0.012, float("nan"), sdf(p))
    coarse = DenseVolumeDecoder(progress=False).decode(field, 64)  # the coarser levels are clean
    assert torch.isfinite(coarse.values).all()
    with pytest.raises(ValueError, match="field: .*NaN"):
        HierarchicalVolumeDecoder(min_resolution=16, progress=False).decode(field, 128)


def test_inf_is_refused_like_nan():
    with pytest.raises(ValueError, match="NaN or inf"):
        DenseVolumeDecoder(progress=False).decode(lambda p: torch.full((len(p),), float("inf")), 8)


def test_single_level_resolution_warns_that_it_decodes_densely():
    with pytest.warns(UserWarning, match="decodes densely"):
        grid = HierarchicalVolumeDecoder(min_resolution=63, progress=False).decode(truncated(shapes.sphere()), 65)
    assert grid.query_fraction == 1.0


def test_resolution_below_minimum():
    with pytest.raises(ValueError, match="resolution: expected an integer >= 63, got 32"):
        HierarchicalVolumeDecoder(min_resolution=63, progress=False).decode(truncated(shapes.sphere()), 32)
    with pytest.raises(TypeError, match="resolution"):
        DenseVolumeDecoder(progress=False).decode(truncated(shapes.sphere()), 32.0)


def test_grid_too_large_for_memory_is_refused_up_front():
    with pytest.raises(MemoryError, match=r"4096\^3 grid needs about [\d.]+ GiB"):
        check_resolution(4096)
    calls = []
    with pytest.raises(MemoryError):
        DenseVolumeDecoder(max_memory_bytes=1000, progress=False).decode(lambda p: calls.append(1) or p[:, 0], 64)
    assert calls == []


@pytest.mark.parametrize("kwargs", [{"min_resolution": 1}, {"band": -1.0}, {"dilation": -1}, {"inside": "up"}])
def test_bad_decoder_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        HierarchicalVolumeDecoder(**kwargs)


def test_unreadable_mesh_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        load_mesh(tmp_path / "missing.ply")
    garbage = tmp_path / "broken.ply"
    garbage.write_bytes(b"ply\nformat nonsense\n\x00\x01")
    with pytest.raises(ValueError, match="broken.ply"):
        load_mesh(garbage)


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
