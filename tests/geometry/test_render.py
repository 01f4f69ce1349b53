"""The CPU rasteriser: silhouettes against the pinhole model, determinism, image axes, occlusion, crops, random poses and bad input."""

import math

import numpy as np
import pytest
import torch
import trimesh

from accel3d.geometry.render import Camera, Pose, crop_intrinsics, crop_to_mask, default_pose, random_pose, render, render_crop

EYE = torch.eye(3)


def pose(x: float = 0.0, y: float = 0.0, z: float = 3.0, scale=1.0, rotation=EYE) -> Pose:
    return Pose(rotation, torch.tensor([x, y, z]), torch.as_tensor(scale, dtype=torch.float32).expand(3))


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=0.5)  # 5,120 faces


def disk_area(camera: Camera, radius: float, distance: float) -> float:
    """Pixels inside the silhouette of a sphere on the optical axis: a disk of radius f * r / sqrt(d^2 - r^2)."""
    return math.pi * (camera.focal * radius / math.sqrt(distance**2 - radius**2)) ** 2


@pytest.mark.parametrize("supersample", [1, 2])
def test_sphere_mask_area_matches_the_pinhole_disk(sphere, supersample):
    camera = Camera(size=128)
    view = render(sphere, pose(z=3.0), camera, supersample=supersample)
    area = float(view.mask.sum())
    assert area == pytest.approx(disk_area(camera, 0.5, 3.0), rel=0.02)
    assert view.depth[64, 64] == pytest.approx(2.5, abs=0.01)  # the near pole of the sphere
    assert torch.isinf(view.depth[~view.mask]).all() and torch.isfinite(view.depth[view.mask]).all()


def test_rendering_twice_is_identical(sphere):
    g = torch.Generator().manual_seed(3)
    p = random_pose(g)
    first, second = render(sphere, p), render(sphere, p)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_plus_x_is_image_right_and_plus_y_is_image_down(sphere):
    camera = Camera(size=64)

    def centroid(view):
        rows, cols = torch.nonzero(view.mask, as_tuple=True)
        return float(cols.float().mean()), float(rows.float().mean())

    cx, cy = centroid(render(sphere, pose(), camera))
    assert (cx, cy) == (pytest.approx(31.5, abs=0.1), pytest.approx(31.5, abs=0.1))  # centre of pixels 0..63
    right, _ = centroid(render(sphere, pose(x=0.6), camera))
    _, down = centroid(render(sphere, pose(y=0.6), camera))
    expected = 0.6 / 3.0 * camera.focal  # the centre's projection; the silhouette's centroid sits slightly further out
    assert right - cx == pytest.approx(expected, rel=0.1) and down - cy == pytest.approx(expected, rel=0.1)


def test_anisotropic_scale_stretches_the_object_axis(sphere):
    view = render(sphere, pose(scale=torch.tensor([2.0, 1.0, 1.0])), Camera(size=96))
    rows, cols = torch.nonzero(view.mask, as_tuple=True)
    width, height = int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)
    assert width / height == pytest.approx(2.0, rel=0.1)
    turned = render(sphere, Pose(torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), *pose(scale=torch.tensor([2.0, 1.0, 1.0]))[1:]))
    rows, cols = torch.nonzero(turned.mask, as_tuple=True)  # scale acts before the rotation: object x becomes camera y
    assert int(rows.max() - rows.min() + 1) > 1.8 * int(cols.max() - cols.min() + 1)


def test_a_small_cube_in_front_hides_the_big_one_whatever_the_face_order():
    small = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
    small.apply_translation((0.0, 0.0, -1.5))  # at z = 1.5 once the pose adds z = 3
    big = trimesh.creation.box(extents=(2.0, 2.0, 2.0))  # front face at z = 2
    camera = Camera(size=64)
    views = [render(trimesh.util.concatenate(pair), pose(), camera) for pair in ((small, big), (big, small))]
    assert torch.equal(views[0].depth, views[1].depth)
    depth = views[0].depth
    assert depth[32, 32] == pytest.approx(1.25, abs=1e-4)  # the small cube's front face
    assert depth[32, 2] == pytest.approx(2.0, abs=1e-4)  # beside it, the big cube's front face
    near = depth < 1.5
    rows, cols = torch.nonzero(near, as_tuple=True)
    half = camera.focal * 0.25 / 1.25  # half-width of the small cube's front face in pixels
    assert int(cols.max() - cols.min() + 1) == pytest.approx(2 * half, abs=1.5)


def test_crop_box_holds_the_whole_mask_and_its_intrinsics_project_into_the_crop(sphere):
    camera = Camera(size=96)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        p = random_pose(g, camera)
        view = render(sphere, p, camera)
        crop = crop_to_mask(view.rgb, view.mask, size=48, margin=0.1)
        x0, y0, x1, y1 = crop.box
        rows, cols = torch.nonzero(view.mask, as_tuple=True)
        assert x0 <= int(cols.min()) and int(cols.max()) < x1 and y0 <= int(rows.min()) and int(rows.max()) < y1
        assert x1 - x0 == y1 - y0
        assert crop.mask.any() and not crop.mask[0].any() and not crop.mask[-1].any()  # the margin is background
        K = crop_intrinsics(camera, crop.box, 48)
        centre = K @ p.translation.double().numpy()
        u, v = centre[:2] / centre[2]
        rows, cols = torch.nonzero(crop.mask, as_tuple=True)
        assert u == pytest.approx(float(cols.float().mean()) + 0.5, abs=1.5)  # + 0.5: pixel centres
        assert v == pytest.approx(float(rows.float().mean()) + 0.5, abs=1.5)


def test_crop_past_the_image_edge_shows_the_background():
    rgb = torch.zeros(3, 20, 20)
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[0:4, 0:4] = True
    crop = crop_to_mask(rgb, mask, size=8, margin=0.5, background=(1.0, 0.0, 0.0))
    assert crop.box == (-2, -2, 6, 6)
    assert torch.equal(crop.rgb[:, 0, 0], torch.tensor([1.0, 0.0, 0.0])) and crop.mask[2:6, 2:6].all()


def test_random_poses_are_reproducible_rotations_with_the_object_in_view():
    camera = Camera(size=64)
    first = [random_pose(torch.Generator().manual_seed(7), camera) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*first))
    g = torch.Generator().manual_seed(0)
    box = trimesh.creation.box(extents=(1.8, 1.8, 1.8))  # normalize_mesh's largest box: the bounding sphere is tight
    for _ in range(20):
        R, t, s = random_pose(g, camera)
        assert torch.allclose(R @ R.T, EYE, atol=1e-5) and torch.det(R) == pytest.approx(1.0, abs=1e-5)
        mask = render(box, (R, t, s), camera).mask
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())  # never cut by the border
    mean = torch.stack([random_pose(g, camera).rotation for _ in range(1000)]).mean(0)
    assert mean.abs().max() < 0.1  # the Haar measure averages every rotation to zero
    small = torch.stack([random_pose(g, camera, max_degrees=10).rotation for _ in range(20)])
    angles = torch.rad2deg(torch.arccos(((small.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert angles.max() <= 10.0 + 1e-3


def test_default_pose_shows_canonical_up_as_image_up():
    cone = trimesh.creation.cone(radius=0.5, height=1.0)  # apex at +z
    cone.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, (1, 0, 0)))  # apex to +y
    cone.apply_translation((0, -0.5, 0))
    view = render(cone, default_pose(), Camera(size=64))
    rows, cols = torch.nonzero(view.mask, as_tuple=True)
    top, bottom = view.mask[int(rows.min()) + 2].sum(), view.mask[int(rows.max()) - 2].sum()
    assert top < bottom  # the apex (canonical +y) is at the top of the image
    crop = render_crop(cone, default_pose(), Camera(size=64), size=32)
    assert crop.rgb.shape == (3, 32, 32) and crop.mask.any()


def test_bad_inputs_name_the_argument(sphere):
    camera = Camera(size=32)
    with pytest.raises(ValueError, match="^mesh"):
        render(trimesh.Trimesh(), pose(), camera)
    nan = sphere.copy()
    nan.vertices[0] = np.nan
    with pytest.raises(ValueError, match="^mesh.*NaN"):
        render(nan, pose(), camera)
    with pytest.raises(ValueError, match=r"^pose\.translation has NaN"):
        render(sphere, pose(x=float("nan")), camera)
    with pytest.raises(ValueError, match=r"^pose\.rotation has NaN"):
        render(sphere, pose(rotation=torch.full((3, 3), float("inf"))), camera)
    with pytest.raises(ValueError, match=r"^pose\.rotation is not a rotation"):
        render(sphere, pose(rotation=2 * EYE), camera)
    with pytest.raises(ValueError, match=r"^pose\.rotation is not a rotation"):
        render(sphere, pose(rotation=-EYE), camera)  # a reflection
    with pytest.raises(ValueError, match=r"^pose\.scale must be positive"):
        render(sphere, pose(scale=-1.0), camera)
    with pytest.raises(ValueError, match=r"^pose\.rotation must have shape"):
        render(sphere, (EYE[:2], torch.zeros(3), 1.0), camera)
    with pytest.raises(ValueError, match="^pose must be"):
        render(sphere, torch.eye(4), camera)  # four rows do not unpack as (R, t, s)
    with pytest.raises(ValueError, match="^pose puts the object behind the camera"):
        render(sphere, pose(z=-3.0), camera)
    with pytest.raises(ValueError, match="^pose puts part of the object behind the camera's near plane"):
        render(sphere, pose(z=0.3), camera)
    with pytest.raises(ValueError, match="^pose places the object wholly outside"):
        render(sphere, pose(x=50.0), camera)
    with pytest.raises(ValueError, match="^color"):
        render(sphere, pose(), camera, color=(2.0, 0, 0))
    with pytest.raises(ValueError, match="^supersample"):
        render(sphere, pose(), camera, supersample=0)
    with pytest.raises(ValueError, match=r"^camera\.fov_degrees"):
        Camera(fov_degrees=180)
    with pytest.raises(ValueError, match="^mask is empty"):
        crop_to_mask(torch.zeros(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="^mask must be"):
        crop_to_mask(torch.zeros(3, 8, 8), torch.zeros(4, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="^random_pose"):
        random_pose(torch.Generator(), depth=(5.0, 1.0))
