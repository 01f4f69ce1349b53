import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from accel3d.models.sds.scene import (
    Cameras,
    CameraSampler,
    VoxelField,
    density_mesh,
    look_at_rays,
    save_gif,
    save_turntable,
    to_rgb,
    turntable,
)


def cams(azimuth, elevation=0.0, radius=1.8, fovy=50.0) -> Cameras:
    az = torch.as_tensor(azimuth, dtype=torch.float32).reshape(-1)
    n = len(az)
    return Cameras(az, torch.full((n,), float(elevation)), torch.full((n,), float(radius)), torch.full((n,), float(fovy)))


def ball_field(centre, radius=0.3, resolution=32) -> VoxelField:
    """A field with no blob whose density is high only inside a ball at ``centre`` (world coordinates)."""
    field = VoxelField(resolution=resolution, blob_density=0.0)
    lin = torch.linspace(-1.0, 1.0, resolution)
    x, y, z = torch.meshgrid(lin, lin, lin, indexing="ij")  # (x, y, z) index order
    inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 < radius**2
    values = torch.where(inside, 10.0, -10.0)
    with torch.no_grad():
        field.density.copy_(values.permute(2, 1, 0)[None, None])  # stored as (z, y, x), the documented convention
    return field


# --- cameras ---------------------------------------------------------------


def test_sampler_is_reproducible_and_stays_in_range():
    a, b = CameraSampler(seed=3), CameraSampler(seed=3)
    first, again = a.sample(500), b.sample(500)
    for name in ("azimuth", "elevation", "radius", "fovy"):
        assert torch.equal(getattr(first, name), getattr(again, name))
        assert getattr(first, name).dtype == torch.float32 and getattr(first, name).shape == (500,)
    assert not torch.equal(a.sample(500).azimuth, first.azimuth)  # the generator advances
    assert not torch.equal(CameraSampler(seed=4).sample(500).azimuth, first.azimuth)
    ranges = {"azimuth": (-180, 180), "elevation": (-10, 45), "radius": (1.5, 2.0), "fovy": (40, 70)}
    for name, (lo, hi) in ranges.items():
        values = getattr(first, name)
        assert values.min() >= lo and values.max() <= hi
        # uniform over the whole range, not a corner of it
        assert values.min() < lo + 0.05 * (hi - lo) and values.max() > hi - 0.05 * (hi - lo)
    narrow = CameraSampler(elevation_range=(20.0, 20.0), radius_range=(3.0, 3.5)).sample(50)
    assert torch.all(narrow.elevation == 20.0) and narrow.radius.min() >= 3.0 and narrow.radius.max() <= 3.5
    assert len(narrow) == 50


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"azimuth_range": (10.0, -10.0)}, "azimuth_range"),
        ({"elevation_range": (-100.0, 0.0)}, "elevation_range"),
        ({"elevation_range": (0.0, 91.0)}, "elevation_range"),
        ({"radius_range": (0.0, 1.0)}, "radius_range"),
        ({"fovy_range": (0.0, 50.0)}, "fovy_range"),
        ({"fovy_range": (40.0, 180.0)}, "fovy_range"),
        ({"fovy_range": "wide"}, "fovy_range"),
        ({"radius_range": (1.0, float("nan"))}, "radius_range"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CameraSampler(**kwargs)


def test_sample_and_cameras_reject_bad_sizes():
    with pytest.raises(ValueError, match="n:"):
        CameraSampler().sample(0)
    with pytest.raises(ValueError, match="same length"):
        Cameras(torch.zeros(2), torch.zeros(2), torch.ones(3), torch.ones(2))


def test_rays_are_unit_and_centre_ray_hits_the_origin():
    cameras = CameraSampler(seed=1).sample(6)
    origins, dirs = look_at_rays(cameras, 9, 7)
    assert origins.shape == dirs.shape == (6, 9, 7, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(6, 9, 7), atol=1e-5)
    assert torch.allclose(origins[:, 0, 0].norm(dim=-1), cameras.radius, atol=1e-5)
    centre = dirs[:, 4, 3]  # odd sizes: the middle pixel is on the optical axis
    assert torch.allclose(centre, -origins[:, 4, 3] / cameras.radius[:, None], atol=1e-5)
    # vertical field of view: the top row's centre ray is (fovy/2)(1 - 1/H) off the axis
    angle = torch.rad2deg(torch.acos((dirs[:, 0, 3] * centre).sum(-1)))
    assert torch.allclose(angle, torch.rad2deg(torch.atan(torch.tan(torch.deg2rad(cameras.fovy / 2)) * (1 - 1 / 9))), atol=1e-3)


def test_camera_axes_follow_the_documented_convention():
    cameras = Cameras(torch.tensor([0.0, 90.0, 0.0]), torch.tensor([0.0, 0.0, 90.0]), torch.full((3,), 2.0), torch.full((3,), 50.0))
    origins, dirs = look_at_rays(cameras, 5, 5)
    assert torch.allclose(origins[0, 0, 0], torch.tensor([2.0, 0.0, 0.0]), atol=1e-5)  # azimuth 0: on +x
    assert torch.allclose(origins[1, 0, 0], torch.tensor([0.0, 2.0, 0.0]), atol=1e-5)  # counter-clockwise: 90 is +y
    assert torch.allclose(origins[2, 0, 0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)  # elevation 90: straight above
    assert torch.isfinite(dirs).all()
    # from +x: the right column leans to +y, the top row to +z
    assert dirs[0, 2, 4, 1] > 0.1 and dirs[0, 0, 2, 2] > 0.1


# --- rendering -------------------------------------------------------------


def test_render_shapes_and_determinism():
    field = VoxelField(resolution=16, channels=4)
    cameras = CameraSampler(seed=2).sample(2)
    out = field.render(cameras, 8, 12, num_samples=16)
    assert out["image"].shape == (2, 4, 8, 12)
    assert out["alpha"].shape == (2, 1, 8, 12) and out["depth"].shape == (2, 1, 8, 12)
    again = VoxelField(resolution=16, channels=4).render(cameras, 8, 12, num_samples=16)
    for key in out:
        assert torch.equal(out[key], again[key])
    other = VoxelField(resolution=16, channels=4, seed=1).render(cameras, 8, 12, num_samples=16)
    assert not torch.equal(out["image"], other["image"])


def test_gradients_reach_density_and_features():
    field = VoxelField()
    cameras = CameraSampler(seed=0).sample(1)
    out = field.render(cameras, 32, 32)
    target = torch.randn(out["image"].shape, generator=torch.Generator().manual_seed(0))
    F.mse_loss(out["image"], target).backward()
    assert field.density.grad is not None and field.features.grad is not None
    # each gradient is the loss's slope: a central difference along it equals its norm (exactly for the
    # features, in which the loss is quadratic; to 5% for the density, through softplus and exp)
    for param, rel in ((field.density, 0.05), (field.features, 1e-3)):
        norm = param.grad.norm()
        step = param.grad / norm
        with torch.no_grad():
            param.add_(step)
            up = F.mse_loss(field.render(cameras, 32, 32)["image"], target)
            param.sub_(2 * step)
            down = F.mse_loss(field.render(cameras, 32, 32)["image"], target)
            param.add_(step)
        assert float(up - down) / 2 == pytest.approx(float(norm), rel=rel)
    assert field.blob.grad is None and not field.blob.requires_grad  # the blob is a fixed bias
    assert [name for name, _ in field.named_parameters()] == ["density", "features"]


def test_render_plus_backward_is_fast():
    field = VoxelField()
    cameras = CameraSampler(seed=0).sample(1)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        field.render(cameras, 32, 32, num_samples=64)["image"].square().mean().backward()
        times.append(time.perf_counter() - start)
    # about 15 ms on 2 idle cores (up to ~0.4 s seen while another job held the CPU); this only guards
    # against pathological slowdowns such as a Python loop over rays
    assert sorted(times)[2] < 2.0


def test_rays_that_miss_the_cube_show_the_background():
    field = VoxelField()
    field.background.fill_(0.5)
    # from 10 away with fovy 60 the border rays pass > 4.8 from the origin, outside the cube's bounding sphere (1.73)
    out = field.render(cams([30.0], elevation=10.0, radius=10.0, fovy=60.0), 17, 17)
    for row, col in [(0, 0), (0, 16), (16, 0), (16, 16), (8, 0), (0, 8)]:
        assert out["alpha"][0, 0, row, col] == 0.0
        assert out["depth"][0, 0, row, col] == 0.0
        assert torch.allclose(out["image"][0, :, row, col], torch.full((4,), 0.5))
    assert out["alpha"][0, 0, 8, 8] > 0.9  # the blob
    # where the blob is opaque the background barely shows through
    inside = out["image"][0, :, 8, 8]
    assert (inside - 0.5).abs().min() > 0.3


def test_alpha_stays_in_unit_interval_and_saturates():
    field = VoxelField(blob_density=200.0, blob_radius=0.8)
    with torch.no_grad():
        field.density.add_(5.0)
        field.features.fill_(1.0)  # a white field: over black its image is its opacity
    cameras = CameraSampler(seed=5).sample(3)
    black = field.render(cameras, 16, 16)
    field.background.fill_(1.0)
    white = field.render(cameras, 16, 16)
    alpha = black["alpha"]
    # the compositing weights sum to alpha, and the background shows through by exactly 1 - alpha
    torch.testing.assert_close(black["image"], alpha.expand_as(black["image"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(white["image"], torch.ones_like(white["image"]), atol=1e-5, rtol=0)
    # dense rays are exactly opaque (never above 1 through rounding); rays past the cube's corners, exactly clear
    assert alpha.max() == 1.0 and (alpha == 1.0).sum() > alpha.numel() // 3 and alpha.min() == 0.0
    assert torch.isfinite(black["depth"]).all()


# --- orientation: render and mesh agree on where things are -----------------


def _alpha_centroid(alpha):
    h, w = alpha.shape
    rows = torch.arange(h, dtype=torch.float32)[:, None]
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    alpha = alpha.detach()
    total = alpha.sum()
    return float((alpha * rows).sum() / total), float((alpha * cols).sum() / total)


# (ball centre, camera azimuth, expected side of the image): from azimuth 0 (camera on +x) +y is right and +z is up
ORIENTATION = [
    ((0.0, 0.5, 0.0), 0.0, "right"),
    ((0.0, 0.5, 0.0), 180.0, "left"),
    ((0.5, 0.0, 0.0), 90.0, "left"),
    ((0.5, 0.0, 0.0), -90.0, "right"),
    ((0.0, 0.0, 0.5), 0.0, "top"),
    ((0.0, 0.0, -0.5), 135.0, "bottom"),
]


@pytest.mark.parametrize("centre, azimuth, side", ORIENTATION)
def test_render_places_off_centre_density_where_the_camera_sees_it(centre, azimuth, side):
    field = ball_field(centre)
    alpha = field.render(cams([azimuth]), 32, 32)["alpha"][0, 0]
    row, col = _alpha_centroid(alpha)
    offset = {"right": col - 15.5, "left": 15.5 - col, "top": 15.5 - row, "bottom": row - 15.5}[side]
    across = {"right": row, "left": row, "top": col, "bottom": col}[side]
    assert offset > 4.0, (row, col)
    assert abs(across - 15.5) < 1.0, (row, col)


@pytest.mark.parametrize("centre", [(0.5, 0.0, 0.0), (0.0, 0.5, 0.0), (0.0, 0.0, 0.5)])
def test_mesh_vertices_sit_where_the_density_is(centre):
    mesh = density_mesh(ball_field(centre))
    assert mesh.is_watertight
    assert np.allclose(mesh.vertices.mean(axis=0), centre, atol=0.03)
    radii = np.linalg.norm(mesh.vertices - np.asarray(centre), axis=1)
    assert abs(radii.mean() - 0.3) < 0.05
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * radii.mean() ** 3, rel=0.05)  # a ball, its faces wound outward


def test_depth_agrees_with_the_side_the_density_is_on():
    field = ball_field((0.5, 0.0, 0.0))
    out = field.render(cams([0.0, 180.0], radius=1.8), 17, 17)
    depth = out["depth"][:, 0, 8, 8] / out["alpha"][:, 0, 8, 8]
    depth = depth.detach()
    # the ball's near side is x = 0.8 seen from +x (1.0 away) and x = 0.2 seen from -x (2.0 away); the expected
    # depth lies a little behind the surface (about 1 / density plus half a voxel of interpolation ramp)
    assert 1.0 < float(depth[0]) < 1.25 and 2.0 < float(depth[1]) < 2.25
    assert abs(float(depth[1] - depth[0]) - 1.0) < 0.05


def test_density_grid_is_in_xyz_order():
    field = ball_field((0.5, 0.0, 0.0))
    grid = field.density_grid()
    assert grid.shape == (32, 32, 32) and not grid.requires_grad
    assert grid[24, 16, 16] > 5.0 and grid[16, 16, 24] < 1e-3 and grid[16, 24, 16] < 1e-3


# --- blob init and mesh ----------------------------------------------------


def test_blob_init_gives_a_ball_where_density_crosses_the_level():
    field = VoxelField()
    grid = field.density_grid()
    assert grid.max() > 5.0 and grid.min() < 1e-3  # a dense centre, near-empty corners
    level = 0.5 * float(grid.max())
    # softplus(blob) = level at 10 * (1 - r / 0.5) = softplus^-1(level)
    expected = 0.5 * (1.0 - (level + math.log(-math.expm1(-level))) / 10.0)
    mesh = density_mesh(field)
    assert mesh.is_watertight and mesh.volume == pytest.approx(4 / 3 * math.pi * expected**3, rel=0.05)  # wound outward
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.allclose(radii, expected, atol=0.01)  # every vertex on that sphere (measured within 0.002)
    smaller = density_mesh(field, level=0.9 * float(grid.max()))
    assert np.linalg.norm(smaller.vertices, axis=1).mean() < radii.mean() - 0.05


@pytest.mark.parametrize("level", [1e6, -1.0, 0.0])
def test_density_mesh_rejects_a_level_without_surface(level):
    with pytest.raises(ValueError, match=r"level: .*no surface.*\["):
        density_mesh(VoxelField(resolution=16), level=level)


# --- turntable and output files ---------------------------------------------


def test_turntable_matches_single_renders():
    field = ball_field((0.0, 0.5, 0.0), resolution=16)
    frames = turntable(field, views=4, size=16)
    assert frames.shape == (4, 4, 16, 16) and not frames.requires_grad
    single = field.render(cams([90.0], elevation=15.0, radius=1.8, fovy=50.0), 16, 16)["image"]
    assert torch.allclose(frames[1], single[0], atol=1e-6)
    assert not torch.allclose(frames[0], frames[2])


def test_to_rgb_maps_channels_jointly_to_uint8():
    images = torch.randn(3, 4, 8, 6, generator=torch.Generator().manual_seed(0))
    rgb = to_rgb(images)
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 8, 6, 3)
    for c in range(3):  # normalised over all frames together: each channel spans the full range once
        assert rgb[..., c].min() == 0 and rgb[..., c].max() == 255
    order = np.argsort(images[:, 0].flatten().numpy(), kind="stable")
    assert np.all(np.diff(rgb[..., 0].reshape(-1)[order].astype(int)) >= 0)  # monotone in channel 0
    two = to_rgb(images[:, :2])  # fewer than 3 channels are cycled: (0, 1, 0)
    assert np.array_equal(two[..., 2], two[..., 0]) and not np.array_equal(two[..., 1], two[..., 0])
    grey = to_rgb(images[:, :1])
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    flat = to_rgb(torch.full((2, 4, 3, 3), 7.0))
    assert flat.dtype == np.uint8 and (flat == 0).all()


def test_save_turntable_and_gif_write_files(tmp_path):
    from PIL import Image

    frames = turntable(VoxelField(resolution=16), views=5, size=16)
    png = save_turntable(frames, tmp_path / "sub" / "turntable.png", columns=3)
    gif = save_gif(frames, tmp_path / "turntable.gif", duration_ms=80)
    assert png == tmp_path / "sub" / "turntable.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width / im.height == pytest.approx(3 / 2, rel=0.1)  # 3 columns by 2 rows
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 5 and im.size == (256, 256)  # 16 px enlarged 16x (nearest)
    leftovers = [p.name for p in tmp_path.rglob("*.part")]
    assert leftovers == []


def test_indexing_cameras_keeps_a_batch():
    batch = CameraSampler(seed=3).sample(4)
    for index, expected in ((1, [1]), (-1, [3]), (slice(1, 3), [1, 2]), (torch.tensor([3, 0]), [3, 0])):
        picked = batch[index]
        assert len(picked) == len(expected), index
        for name in ("azimuth", "elevation", "radius", "fovy"):
            assert torch.equal(getattr(picked, name), getattr(batch, name)[expected]), (index, name)
