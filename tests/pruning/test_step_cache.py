"""Modality-aware step caching: its schedule, Taylor exactness, the layout anchor, exact no-op and detach, bad input."""

from __future__ import annotations

import pytest
import torch

from accel3d.pruning import ModalityStepCache
from accel3d.pruning.extrapolation import extrapolate, full_steps
from tests.pruning.fakes import PolynomialStage, cond_tokens, tiny_ss_sampler


def test_schedule_is_warmup_then_every_stride_and_the_last_step():
    assert full_steps(25, warmup=2, stride=3) == [0, 1, 4, 7, 10, 13, 16, 19, 22, 24]
    assert full_steps(25, warmup=2, stride=1) == list(range(25))
    assert full_steps(10, warmup=0, stride=4) == [3, 7, 9]


def test_first_order_taylor_is_exact_on_a_linear_trajectory():
    stage = PolynomialStage(order=1)
    cache = ModalityStepCache(stride=3, beta=1.0)  # beta 1: plain extrapolation for layout too
    with cache.applied(stage):
        _, seen = stage.sample()
    assert stage.calls == 10 and cache.stats()["cached_steps"] == 15
    for step, v in enumerate(seen):
        for key, value in v.items():
            torch.testing.assert_close(value, stage.truth(step)[key], rtol=1e-12, atol=1e-12)


def test_second_order_is_exact_on_a_quadratic_and_first_order_is_not():
    for order, exact in ((2, True), (1, False)):
        stage = PolynomialStage(order=2)
        with ModalityStepCache(stride=3, beta=1.0, order=order).applied(stage):
            _, seen = stage.sample()
        # from step 5 on, three full evaluations (0, 1, 4) exist; before it order 2 runs as order 1
        error = max(float((seen[s]["shape"] - stage.truth(s)["shape"]).abs().max()) for s in range(5, 25))
        assert (error < 1e-9) == exact, (order, error)


def test_layout_is_pulled_to_the_anchor_by_exactly_the_blend_and_shape_is_not():
    beta = 0.6
    plain, blended = PolynomialStage(order=1), PolynomialStage(order=1)
    with ModalityStepCache(stride=3, beta=1.0).applied(plain):
        _, lin = plain.sample()
    with ModalityStepCache(stride=3, beta=beta).applied(blended):
        _, out = blended.sample()
    anchor_step = {2: 1, 3: 1, 5: 4, 6: 4, 23: 22}  # skipped step -> its last full evaluation
    for step, anchor in anchor_step.items():
        for key in ("rotation", "scale"):
            expected = beta * lin[step][key] + (1 - beta) * blended.truth(anchor)[key]
            torch.testing.assert_close(out[step][key], expected, rtol=1e-12, atol=1e-12)
        assert torch.equal(out[step]["shape"], lin[step]["shape"])
    assert torch.equal(out[4]["rotation"], blended.truth(4)["rotation"])  # full steps are the model's own


def test_extrapolate_from_one_point_is_that_point_and_the_cache_never_does_it():
    v = torch.randn(3)
    assert torch.equal(extrapolate([(4, v)], 7, order=1), v)
    stage = PolynomialStage(order=1)
    with ModalityStepCache(warmup=0, stride=3).applied(stage):
        stage.sample()
    assert stage.calls == 11  # steps 0 and 1 (two points before extrapolating), then 2, 5, ..., 23 and 24


def test_stride_one_reproduces_the_sampler_bit_for_bit_and_detach_restores_it():
    sampler = tiny_ss_sampler()
    cond = cond_tokens()
    baseline = sampler.sample(cond, torch.Generator().manual_seed(3))
    cache = ModalityStepCache(stride=1)
    with cache.applied(sampler):
        same = sampler.sample(cond, torch.Generator().manual_seed(3))
    assert cache.stats()["full_steps"] == 25 and "cached_steps" not in cache.stats()
    assert all(torch.equal(baseline[k], same[k]) for k in baseline)
    active = ModalityStepCache(stride=3)
    with active.applied(sampler):
        changed = sampler.sample(cond, torch.Generator().manual_seed(3))
    assert not torch.equal(changed["shape"], baseline["shape"])
    after = sampler.sample(cond, torch.Generator().manual_seed(3))
    assert all(torch.equal(baseline[k], after[k]) for k in baseline)
    assert "velocity" not in vars(sampler)


def test_cached_steps_skip_both_cfg_passes():
    sampler = tiny_ss_sampler(cfg_strength=7.0)
    calls = []
    sampler.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    with ModalityStepCache(stride=3).applied(sampler):
        sampler.sample(cond_tokens(), torch.Generator().manual_seed(0))
    assert len(calls) == 2 * 10  # 10 full steps of 25, each a conditional and an unconditional pass


def test_each_trajectory_restarts_the_history():
    stage = PolynomialStage(order=1)
    cache = ModalityStepCache(stride=3, beta=1.0)
    with cache.applied(stage):
        stage.sample()
        stage.coeffs = {k: [c * 2 for c in cs] for k, cs in stage.coeffs.items()}  # a new model, same shapes
        _, seen = stage.sample()
    assert cache.stats()["trajectories"] == 2
    torch.testing.assert_close(seen[3]["shape"], stage.truth(3)["shape"], rtol=1e-12, atol=1e-12)


def test_a_nan_velocity_is_counted_never_cached_and_the_next_step_runs_in_full():
    stage = PolynomialStage(order=1)
    real = stage.velocity

    def velocity(x, t, cond, step, **kw):
        v = real(x, t, cond, step)
        return {k: torch.full_like(t_, float("nan")) for k, t_ in v.items()} if step == 4 else v

    stage.velocity = velocity
    cache = ModalityStepCache(stride=3, beta=1.0)
    with cache.applied(stage):
        _, seen = stage.sample()
    stats = cache.stats()
    assert stats["nan_steps"] == 1
    assert torch.isfinite(seen[5]["shape"]).all()  # step 5 would have been extrapolated from 4: computed instead
    torch.testing.assert_close(seen[5]["shape"], stage.truth(5)["shape"])
    assert stats["full_steps"] == 12  # steps 5 and 6 too: two finite evaluations are needed to extrapolate again


def test_bad_knobs_name_the_argument():
    with pytest.raises(ValueError, match=r"^stride: expected an integer >= 1"):
        ModalityStepCache(stride=0)
    with pytest.raises(ValueError, match=r"^beta: "):
        ModalityStepCache(beta=1.5)
    with pytest.raises(ValueError, match=r"^beta: "):
        ModalityStepCache(beta=-0.1)
    with pytest.raises(ValueError, match=r"^order: "):
        ModalityStepCache(order=3)
    with pytest.raises(ValueError, match=r"^layout_groups: \['pose'\] are not token groups of PolynomialStage"):
        ModalityStepCache(layout_groups=["pose"]).attach(PolynomialStage())
    with pytest.raises(TypeError, match=r"^modality_cache: expected a flow sampler stage with token_groups"):
        ModalityStepCache().attach(object())


def test_a_single_group_stage_gets_plain_taylor():
    truth = PolynomialStage(order=1).truth

    class WholeState:  # TRELLIS's SS flow: one tensor, one group
        token_groups = {"shape": ()}
        steps = 25

        def velocity(self, x, t, cond, step):
            return truth(step)["shape"]

    stage = WholeState()
    with ModalityStepCache(stride=3).applied(stage):  # the default layout group is absent: no anchoring
        out = [stage.velocity(torch.zeros(1, 16, 4, dtype=torch.float64), 0.0, None, s) for s in range(25)]
    torch.testing.assert_close(out[7], truth(7)["shape"], rtol=1e-12, atol=1e-12)


def test_a_changed_batch_mid_trajectory_restarts_the_history_and_runs_in_full():
    stage = PolynomialStage(order=1)
    cache = ModalityStepCache(stride=3)
    with cache.applied(stage):
        x = {k: torch.zeros(s, dtype=torch.float64) for k, s in stage.shapes.items()}
        for step in range(3):
            stage.velocity(x, 0.0, None, step)
        bigger = {k: torch.zeros(2, *s[1:], dtype=torch.float64) for k, s in stage.shapes.items()}
        stage.velocity(bigger, 0.0, None, 3)  # would be extrapolated; with a batch of 2 it is computed
    assert stage.calls == 2 + 1 and cache.stats()["trajectories"] == 2  # steps 0, 1 (2 extrapolated), then 3
