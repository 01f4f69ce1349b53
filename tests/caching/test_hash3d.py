import pytest
import torch

from accel3d.caching import Hash3D, UNetCut, cut_points, resolve_cut_point
from accel3d.core import camera_pose
from accel3d.core.stack import build_stack
from accel3d.models.sds.unets import build_unet


@pytest.fixture(scope="module")
def unet():
    return build_unet("tiny", seed=0)


@pytest.fixture(scope="module")
def unet8():
    return build_unet("tiny", seed=1, in_channels=8)


def inputs(batch=1, size=16, seed=0, channels=4, dim=64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=gen)
    text = torch.randn(2 * batch, 5, dim, generator=gen)
    return torch.cat([x, x]), text


def plain(unet, x, t, text):
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=text).sample


@pytest.mark.parametrize("size", [16, (12, 20)])
def test_partial_forward_reproduces_the_full_forward_at_every_cut(unet, size):
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 4, h, w, generator=torch.Generator().manual_seed(0))  # (12, 20): not a multiple of 4
    text = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(1))
    for point in cut_points(unet):
        cut = UNetCut(unet, point.index)
        with torch.no_grad(), cut.capture() as captured:
            full = unet(x, torch.tensor([10, 700]), encoder_hidden_states=text).sample
        assert torch.equal(cut.partial(captured["feature"], x, torch.tensor([10, 700]), text), full), point.name


def test_partial_forward_on_a_zero123_style_unet(unet8):
    x = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    text = torch.randn(2, 5, 64)
    cut = UNetCut(unet8)
    with torch.no_grad(), cut.capture() as captured:
        full = unet8(x, 500, encoder_hidden_states=text).sample
    assert torch.equal(cut.partial(captured["feature"], x, 500, text), full)


def test_cut_points_are_named_and_bad_ones_are_refused(unet):
    points = cut_points(unet)
    assert [p.name for p in points][:3] == ["up_blocks.0.0", "up_blocks.0.1", "up_blocks.0.2"]
    default = resolve_cut_point(unet)
    assert default.name == "up_blocks.2.0" and default.skips == 2  # conv_in + the first layer of down_blocks[0]
    assert resolve_cut_point(unet, "up_blocks.1.2") == resolve_cut_point(unet, 5) == resolve_cut_point(unet, -4)
    with pytest.raises(ValueError, match=r"valid points are up_blocks\.0\.0, .*up_blocks\.2\.2"):
        resolve_cut_point(unet, "up_blocks.7.0")
    with pytest.raises(ValueError, match="cut"):
        Hash3D(cut=42).attach(unet)
    assert "forward" not in unet.__dict__  # the failed attach left nothing behind
    with pytest.raises(TypeError, match="UNet2DConditionModel"):
        Hash3D().attach(torch.nn.Linear(2, 2))
    from diffusers import UNet2DConditionModel

    simple = UNet2DConditionModel(
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, cross_attention_dim=8, attention_head_dim=4,
    )  # fmt: skip
    with pytest.raises(TypeError, match="down_blocks.1 is a SimpleCrossAttnDownBlock2D; the partial forward supports"):
        Hash3D().attach(simple)


def test_retrieval_disabled_is_bit_identical(unet):
    hash3d = Hash3D(retrieve_prob=0.0)
    x, text = inputs()
    expected = [plain(unet, x * (1 + i), 300 + i, text) for i in range(3)]
    with hash3d.applied(unet), torch.no_grad():
        for i in range(3):
            with camera_pose(azimuth=10.0, elevation=5.0, radius=1.8):
                assert torch.equal(unet(x * (1 + i), 300 + i, encoder_hidden_states=text).sample, expected[i])
    stats = hash3d.stats()
    assert stats["hits"] == 0 and stats["full_elements"] == 3 and stats["table_entries"] == 3


def test_detach_restores_the_unet(unet):
    x, text = inputs()
    before = plain(unet, x, 400, text)
    hash3d = Hash3D(retrieve_prob=1.0)
    hash3d.attach(unet)
    assert "forward" in unet.__dict__
    with torch.no_grad(), camera_pose(0.0, 0.0, 2.0):
        unet(x, 400, encoder_hidden_states=text)
        unet(x * 0.5, 400, encoder_hidden_states=text)  # a hit: partial path
    assert hash3d.stats()["hits"] == 1
    hash3d.detach()
    assert "forward" not in unet.__dict__ and not unet._forward_hooks
    assert all(not m._forward_hooks for m in unet.modules())
    assert torch.equal(plain(unet, x, 400, text), before)


def test_a_hit_reuses_the_pair_of_cfg_halves(unet):
    # distinct uncond and cond halves; the second call hits the single stored entry, which holds
    # exactly this input's feature pair, so the output equals the full forward only if each half
    # goes back to its own row
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 16, 16, generator=gen)
    text = torch.randn(2, 5, 64, generator=gen)
    full = plain(unet, x, 250, text)
    hash3d = Hash3D(retrieve_prob=1.0, check_every=1)  # every hit is also checked against the full forward
    with hash3d.applied(unet), torch.no_grad():
        first = unet(x, 250, encoder_hidden_states=text, camera=(30.0, 10.0, 1.7)).sample  # miss: stored
        again = unet(x, 250, encoder_hidden_states=text, camera=(30.0, 10.0, 1.7)).sample  # hit
        exact = hash3d.stats()
        nearby = unet(x, 252, encoder_hidden_states=text, camera=(31.0, 11.0, 1.71)).sample  # hit
    assert torch.equal(first, full) and torch.equal(again, full)
    # the check of the exact hit compares identical outputs (both CFG halves): cosine 1, no error
    assert exact["checks"] == 2 and exact["check_cosine"] == pytest.approx(1.0, abs=1e-12) and exact["check_rel_l2"] == 0.0
    stats = hash3d.stats()
    assert stats["hits"] == 2 and stats["partial_elements"] == 2 and stats["full_elements"] == 1
    # t 252 vs 250 only changes the shallow path's time embedding: close, not equal
    reference = plain(unet, x, 252, text)
    assert not torch.equal(nearby, full) and (nearby - reference).norm() < 0.1 * reference.norm()
    # the fidelity figures average over every checked half: the two exact ones and the two nearby ones
    a, b = nearby.flatten(1).double(), reference.flatten(1).double()
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert stats["checks"] == 4 and stats["check_cosine"] == pytest.approx((2 + cosine.sum().item()) / 4)
    assert stats["check_rel_l2"] == pytest.approx(((a - b).norm(dim=1) / b.norm(dim=1)).sum().item() / 4)
    stored = hash3d.table._values[0]  # (2, C, H, W): [uncond, cond] features of that element
    assert not torch.equal(stored[0], stored[1])


def test_a_new_conditioning_never_reuses(unet):
    x, text = inputs(seed=6)
    expected = plain(unet, x, 300, text.flip(0))
    hash3d = Hash3D(retrieve_prob=1.0)
    with hash3d.applied(unet), torch.no_grad(), camera_pose(0.0, 0.0, 1.8):
        unet(x, 300, encoder_hidden_states=text)
        other = unet(x, 300, encoder_hidden_states=text.flip(0)).sample  # another prompt, same pose and t
        assert hash3d.stats()["hits"] == 0
        assert torch.equal(other, expected)
        unet(x, 300, encoder_hidden_states=text)  # the first prompt again: its entry is still there
    assert hash3d.stats()["hits"] == 1


def test_pose_conditioned_embeddings_need_match_conditioning_off(unet):
    x, text = inputs(seed=9, size=8)
    strict, loose = Hash3D(retrieve_prob=1.0), Hash3D(retrieve_prob=1.0, match_conditioning=False)
    with torch.no_grad(), camera_pose(0.0, 0.0, 1.8):
        with strict.applied(unet), pytest.warns(UserWarning, match="match_conditioning=False"):
            for i in range(21):  # a Zero123-style embedding that changes with every call
                unet(x, 300, encoder_hidden_states=text + 0.01 * i)
        with loose.applied(unet):
            for i in range(21):
                unet(x, 300, encoder_hidden_states=text + 0.01 * i)
    assert strict.stats()["hits"] == 0 and loose.stats()["hits"] == 20


def test_attaching_again_starts_from_an_empty_table(unet):
    x, text = inputs(seed=7)
    hash3d = Hash3D(retrieve_prob=1.0)
    for _ in range(2):
        with hash3d.applied(unet), torch.no_grad(), camera_pose(0.0, 0.0, 1.8):
            unet(x, 300, encoder_hidden_states=text)
    assert hash3d.stats()["hits"] == 0 and hash3d.stats()["table_entries"] == 1


def test_non_finite_inputs_run_in_full_and_are_not_stored(unet):
    x, text = inputs(seed=8)
    x[0, 0, 0, 0] = float("nan")
    hash3d = Hash3D(retrieve_prob=1.0)
    with hash3d.applied(unet), torch.no_grad(), camera_pose(0.0, 0.0, 1.8):
        for _ in range(3):
            unet(x, 300, encoder_hidden_states=text)
    stats = hash3d.stats()
    assert stats["hits"] == 0 and stats["attempts"] == 0 and stats["nonfinite_not_stored"] == 3
    assert stats["table_entries"] == 0


def test_batches_reuse_per_element(unet):
    x, text = inputs(batch=3, seed=3)
    hash3d = Hash3D(retrieve_prob=1.0, check_every=1)
    with hash3d.applied(unet), torch.no_grad():
        with camera_pose(azimuth=[0.0, 100.0, 200.0], elevation=10.0, radius=1.8):
            unet(x, 300, encoder_hidden_states=text)
        with camera_pose(azimuth=[0.0, 150.0, 200.0], elevation=10.0, radius=1.8):
            out = unet(x, 300, encoder_hidden_states=text).sample
    full = plain(unet, x, 300, text)
    stats = hash3d.stats()
    assert stats["hits"] == 2 and stats["full_elements"] == 4 and stats["partial_elements"] == 2
    # elements 0 and 2 hit their own stored features and element 1 ran in full; both as sub-batches,
    # so equal to the whole-batch forward up to the rounding of a different batch size
    assert torch.allclose(out, full, atol=1e-5)
    assert stats["grid0_hits"] == 2 and stats["cross_cell_hits"] == 0
    assert stats["checks"] == 4 and stats["check_cosine"] == pytest.approx(1.0, abs=1e-6)


def test_noise_mode_returns_the_stored_prediction(unet):
    x, text = inputs(seed=4)
    hash3d = Hash3D(mode="noise", retrieve_prob=1.0)
    with hash3d.applied(unet), torch.no_grad(), camera_pose(45.0, 0.0, 1.6):
        first = unet(x, 600, encoder_hidden_states=text).sample
        second = unet(torch.randn_like(x), 604, encoder_hidden_states=text).sample
    assert torch.equal(first, second)
    assert hash3d.stats()["hits"] == 1 and "partial_s" not in hash3d.stats()


def test_retrieval_probability_is_the_share_of_lookups(unet):
    x, text = inputs(size=8)
    hash3d = Hash3D(retrieve_prob=0.5, seed=3)
    with hash3d.applied(unet), torch.no_grad(), camera_pose(0.0, 0.0, 1.5):
        for _ in range(40):
            unet(x, 100, encoder_hidden_states=text)
    stats = hash3d.stats()
    assert stats["updates"] == 40 - stats["attempts"] and 10 <= stats["attempts"] <= 30  # about half of 40
    # same pose and input throughout: every attempt hits except one made on the empty table
    assert stats["attempts"] - 1 <= stats["hits"] <= stats["attempts"]


def test_calls_without_a_valid_pose(unet):
    x, text = inputs()
    with Hash3D().applied(unet), torch.no_grad():
        with pytest.raises(ValueError, match="camera_pose"):
            unet(x, 10, encoder_hidden_states=text)
        with pytest.raises(ValueError, match="camera radius"):
            unet(x, 10, encoder_hidden_states=text, camera=(0.0, 0.0, -1.0))
        with pytest.raises(ValueError, match="camera azimuth: contains NaN"):
            unet(x, 10, encoder_hidden_states=text, camera=(float("nan"), 0.0, 1.0))
        with pytest.raises(ValueError, match="camera elevation"):
            unet(x, 10, encoder_hidden_states=text, camera=(0.0, 120.0, 1.0))
        with pytest.raises(ValueError, match="timestep: expected finite values >= 0"), camera_pose(0.0, 0.0, 1.0):
            unet(x, -5, encoder_hidden_states=text)
        with pytest.raises(ValueError, match="share their timesteps"), camera_pose(0.0, 0.0, 1.0):
            unet(x, torch.tensor([10, 20]), encoder_hidden_states=text)
        with pytest.raises(ValueError, match="1 or 1 poses"), camera_pose([0.0, 1.0], 0.0, 1.0):
            unet(x, 10, encoder_hidden_states=text)
        with pytest.raises(ValueError, match="odd batch"), camera_pose(0.0, 0.0, 1.0):
            unet(x[:1], 10, encoder_hidden_states=text[:1])
        with pytest.raises(ValueError, match=r"camera: expected \(azimuth, elevation, radius\)"):
            unet(x, 10, encoder_hidden_states=text, camera=(1.0, 2.0))
    fallback = Hash3D(missing_pose="full")
    with fallback.applied(unet), torch.no_grad(), pytest.warns(UserWarning, match="no camera pose"):
        out = unet(x, 10, encoder_hidden_states=text).sample
    assert torch.equal(out, plain(unet, x, 10, text)) and fallback.stats()["unsupported_calls"] == 1
    for bad in ({"mode": "eps"}, {"retrieve_prob": 1.5}, {"missing_pose": "skip"}, {"check_every": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Hash3D(**bad)
    with pytest.raises(ValueError, match=r"grids\[1\]: expected 4 cell sizes"):
        Hash3D(grids=[[10, 10, 0.1, 10], [20, 20, 0.15]])
    with pytest.raises(ValueError, match=r"grids\[0\]"):
        Hash3D(grids=[20, 20, 0.15, 20])


def test_controlnet_residuals_run_in_full(unet):
    x, text = inputs()
    hash3d = Hash3D(retrieve_prob=1.0)
    with torch.no_grad():
        down = [torch.zeros(2, 32, 8, 8)]  # a T2I-Adapter residual for the first down block
        with hash3d.applied(unet), camera_pose(0.0, 0.0, 1.5), pytest.warns(UserWarning, match="ControlNet"):
            unet(x, 10, encoder_hidden_states=text, down_intrablock_additional_residuals=down)
    assert hash3d.stats()["unsupported_calls"] == 1


def test_reset_clears_the_table_and_replays_the_coin(unet):
    x, text = inputs(size=8)
    hash3d = Hash3D(retrieve_prob=0.5, seed=1)
    with hash3d.applied(unet), torch.no_grad(), camera_pose(0.0, 0.0, 1.5):
        for _ in range(6):
            unet(x, 100, encoder_hidden_states=text)
        first = hash3d.stats()
        hash3d.reset()
        assert hash3d.stats()["table_entries"] == 0 and "calls" not in hash3d.stats()
        for _ in range(6):
            unet(x, 100, encoder_hidden_states=text)
    assert hash3d.stats()["attempts"] == first["attempts"] and hash3d.stats()["hits"] == first["hits"]


def test_built_from_config_and_usable_in_a_stack():
    stack = build_stack("mine", {"hash3d": {"_target_": "accel3d.caching.Hash3D", "retrieve_prob": 0.5}})
    hash3d = stack.accelerators[0]
    assert isinstance(hash3d, Hash3D) and hash3d.stage == "denoiser" and hash3d.config.retrieve_prob == 0.5
