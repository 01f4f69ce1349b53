"""The reference image-to-3D architecture (SAM 3D Objects' structure): sampler, streams, pose, structure,
VAE, SLaT, mesh decoding and checkpoints, on tiny configs with random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from accel3d.core.flow_stage import FlowStage, group_tensors
from accel3d.models.image_to_3d import (
    SS_TOKEN_GROUPS,
    SSVAE,
    ConditionEncoder,
    FlowSampler,
    ImageTo3DConfig,
    ImageTo3DModels,
    SLaTEncoder,
    SLaTFlowTransformer,
    SLaTMeshDecoder,
    SSFlowTransformer,
    downsample_structure,
    fine_sample_points,
    gather_fine_sdf,
    grid_to_tokens,
    matrix_to_rotation_6d,
    occupied_coords,
    pad_tokens,
    pixel_shuffle_3d,
    pixel_unshuffle_3d,
    place_mesh,
    pose_matrix,
    rescale_time,
    rotation_6d_to_matrix,
    scatter_fine_sdf,
    sdf_to_mesh,
    time_schedule,
    tokens_to_grid,
)
from accel3d.models.image_to_3d.config import POSE_CHANNELS
from accel3d.models.image_to_3d.ss_flow import patchify, unpatchify


@pytest.fixture
def config() -> ImageTo3DConfig:
    return ImageTo3DConfig(
        image_size=16,
        cond_grid=4,
        cond_channels=16,
        structure_resolution=16,
        ss_latent_resolution=4,
        ss_latent_channels=4,
        ss_vae_channels=16,
        ss_flow_width=32,
        ss_flow_depth=2,
        ss_flow_heads=2,
        slat_channels=4,
        slat_vae_width=32,
        slat_vae_depth=1,
        slat_vae_heads=2,
        slat_flow_width=32,
        slat_flow_depth=2,
        slat_flow_heads=2,
    )


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ss_inputs(model: SSFlowTransformer, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    return {k: torch.randn(batch, *s, generator=g) for k, s in model.token_shapes.items()}


def _cond(config: ImageTo3DConfig, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, config.cond_grid**2, config.cond_channels, generator=_gen(seed))


def _ss_flow(config: ImageTo3DConfig) -> SSFlowTransformer:
    torch.manual_seed(0)
    return SSFlowTransformer(config).eval()


# --- sampler ---


def test_time_rescaling_matches_its_formula_and_r1_is_the_identity():
    t = torch.linspace(0, 1, 26)
    for r in (0.5, 1.0, 3.0, 7.5):
        assert torch.equal(time_schedule(25, r), t / (1 + (r - 1) * (1 - t)))
        assert torch.equal(rescale_time(t, r), t / (1 + (r - 1) * (1 - t)))
    assert torch.equal(time_schedule(25, 1.0), t)
    ends = time_schedule(25, 3.0)
    assert ends[0] == 0 and ends[-1] == 1 and bool((ends.diff() > 0).all())
    assert ends[1] < t[1]  # r > 1: smaller steps near the noise end


def test_cfg_zero_is_the_conditional_velocity_and_euler_matches_a_hand_loop(config):
    model = _ss_flow(config)
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(args[2].abs().sum().item()))
    sampler = FlowSampler(model, steps=4, cfg_strength=0.0, rescale=3.0)
    x, cond = _ss_inputs(model), _cond(config)
    with torch.no_grad():
        v = sampler.velocity(x, 0.3, cond, 0)
        direct = model(x, 0.3, cond)
    assert all(torch.equal(v[k], direct[k]) for k in direct)
    assert len(calls) == 2 and calls[0] > 0  # one pass each: no unconditional pass at strength 0

    out = sampler.sample(cond, noise={k: t.clone() for k, t in x.items()})
    ts = (torch.linspace(0, 1, 5) / (1 + 2 * (1 - torch.linspace(0, 1, 5)))).tolist()
    hand = {k: t.clone() for k, t in x.items()}
    with torch.no_grad():
        for i in range(4):
            vel = model(hand, ts[i], cond)
            hand = {k: hand[k] + (ts[i + 1] - ts[i]) * vel[k] for k in hand}
    assert all(torch.equal(out[k], hand[k]) for k in hand)


def test_cfg_formula_inside_the_interval_and_conditional_outside(config):
    model = _ss_flow(config)
    x, cond = _ss_inputs(model), _cond(config)
    with torch.no_grad():
        v_c, v_u = model(x, 0.7, cond), model(x, 0.7, torch.zeros_like(cond))
        outside = FlowSampler(model, cfg_strength=7.0, cfg_interval=(0.0, 0.5)).velocity(x, 0.7, cond, 3)
        inside = FlowSampler(model, cfg_strength=7.0, cfg_interval=(0.5, 1.0)).velocity(x, 0.7, cond, 3)
    assert all(torch.equal(outside[k], v_c[k]) for k in v_c)
    assert all(torch.equal(inside[k], 8.0 * v_c[k] - 7.0 * v_u[k]) for k in v_c)
    assert not torch.equal(inside["shape"], v_c["shape"])


def test_sampler_defaults_knobs_and_token_groups(config):
    model = _ss_flow(config)
    ss, slat = FlowSampler.ss(model), FlowSampler.slat(SLaTFlowTransformer(config))
    assert (ss.steps, ss.cfg_strength, ss.rescale, ss.cfg_interval) == (25, 7.0, 3.0, (0.0, 0.5))
    assert (slat.steps, slat.cfg_strength, slat.rescale) == (25, 0.0, 1.0)
    assert ss.token_groups == {"shape": ("shape",), "layout": ("rotation", "translation", "scale")} == SS_TOKEN_GROUPS
    assert slat.token_groups == {"slat": ()}
    x = _ss_inputs(model)
    assert [t.shape[-1] for t in group_tensors(x, ss.token_groups)["layout"].values()] == [6, 3, 3]
    assert group_tensors(x["shape"], slat.token_groups)["slat"][""] is x["shape"]
    assert isinstance(ss, FlowStage) and isinstance(slat, FlowStage)  # the core's contract
    for kwargs, name in (({"steps": 0}, "steps"), ({"cfg_strength": -1.0}, "cfg_strength"), ({"cfg_interval": (0.6, 0.2)}, "cfg_interval")):
        with pytest.raises(ValueError, match=f"^{name}"):
            FlowSampler(model, **kwargs)
    with pytest.raises(ValueError, match="^generator"):
        ss.sample(_cond(config))


def test_velocity_is_an_instance_call_that_a_patch_wraps(config):
    from accel3d.core.hooks import PatchSet

    model = _ss_flow(config)
    sampler = FlowSampler(model, steps=3, cfg_strength=1.0)
    seen = []
    patches = PatchSet("probe")
    patches.wrap(sampler, "velocity", lambda orig: lambda x, t, cond, step, **kw: seen.append(step) or orig(x, t, cond, step, **kw))
    wrapped = sampler.sample(_cond(config), _gen(3))
    patches.restore()
    plain = sampler.sample(_cond(config), _gen(3))
    assert seen == [0, 1, 2] and "velocity" not in vars(sampler)
    assert all(torch.equal(wrapped[k], plain[k]) for k in plain)


def test_same_seed_same_samples_and_the_global_rng_is_untouched(config):
    models = ImageTo3DModels(config).eval()
    cond = _cond(config, batch=1)
    state = torch.get_rng_state()
    a = models.ss_sampler(steps=3).sample(cond, _gen(5))
    assert torch.equal(torch.get_rng_state(), state)
    b = models.ss_sampler(steps=3).sample(cond, _gen(5))
    c = models.ss_sampler(steps=3).sample(cond, _gen(6))
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["shape"], c["shape"])
    coords = torch.tensor([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    slat = [models.slat_sampler(steps=3).sample(cond, _gen(7), shape=(1, 3, config.slat_channels), coords=coords) for _ in range(2)]
    assert torch.equal(slat[0], slat[1]) and slat[0].shape == (1, 3, config.slat_channels)


# --- SS flow: streams ---


def test_shape_outputs_ignore_the_layout_and_layout_outputs_read_the_shape(config):
    model = _ss_flow(config)
    x, cond = _ss_inputs(model), _cond(config)
    moved = dict(x, **{k: x[k] + 1.5 for k in POSE_CHANNELS})
    reshaped = dict(x, shape=x["shape"] * -1.0)
    with torch.no_grad():
        base, with_moved_layout, with_new_shape = model(x, 0.4, cond), model(moved, 0.4, cond), model(reshaped, 0.4, cond)
    assert torch.equal(base["shape"], with_moved_layout["shape"])
    assert all(not torch.equal(base[k], with_moved_layout[k]) for k in POSE_CHANNELS)
    assert all(not torch.equal(base[k], with_new_shape[k]) for k in POSE_CHANNELS)
    assert {k: tuple(v.shape) for k, v in base.items()} == {k: tuple(v.shape) for k, v in x.items()}


def test_layout_loss_sends_no_gradient_into_the_shape_stream(config):
    model = _ss_flow(config)
    x = {k: v.requires_grad_(True) for k, v in _ss_inputs(model).items()}
    out = model(x, 0.4, _cond(config))
    sum(out[k].square().sum() for k in POSE_CHANNELS).backward()
    shape_only = [model.shape_in, model.shape_out] + [m for b in model.blocks for m in (b.qkv["shape"], b.proj["shape"], b.mlp["shape"])]
    for module in shape_only:
        assert all(p.grad is None or not p.grad.any() for p in module.parameters())
    assert x["shape"].grad is None or not x["shape"].grad.any()
    assert x["rotation"].grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.any() for p in model.blocks[0].qkv["layout"].parameters())


def test_ss_flow_refuses_wrong_inputs_naming_them(config):
    model = _ss_flow(config)
    x = _ss_inputs(model)
    with pytest.raises(ValueError, match=r"^x: expected a dict with keys"):
        model({"shape": x["shape"]}, 0.1, _cond(config))
    with pytest.raises(ValueError, match=r"^x\['scale'\]: expected shape"):
        model(dict(x, scale=torch.zeros(2, 1, 4)), 0.1, _cond(config))
    with pytest.raises(ValueError, match="^cond: expected"):
        model(x, 0.1, torch.zeros(2, 5, 3))


def test_grid_tokens_are_in_c_order(config):
    r = config.ss_latent_resolution
    latent = torch.randn(1, config.ss_latent_channels, r, r, r)
    tokens = grid_to_tokens(latent)
    assert torch.equal(tokens[0, (1 * r + 2) * r + 3], latent[0, :, 1, 2, 3])
    assert torch.equal(tokens_to_grid(tokens, r), latent)


def test_patchify_groups_p_cubed_voxels_per_token_and_inverts():
    latent = torch.randn(2, 3, 4, 4, 4, generator=_gen(5))
    patches = patchify(latent, 2)
    assert patches.shape == (2, 8, 24)
    # patch (0, 1, 1) in C order over the 2^3 patch grid holds voxels [0:2, 2:4, 2:4], channels last
    block = latent[:, :, 0:2, 2:4, 2:4].permute(0, 2, 3, 4, 1).reshape(2, 24)
    assert torch.equal(patches[:, 3], block)
    assert torch.equal(unpatchify(patches, 2, 3), latent)
    assert torch.equal(patchify(latent, 1), grid_to_tokens(latent))


def test_patched_ss_flow_keeps_latent_tokens_outside_and_patches_inside(config):
    model = SSFlowTransformer(config)
    assert model.shape_pos.shape[1] == config.ss_flow_patches**3 == (config.ss_latent_resolution // config.ss_flow_patch) ** 3
    x = _ss_inputs(model)
    v = model(x, 0.3, _cond(config))
    assert v["shape"].shape == x["shape"].shape  # the sampler and accelerators see R^3 latent tokens
    # one latent voxel changed moves the velocity of every patch (attention), most of all its own patch
    x2 = {**x, "shape": x["shape"].clone()}
    x2["shape"][:, 0] += 1.0
    delta = (model(x2, 0.3, _cond(config))["shape"] - v["shape"]).abs().sum(-1)[0]
    own = delta[[0, 1, config.ss_latent_resolution, config.ss_latent_resolution + 1]].mean()  # voxels of patch 0 (first layer)
    assert own > delta.mean()
    model.zero_outputs()
    assert all(torch.count_nonzero(t) == 0 for t in model(x, 0.3, _cond(config)).values())


# --- pose ---


def test_6d_rotation_round_trip_and_gram_schmidt():
    q, _ = torch.linalg.qr(torch.randn(16, 3, 3, generator=_gen(2), dtype=torch.float64))
    rotations = q * torch.linalg.det(q)[:, None, None]  # proper rotations (det +1)
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(rotations)), rotations, atol=1e-12)
    d6 = torch.randn(16, 6, generator=_gen(3), dtype=torch.float64)
    r = rotation_6d_to_matrix(d6)
    assert torch.allclose(r.transpose(-1, -2) @ r, torch.eye(3, dtype=torch.float64).expand(16, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(16, dtype=torch.float64))
    assert torch.allclose(r[..., :, 0], d6[:, :3] / d6[:, :3].norm(dim=-1, keepdim=True))  # first column: a1 normalised
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(r)), r, atol=1e-12)


def test_pose_matrix_scales_then_rotates_then_translates():
    d6 = torch.randn(6, generator=_gen(4), dtype=torch.float64)
    t, s = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    points = torch.randn(10, 3, generator=_gen(5), dtype=torch.float64)
    m = pose_matrix(d6, t, s)
    world = (torch.cat([points, torch.ones(10, 1, dtype=torch.float64)], 1) @ m.T)[:, :3]
    assert torch.allclose(world, (points * s) @ rotation_6d_to_matrix(d6).T + t)
    assert torch.equal(m[3], torch.tensor([0, 0, 0, 1], dtype=torch.float64))
    identity = pose_matrix(torch.tensor([1.0, 0, 0, 0, 1, 0]), torch.zeros(3), torch.ones(1))
    assert torch.equal(identity, torch.eye(4))
    with pytest.raises(ValueError, match="^scale"):
        pose_matrix(d6, t, torch.ones(2, dtype=torch.float64))


# --- structure ---


def test_downsample_structure_keeps_small_structures_and_halves_large_ones():
    coords = torch.nonzero(torch.ones(10, 12, 8, dtype=torch.bool)) + torch.tensor([3, 2, 5])  # 960 voxels
    same, factor = downsample_structure(coords, 960, _gen())
    assert factor == 1 and same is coords
    small, factor = downsample_structure(coords, 959, _gen())
    assert factor == 2 and len(small) <= 959
    assert len(torch.unique(small, dim=0)) == len(small)
    lo, hi = coords.min(0).values, coords.max(0).values
    size = (hi - lo + 1).double()
    target_lo = lo + size / 4
    assert bool((small >= target_lo.floor()).all()) and bool((small <= (target_lo + size / 2 - 1).floor()).all())
    # about half the size: 12 -> 6 and 8 -> 4; 10 -> 4, not 5, since [5.5, 9.5] rounds (half to even) to [6, 10] and 10 is clamped
    assert tuple((small.max(0).values - small.min(0).values + 1).tolist()) == (4, 6, 4)
    capped, factor = downsample_structure(coords, 50, _gen(1))
    assert factor == 2 and len(capped) == 50 and len(torch.unique(capped, dim=0)) == 50
    assert torch.equal(capped, downsample_structure(coords, 50, _gen(1))[0])  # the generator decides the subset
    flat = torch.nonzero(torch.ones(1, 20, 20, dtype=torch.bool))  # one layer: that axis stays put
    out, _ = downsample_structure(flat, 100, _gen())
    assert bool((out[:, 0] == 0).all()) and len(out) <= 100 and int(out.min()) >= 0
    with pytest.raises(ValueError, match="^max_tokens"):
        downsample_structure(coords, 0, _gen())


def test_pixel_shuffle_3d_is_the_inverse_of_its_unshuffle():
    x = torch.randn(2, 3 * 8, 3, 4, 5, generator=_gen())
    y = pixel_shuffle_3d(x, 2)
    assert y.shape == (2, 3, 6, 8, 10)
    assert torch.equal(pixel_unshuffle_3d(y, 2), x)
    z = torch.randn(1, 2, 6, 6, 6, generator=_gen(1))
    assert torch.equal(pixel_shuffle_3d(pixel_unshuffle_3d(z, 3), 3), z)
    # channel c*8 + (i*2 + j)*2 + k goes to offset (i, j, k) of each 2x2x2 block
    assert torch.equal(y[0, 1, 2 * 1 + 1, 2 * 2 + 0, 2 * 3 + 1], x[0, 1 * 8 + (1 * 2 + 0) * 2 + 1, 1, 2, 3])


def test_ss_vae_shapes_and_occupancy(config):
    torch.manual_seed(0)
    vae = SSVAE(config).eval()
    r, lr = config.structure_resolution, config.ss_latent_resolution
    occ = torch.rand(2, r, r, r, generator=_gen()) > 0.7
    with torch.no_grad():
        latent = vae.encode(occ)
        logits = vae.decode(latent)
        sampled = vae.encode(occ, sample=True, generator=_gen(1))
        logits_train, mean, logvar = vae(occ, generator=_gen(2))
    assert latent.shape == (2, config.ss_latent_channels, lr, lr, lr) and not torch.equal(sampled, latent)
    assert logits.shape == (2, 1, r, r, r) and logits_train.shape == logits.shape
    assert torch.equal(vae.occupancy(latent), logits[:, 0] > 0)
    assert vae.kl_loss(mean, logvar) >= 0
    with pytest.raises(ValueError, match="^occupancy"):
        vae.encode(torch.zeros(1, r, r, r + 1))
    with pytest.raises(ValueError, match="^latent"):
        vae.decode(torch.zeros(1, 3, lr, lr, lr))


def test_condition_encoder_tokens(config):
    encoder = ConditionEncoder(config)
    s = config.image_size
    tokens = encoder(torch.rand(2, 3, s, s), torch.ones(2, 1, s, s))
    assert tokens.shape == (2, config.cond_grid**2, config.cond_channels)
    with pytest.raises(ValueError, match="^mask"):
        encoder(torch.rand(1, 3, s, s), torch.ones(1, 1, s, s + 2))


# --- SLaT ---


def test_one_slat_token_per_occupied_voxel(config):
    torch.manual_seed(0)
    r = config.structure_resolution
    occ = torch.rand(2, r, r, r, generator=_gen()) > 0.9
    coords = occupied_coords(occ)
    assert [len(c) for c in coords] == occ.flatten(1).sum(1).tolist()
    assert torch.equal(occ[0][tuple(coords[0].T)], torch.ones(len(coords[0]), dtype=torch.bool))
    padded_coords, mask = pad_tokens(coords)
    x = torch.randn(*mask.shape, config.slat_channels, generator=_gen(1)) * mask[..., None]
    flow, encoder, decoder = SLaTFlowTransformer(config).eval(), SLaTEncoder(config).eval(), SLaTMeshDecoder(config).eval()
    with torch.no_grad():
        v = flow(x, 0.5, _cond(config), coords=padded_coords, mask=mask)
        alone = flow(x[1:, : len(coords[1])], 0.5, _cond(config)[1:], coords=coords[1][None])
        mean, _ = encoder(torch.zeros(*mask.shape, config.slat_samples_per_voxel), padded_coords, mask)
        sdf = decoder(mean, padded_coords, mask)
    assert v.shape == x.shape and not v[~mask].any()  # padding gets no velocity
    assert torch.allclose(v[1, : len(coords[1])], alone[0], atol=1e-5)  # the key mask hides the padding
    assert mean.shape == (2, mask.shape[1], config.slat_channels)
    assert sdf.shape == (2, mask.shape[1], config.slat_samples_per_voxel) and bool((sdf.abs() < config.sdf_truncation).all())
    with pytest.raises(ValueError, match="^coords: expected voxel coordinates"):
        flow(x[:1, :2], 0.5, _cond(config, 1), coords=torch.tensor([[[0, 0, 0], [0, r, 0]]]))


def _sphere_fine_sdf(config: ImageTo3DConfig, radius: float, solid: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Occupied voxels of a sphere (its narrow band, or the whole ball) and their fine SDF samples."""
    r, s = config.structure_resolution, config.slat_subdivision
    all_coords = torch.nonzero(torch.ones(r, r, r, dtype=torch.bool))
    centres = -config.bound + (all_coords.float() + 0.5) * 2 * config.bound / r
    voxel = 2 * config.bound / r
    distance = centres.norm(dim=-1) - radius
    coords = all_coords[(distance < voxel) & (solid | (distance > -voxel))]
    points = fine_sample_points(coords, r, s, config.bound)
    return coords, (points.norm(dim=-1) - radius).clamp(-config.sdf_truncation, config.sdf_truncation)


def test_marching_cubes_on_a_sphere_sdf_gives_a_sphere_of_the_right_radius(config):
    coords, values = _sphere_fine_sdf(config, radius=0.6)
    fine = scatter_fine_sdf(coords, values, config.structure_resolution, config.slat_subdivision, config.sdf_truncation)
    assert fine.shape == (config.slat_fine_resolution,) * 3
    assert torch.equal(gather_fine_sdf(fine, coords, config.slat_subdivision), values)
    mesh = sdf_to_mesh(fine, config.bound, config.sdf_truncation)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    h = 2 * config.bound / config.slat_fine_resolution
    assert abs(radii.mean() - 0.6) < 0.1 * h and radii.max() - radii.min() < h
    assert mesh.is_watertight and mesh.volume > 0  # normals out
    # the shell's interior is filled in: a solid structure gives the same surface, a hollow fill a second one
    solid_coords, solid_values = _sphere_fine_sdf(config, radius=0.6, solid=True)
    assert len(solid_coords) > len(coords)
    args = (config.structure_resolution, config.slat_subdivision, config.sdf_truncation)
    solid = sdf_to_mesh(scatter_fine_sdf(solid_coords, solid_values, *args), config.bound, config.sdf_truncation)
    assert np.array_equal(solid.vertices, mesh.vertices) and np.array_equal(solid.faces, mesh.faces)
    hollow = sdf_to_mesh(scatter_fine_sdf(coords, values, *args, fill_enclosed=False), config.bound, config.sdf_truncation)
    assert len(hollow.split(only_watertight=False)) == 2
    placed = place_mesh(mesh, torch.tensor([0.0, 1, 0, -1, 0, 0]), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0]))
    assert np.allclose(placed.vertices.mean(0), mesh.vertices.mean(0) @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]).T * 2 + [1, 2, 3])
    assert abs(np.linalg.norm(placed.vertices - [1, 2, 3], axis=1).mean() - 1.2) < 0.2 * h


def test_mesh_decoder_to_mesh_places_its_mesh_and_an_empty_structure_warns(config):
    torch.manual_seed(0)
    decoder = SLaTMeshDecoder(config).eval()
    coords = torch.nonzero(torch.ones(4, 4, 4, dtype=torch.bool)) + 6
    tokens = torch.randn(len(coords), config.slat_channels, generator=_gen())
    mesh = decoder.to_mesh(tokens, coords)
    shifted = decoder.to_mesh(tokens, coords, translation=torch.tensor([0.0, 0.0, 5.0]), downsample_factor=2)
    assert len(mesh.faces) > 0 and np.allclose(shifted.vertices, mesh.vertices * 2 + [0, 0, 5], atol=1e-5)
    with pytest.warns(UserWarning, match="no surface"):
        empty = decoder.to_mesh(torch.zeros(0, config.slat_channels), torch.zeros(0, 3, dtype=torch.long))
    assert len(empty.faces) == 0


# --- config and checkpoints ---


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"^ImageTo3DConfig\.ss_flow_depth: expected an integer >= 1"):
        ImageTo3DConfig(ss_flow_depth=0)
    with pytest.raises(ValueError, match=r"^ImageTo3DConfig\.ss_latent_resolution: expected structure_resolution \(32\)"):
        ImageTo3DConfig(ss_latent_resolution=6)
    with pytest.raises(ValueError, match=r"^ImageTo3DConfig\.ss_flow_patch: expected a divisor of ss_latent_resolution \(8\), got 3"):
        ImageTo3DConfig(ss_flow_patch=3)
    with pytest.raises(ValueError, match=r"^ImageTo3DConfig\.cond_grid"):
        ImageTo3DConfig(cond_grid=5)
    with pytest.raises(ValueError, match=r"^ImageTo3DConfig\.slat_flow_width: expected a multiple of slat_flow_heads"):
        ImageTo3DConfig(slat_flow_width=30, slat_flow_heads=4)
    with pytest.raises(ValueError, match=r"^ImageTo3DConfig\.bound"):
        ImageTo3DConfig(bound=float("nan"))
    with pytest.raises(ValueError, match=r"^ImageTo3DConfig: unknown keys \['width'\]"):
        ImageTo3DConfig.from_dict({"width": 3})


def test_checkpoint_round_trip_and_wrong_architectures_name_weights(tmp_path, config, tiny_weights):
    torch.manual_seed(0)
    models = ImageTo3DModels(config)
    path = tmp_path / "i3d.pt"
    models.save(path, metadata={"seed": 0})
    loaded = ImageTo3DModels.from_pretrained(path)
    assert loaded.metadata == {"seed": 0} and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(models.state_dict().values(), loaded.state_dict().values()))
    assert ImageTo3DModels.from_pretrained(path, expect=config).config == config

    with pytest.raises(ValueError, match=r"^weights: .* different architecture: ss_flow_width=32 \(expected 96\)"):
        ImageTo3DModels.from_pretrained(path, expect=ImageTo3DConfig(**{**config.__dict__, "ss_flow_width": 96}))
    with pytest.raises(ValueError, match="^weights: .* is not an accel3d image-to-3D checkpoint"):
        ImageTo3DModels.from_pretrained(tiny_weights)  # a VecsetVAE checkpoint

    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["ss_flow.shape_in.weight"] = torch.zeros(32, 5)
    del payload["state_dict"]["slat_flow.output.bias"]
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="^weights: .* does not match the image-to-3D architecture") as info:
        ImageTo3DModels.from_pretrained(tmp_path / "wrong.pt")
    message = str(info.value)
    assert "missing keys (1): slat_flow.output.bias" in message and "unexpected keys (1): extra.weight" in message
    assert "ss_flow.shape_in.weight (32, 5) in the file vs (32, 32) in the model" in message  # 2^3 voxels x 4 channels per patch

    payload = torch.load(path, weights_only=True)
    payload["config"]["ss_flow_depth"] = 0
    torch.save(payload, tmp_path / "bad_config.pt")
    with pytest.raises(ValueError, match=r"^weights: .* unusable config \(ImageTo3DConfig\.ss_flow_depth"):
        ImageTo3DModels.from_pretrained(tmp_path / "bad_config.pt")
    with pytest.raises(FileNotFoundError, match="^weights: no weights file"):
        ImageTo3DModels.from_pretrained(tmp_path / "missing.pt")


def test_models_do_not_import_the_strategies():
    import ast
    from pathlib import Path

    import accel3d.models.image_to_3d as package

    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(("accel3d.caching", "accel3d.decoding", "accel3d.pruning")) for n in names), path
