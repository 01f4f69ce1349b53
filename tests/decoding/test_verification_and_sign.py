"""The verification pass finds a planted miss; grids carry their sign convention; mesh fields are SDFs."""

import pytest
import torch
import trimesh

from accel3d.decoding import DenseVolumeDecoder, HierarchicalVolumeDecoder
from accel3d.geometry import shapes
from accel3d.geometry.mesh_fields import FIELD_FAMILIES, MeshSDF
from accel3d.geometry.surface import extract_mesh
from tests.fields import offset_thin_plate, truncated


def _plate_on_a_ball():
    ball, plate = shapes.sphere(0.3), offset_thin_plate()
    return truncated(lambda p: torch.maximum(ball(p), plate(p)))


def test_the_verification_pass_finds_a_planted_miss_and_decodes_around_it():
    field = _plate_on_a_ball()
    dense = DenseVolumeDecoder(progress=False).decode(field, 128)
    # FlashVDM's rule without a band misses the plate (thinner than a 32^3 voxel, between its samples)
    kwargs = dict(min_resolution=32, band=None, band_units="field", dilation=1, progress=False)
    blind = HierarchicalVolumeDecoder(**kwargs).decode(field, 128)
    lost = int(((dense.values > 0) != (blind.values > 0)).sum())
    assert lost > 5_000 and blind.verification is None
    with pytest.warns(UserWarning, match=r"verification sample found \d+ of \d+ undecoded points .* on the wrong side"):
        checked = HierarchicalVolumeDecoder(verify=0.01, **kwargs).decode(field, 128)
    v = checked.verification
    assert v["misses"] > 0 and v["sampled"] == pytest.approx(0.01 * (blind.dense_queries - blind.queries), abs=1)
    assert v["queries"] == v["sampled"] + v["refined"] and checked.queries == blind.queries + v["queries"]
    still = int(((dense.values > 0) != (checked.values > 0)).sum())
    assert still < lost / 2  # the neighbourhoods of the misses were decoded
    quiet = HierarchicalVolumeDecoder(verify=0.01, min_resolution=32, progress=False).decode(field, 128)  # the default rule
    assert quiet.verification["misses"] == 0 and torch.equal(quiet.values > 0, dense.values > 0)


def test_verification_without_refine_only_reports():
    field = _plate_on_a_ball()
    kwargs = dict(min_resolution=32, band=None, band_units="field", dilation=1, progress=False, verify=0.01)
    with pytest.warns(UserWarning, match="widen the band"):
        grid = HierarchicalVolumeDecoder(verify_refine=False, **kwargs).decode(field, 128)
    assert grid.verification["refined"] == 0 and grid.verification["misses"] > 0


def test_a_negative_inside_sdf_carries_its_sign_to_the_mesh():
    sdf = lambda p: p.norm(dim=-1) - 0.5  # most SDF code: negative inside
    grid = HierarchicalVolumeDecoder(min_resolution=16, inside="negative", progress=False).decode(sdf, 64)
    assert (grid.level, grid.inside) == (0.0, "negative")
    mesh = extract_mesh(grid)  # no sign given: the grid's
    assert mesh.volume > 0.4  # outward normals (4/3 pi 0.5^3 = 0.52); inward ones give a negative volume
    assert grid.query_fraction < 0.5  # a raw SDF: the calibrated band saves queries
    dense = DenseVolumeDecoder(inside="negative", progress=False).decode(sdf, 64)
    assert dense.inside == "negative" and extract_mesh(dense).volume > 0.4
    assert extract_mesh(dense, inside="positive").volume < 0  # an explicit argument still wins


def test_a_mesh_sdf_is_a_signed_distance_and_its_families_keep_the_surface():
    sdf = MeshSDF(trimesh.creation.icosphere(subdivisions=4, radius=0.5), resolution=64)
    points = torch.tensor([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0], [0.0, 0.7, 0.0]])
    assert torch.allclose(sdf(points), torch.tensor([0.5, 0.25, -0.2]), atol=0.03)
    for name, make in FIELD_FAMILIES.items():
        field = make(sdf)
        assert (field(points[:2]) > 0).all() and (field(points[2:]) < 0).all(), name
