"""Voxel targets: a sphere's occupancy and sdf against the analytic ones, inside tests against the generalised winding
number, thin plates, open, inverted and overlapping meshes, and bad input."""

import math

import numpy as np
import pytest
import torch
import trimesh

from accel3d.geometry.grid import grid_points
from accel3d.geometry.meshes import BUNDLED_MESH, load_mesh, normalize_mesh, occupancy_grid
from accel3d.geometry.metrics import chamfer_and_fscore
from accel3d.geometry.surface import extract_mesh
from accel3d.geometry.volume import VolumeGrid
from accel3d.geometry.voxelize import inside_grid, surface_voxels, voxel_centers, voxelize

RADIUS = 0.7


@pytest.fixture(scope="module")
def sphere_targets():
    return voxelize(trimesh.creation.icosphere(subdivisions=4, radius=RADIUS), 32)


def test_sphere_occupancy_is_the_analytic_solid_plus_its_surface_voxels(sphere_targets):
    occupancy = sphere_targets.occupancy
    assert occupancy.shape == (32, 32, 32) and occupancy.dtype == torch.bool
    h = 2 / 32
    centre = voxel_centers(32).norm(dim=-1)
    half_diagonal = h * math.sqrt(3) / 2
    assert occupancy[centre < RADIUS - half_diagonal].all()  # wholly inside
    assert not occupancy[centre > RADIUS + half_diagonal].any()  # wholly outside
    volume = float(occupancy.sum()) * h**3
    analytic = 4 / 3 * math.pi * RADIUS**3
    interior = float((centre < RADIUS).sum()) * h**3
    assert interior == pytest.approx(analytic, rel=0.02)
    # The voxels a surface of area A crosses fill A * h * E|n|_1 = 1.5 A h on average over normal directions,
    # half of it outside the solid: the conservative grid holds the solid plus about 0.75 A h.
    assert volume == pytest.approx(analytic + 0.75 * 4 * math.pi * RADIUS**2 * h, rel=0.03)


def test_sphere_sdf_is_positive_inside_and_metric(sphere_targets):
    sdf, trunc = sphere_targets.sdf, sphere_targets.truncation
    assert sdf.shape == (65, 65, 65) and trunc == pytest.approx(3 * 2 / 64)
    assert sdf[32, 32, 32] == pytest.approx(trunc)  # the centre, deep inside: clamped
    assert sdf[0, 0, 0] == pytest.approx(-trunc)
    # sample j sits at -1 + j / 32: j = 53 is x = 0.65625 (inside by 0.04375), j = 56 is x = 0.75 (outside by 0.05)
    assert sdf[53, 32, 32] == pytest.approx(RADIUS - 0.65625, abs=2e-3)
    assert sdf[56, 32, 32] == pytest.approx(RADIUS - 0.75, abs=2e-3)
    exact = (RADIUS - grid_points(64, 1.0).norm(dim=-1)).clamp(-trunc, trunc)
    assert (sdf - exact).abs().max() < 3e-3  # the icosphere's facets are within ~1e-3 of the sphere


def test_inside_matches_the_generalised_winding_number_on_an_overlapping_union():
    a = trimesh.creation.box(extents=(0.9, 0.7, 0.8))
    b = trimesh.creation.cylinder(radius=0.3, height=1.1, sections=24)
    b.apply_translation((0.31, 0.27, 0.23))  # overlaps the box: a union by concatenation, winding number 2 inside both
    union = trimesh.util.concatenate([a, b])
    reference = occupancy_grid(union, 16, 1.0)
    assert np.array_equal(inside_grid(union, 16).numpy(), reference) and reference.sum() > 100


def test_open_and_inverted_meshes_keep_their_inside():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    expected = grid_points(16, 1.0).norm(dim=-1) < RADIUS
    holed = sphere.copy()
    holed.update_faces(np.arange(len(sphere.faces)) >= 40)  # a hole: the axes disagree near it, winding numbers decide
    assert not holed.is_watertight
    inverted = sphere.copy()
    inverted.invert()
    for mesh in (sphere, holed, inverted):
        assert torch.equal(inside_grid(mesh, 16), expected)


def test_a_thin_plate_between_the_samples_keeps_its_voxels():
    plate = trimesh.creation.box(extents=(1.2, 1.2, 0.015))
    plate.apply_translation((0.0, 0.0, 0.0475))  # z in [0.04, 0.055]: between the sdf samples at 0.03125 and 0.0625
    targets = voxelize(plate, 32)
    assert not inside_grid(plate, 64).any()  # no sample is inside: an interior-only rule would lose the plate
    occupancy = targets.occupancy
    # x, y in [-0.6, 0.6] covers voxels 6..25; z in [0.04, 0.055] lies in voxel 16 ([0, 0.0625])
    assert occupancy[6:26, 6:26, 16].all() and int(occupancy.sum()) == 400
    assert targets.sdf[32, 32, 33] == pytest.approx(-(0.04 - 0.03125), abs=1e-4)  # outside, just below the plate
    assert targets.sdf[32, 32, 34] == pytest.approx(-(0.0625 - 0.055), abs=1e-4)
    tilted = plate.copy()
    tilted.apply_transform(trimesh.transformations.rotation_matrix(math.radians(20), (1, 0, 0)))
    shell = surface_voxels(tilted, 32)
    assert shell.any(dim=2)[8:24, 8:24].all()  # every column under the plate keeps a voxel


def test_voxel_indexing_follows_the_grid_and_is_deterministic():
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.1)
    centre = voxel_centers(8)[6, 1, 3]  # (0.625, -0.625, -0.125)
    ball.apply_translation(centre.numpy())
    first, second = voxelize(ball, 8), voxelize(ball, 8)
    assert torch.equal(first.occupancy, second.occupancy) and torch.equal(first.sdf, second.sdf)
    assert torch.nonzero(first.occupancy).tolist() == [[6, 1, 3]]
    assert first.sdf[13, 3, 7] > 0  # its centre is sdf sample (2 * 6 + 1, 2 * 1 + 1, 2 * 3 + 1)


def test_marching_cubes_of_the_sdf_lands_on_the_mesh():
    mesh = normalize_mesh(load_mesh(BUNDLED_MESH))
    targets = voxelize(mesh, 16)  # sdf on grid_points(32, 1.0): a VolumeGrid as the volume decoders make
    surface = extract_mesh(VolumeGrid(targets.sdf, 32, targets.bound, queries=0))
    scores = chamfer_and_fscore(surface, mesh, threshold=2 / 32, samples=20_000)
    assert scores["chamfer"] < 0.5 * (2 / 32) and scores["fscore"] > 0.99  # within half an sdf cell (measured: a third)


def test_bad_inputs_name_the_argument():
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    with pytest.raises(ValueError, match="^mesh must be"):
        voxelize(trimesh.Trimesh(), 8)
    big = sphere.copy()
    big.apply_scale(3.0)
    with pytest.raises(ValueError, match="^mesh reaches .* beyond bound=1.0.*normalize_mesh"):
        voxelize(big, 8)
    with pytest.raises(ValueError, match="^resolution"):
        voxelize(sphere, 0)
    with pytest.raises(ValueError, match="^bound"):
        inside_grid(sphere, 8, bound=float("nan"))
    with pytest.raises(ValueError, match="^sdf_resolution must be a positive multiple of resolution=8"):
        voxelize(sphere, 8, sdf_resolution=12)
    with pytest.raises(ValueError, match="^truncation"):
        voxelize(sphere, 8, truncation=0.0)
