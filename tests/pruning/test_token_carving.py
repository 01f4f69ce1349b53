"""Token carving and adaptive step skipping: exact no-op and detach, carving counts, the staleness cap, the skip rule."""

from __future__ import annotations

import pytest
import torch

from accel3d.pruning import TokenCarving
from accel3d.pruning.saliency import carve, frequency_score, minmax, token_saliency
from tests.pruning.fakes import TokenStage, cond_tokens, tiny_slat_sampler


def _sample(sampler, coords, seed=0):
    return sampler.sample(cond_tokens(), torch.Generator().manual_seed(seed), shape=(1, len(coords), 4), coords=coords[None])


def test_inactive_carving_reproduces_the_sampler_bit_for_bit_and_detach_restores_it():
    sampler, coords = tiny_slat_sampler()
    baseline = _sample(sampler, coords)
    idle = TokenCarving(ratio=0.0, skip_threshold=0.0)
    with idle.applied(sampler):
        same = _sample(sampler, coords)
    assert torch.equal(same, baseline)
    assert idle.stats()["model_calls"] == 25 and idle.stats()["tokens_computed"] == 25 * len(coords)
    active = TokenCarving(ratio=0.25, skip_threshold=0.0)
    with active.applied(sampler):
        changed = _sample(sampler, coords)
    assert not torch.equal(changed, baseline)
    assert torch.equal(_sample(sampler, coords), baseline)
    assert "velocity" not in vars(sampler)


def test_carving_sends_the_kept_tokens_with_their_coordinates_and_keeps_the_rest():
    stage = TokenStage(lambda x, c: torch.sin(3 * x) + c[..., :1].float() / 8)
    n = stage.noise.shape[1]
    carving = TokenCarving(warmup=3, ratio=0.25, skip_threshold=0.0)
    with carving.applied(stage):
        _, seen = stage.sample()
    sizes = [size for _, size, _ in stage.calls]
    assert sizes[:4] == [n, n, n, n - n // 4]  # warm-up 0-2 in full, carving from step 3 on (history of two)
    for _, size, coords in stage.calls[3:]:
        kept = torch.nonzero((coords[:, None] == stage.coords[0][None]).all(-1))[:, 1]
        assert size == len(kept) == len(coords)  # every row the model saw is one of the structure's voxels, in order
        assert torch.equal(kept, kept.sort().values)
    stats = carving.stats()
    assert stats["tokens_computed"] == 3 * n + 22 * (n - n // 4)
    assert stats["tokens_carved"] == 22 * (n // 4)
    # a carved token's velocity is exactly its previous one
    carved_at_3 = torch.ones(n, dtype=torch.bool)
    carved_at_3[torch.nonzero((stage.calls[3][2][:, None] == stage.coords[0][None]).all(-1))[:, 1]] = False
    assert torch.equal(seen[3][0, carved_at_3], seen[2][0, carved_at_3])


def test_no_token_is_cached_more_than_max_stale_steps_in_a_row():
    stage = TokenStage(lambda x, c: torch.cos(2 * x))
    n = stage.noise.shape[1]
    with TokenCarving(warmup=2, ratio=0.9, max_stale=2, skip_threshold=0.0).applied(stage):
        stage.sample()
    run = torch.zeros(n, dtype=torch.long)
    longest = 0
    for _, _, coords in stage.calls:
        computed = torch.zeros(n, dtype=torch.bool)
        computed[torch.nonzero((coords[:, None] == stage.coords[0][None]).all(-1))[:, 1]] = True
        run = torch.where(computed, torch.zeros_like(run), run + 1)
        longest = max(longest, int(run.max()))
    assert longest == 2


def test_the_skip_rule_skips_exactly_while_the_accumulated_change_stays_under_the_threshold():
    # v = x: the rate |dv|/|dx| is 1 and each step's relative change |x_t - x_prev| / |v_prev| is dt = 1/25,
    # so with threshold 0.1 two steps (E = 0.04, 0.08) are skipped before E would reach 0.12
    stage = TokenStage(lambda x, c: x.clone())
    carving = TokenCarving(warmup=3, ratio=0.0, skip_threshold=0.1)
    with carving.applied(stage):
        _, seen = stage.sample()
    computed = [step for step, _, _ in stage.calls]
    assert computed == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24]  # 24: the last step is always computed
    assert carving.stats()["skipped_steps"] == 14
    state = stage.noise.clone()
    for step in range(8):  # a skipped step's v = x_t + (v_last - x_last) = x_t here, the true velocity
        torch.testing.assert_close(seen[step], state)
        state = state + seen[step] / 25


def test_the_skipped_velocity_is_x_plus_the_last_tangent_increment():
    stage = TokenStage(lambda x, c: 0.5 * x + 1.0)
    with TokenCarving(warmup=2, ratio=0.0, skip_threshold=10.0, force_last=False).applied(stage):
        _, outs = stage.sample(steps=5)
    assert [s for s, _, _ in stage.calls] == [0, 1]  # warm-up; the rate is known from two computed steps
    x_now = stage.noise + (outs[0] + outs[1]) / 25  # the state at step 2
    x_last = stage.noise + outs[0] / 25  # the state at the last computed step (1)
    torch.testing.assert_close(outs[2], x_now + (outs[1] - x_last))


def test_nan_velocities_are_counted_and_never_reused():
    calls = []

    def fn(x, c):
        calls.append(1)
        return torch.full_like(x, float("nan")) if len(calls) == 3 else x.clone()

    stage = TokenStage(fn)
    carving = TokenCarving(warmup=3, ratio=0.0, skip_threshold=0.1)
    with carving.applied(stage):
        _, seen = stage.sample()
    assert carving.stats()["nan_steps"] == 1
    # after the NaN at step 2 the trajectory's memory starts again: steps 3 and 4 are computed to learn the rate
    assert [s for s, _, _ in stage.calls][:5] == [0, 1, 2, 3, 4]
    assert all(bool(torch.isfinite(v).all()) for i, v in enumerate(seen) if i != 2)


def test_saliency_terms_and_carve_order():
    assert torch.equal(minmax(torch.tensor([2.0, 2.0])), torch.zeros(2))
    v = torch.tensor([[3.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    prev = torch.zeros(3, 2)
    paper = token_saliency(v, prev, torch.zeros(3), gamma=1.0)
    torch.testing.assert_close(paper, torch.tensor([1.0, 0.0, 1 / 3]))
    code = token_saliency(v, prev, torch.tensor([0.0, 1.0, 0.0]), weighting="code")
    torch.testing.assert_close(code, torch.tensor([0.7, 0.3, 0.7 / 3]))
    carved = carve(torch.tensor([0.5, 0.1, 0.9, 0.2]), torch.tensor([0, 0, 0, 4]), ratio=0.5, max_stale=4)
    assert carved.tolist() == [True, True, False, False]  # token 3 scores low but is forced to update


def test_frequency_score_is_higher_at_a_thin_spike_than_inside_a_block():
    block = torch.stack(torch.meshgrid(*[torch.arange(8, 20)] * 3, indexing="ij"), -1).reshape(-1, 3)
    spike = torch.stack([torch.full((8,), 14), torch.full((8,), 14), torch.arange(20, 28)], 1)
    coords = torch.cat([block, spike])
    score = frequency_score(coords, 32)
    centre = ((block - 14).abs().max(1).values <= 1).nonzero()[:, 0]
    assert float(score[len(block) :].mean()) > float(score[centre].mean())


def test_bad_knobs_name_the_argument():
    with pytest.raises(ValueError, match=r"^ratio: "):
        TokenCarving(ratio=1.0)
    with pytest.raises(ValueError, match=r"^ratio: "):
        TokenCarving(ratio=-0.1)
    with pytest.raises(ValueError, match=r"^skip_threshold: "):
        TokenCarving(skip_threshold=-1.0)
    with pytest.raises(ValueError, match=r"^max_stale: "):
        TokenCarving(max_stale=0)
    with pytest.raises(ValueError, match=r"^weighting: "):
        TokenCarving(weighting="mine")
    with pytest.raises(TypeError, match=r"^token_carving: expected a flow sampler stage"):
        TokenCarving().attach(object())


def test_zero_or_one_token_and_a_changed_batch_run_in_full():
    for n in (0, 1):
        stage = TokenStage(lambda x, c: x.clone() + 1, n=max(n, 1))
        stage.noise, stage.coords = stage.noise[:, :n], stage.coords[:, :n]
        carving = TokenCarving(warmup=1, ratio=0.5, skip_threshold=0.0)
        with carving.applied(stage):
            _, seen = stage.sample()
        assert carving.stats()["model_calls"] == 25 and "tokens_carved" not in carving.stats()
        assert all(v.shape == (1, n, 4) for v in seen)
    stage = TokenStage(lambda x, c: x.clone())
    carving = TokenCarving(warmup=2, ratio=0.0, skip_threshold=10.0)
    with carving.applied(stage):
        x = stage.noise
        for step in range(4):
            x = x + stage.velocity(x, 0.0, None, step, coords=stage.coords) / 25
        wider = torch.cat([x, x], dim=1)  # a sampler that suddenly sends another token set: a new trajectory
        stage.velocity(wider, 0.0, None, 4, coords=torch.cat([stage.coords, stage.coords], dim=1))
    assert [s for s, _, _ in stage.calls] == [0, 1, 4] and carving.stats()["trajectories"] == 2
