import pytest
import torch
from conftest import truncated

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
    sdf = truncated(shapes.sphere(0.5))
    field = lambda p: torch.where(p.norm(dim=-1) < 0.01, float("nan"), sdf(p))  # only off the coarse grid
    with pytest.raises(ValueError, match="NaN"):
        HierarchicalVolumeDecoder(min_resolution=16, band=None, progress=False).decode(lambda p: field(p) - 0.6, 64)


def test_resolution_below_minimum():
    with pytest.raises(ValueError, match="resolution: expected at least 63, got 32"):
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
