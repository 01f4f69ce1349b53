"""The baselines are the Fast-SAM3D modules with their distinguishing feature off, and behave as such."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import get_class

from accel3d.jobs.configs import accelerator_config
from accel3d.pruning import EasyCacheSkip, ModalityStepCache, RandomTokenDrop, TokenCarving, UniformTaylorCache, UniformTokenMerge
from tests.pruning.fakes import PolynomialStage, TokenStage
from tests.pruning.test_aggregation import _box_logits, _structure


def test_taylorseer_extrapolates_layout_like_shape_without_an_anchor():
    plain, seer = PolynomialStage(order=2), PolynomialStage(order=2)
    with ModalityStepCache(stride=3, beta=1.0).applied(plain):
        _, expected = plain.sample()
    with UniformTaylorCache(stride=3).applied(seer):
        _, got = seer.sample()
    assert all(torch.equal(a[k], b[k]) for a, b in zip(expected, got) for k in a)
    with ModalityStepCache(stride=3, beta=0.5).applied(anchored := PolynomialStage(order=2)):
        _, blended = anchored.sample()
    assert not torch.equal(blended[3]["rotation"], got[3]["rotation"])


def test_easycache_skips_steps_and_never_carves():
    stage = TokenStage(lambda x, c: torch.sin(x))
    skip = EasyCacheSkip(skip_threshold=0.3)
    with skip.applied(stage):
        stage.sample()
    n = stage.noise.shape[1]
    assert all(size == n for _, size, _ in stage.calls)
    assert skip.stats()["skipped_steps"] > 0 and "tokens_carved" not in skip.stats()


def test_random_drop_carves_the_same_share_but_not_the_same_tokens_and_never_skips():
    runs = {}
    for name, acc in (("salient", TokenCarving(ratio=0.25, skip_threshold=0.0)), ("random", RandomTokenDrop(ratio=0.25))):
        stage = TokenStage(lambda x, c: torch.sin(3 * x) * (1 + c[..., :1].float()))
        with acc.applied(stage):
            stage.sample()
        runs[name] = (stage.calls, acc.stats())
    (salient_calls, salient), (random_calls, random) = runs["salient"], runs["random"]
    assert random["tokens_carved"] == salient["tokens_carved"] and "skipped_steps" not in random
    assert any(not torch.equal(a[2], b[2]) for a, b in zip(salient_calls[3:], random_calls[3:]))
    again = TokenStage(lambda x, c: torch.sin(3 * x) * (1 + c[..., :1].float()))
    with RandomTokenDrop(ratio=0.25).applied(again):
        again.sample()
    assert all(torch.equal(a[2], b[2]) for a, b in zip(random_calls, again.calls))  # seeded


def test_uniform_merge_uses_its_factor_whatever_the_object():
    for lo, hi in ((6, 27), (10, 20)):
        merge = UniformTokenMerge(factor=1.5, min_tokens=0)
        with merge.applied(stage := _structure()):  # 1.5 at SAM3D's 64^3 grid is 1.25 at this 32^3 one
            assert stage.coords(_box_logits(lo=lo, hi=hi)).factor == 1.25


def test_every_baseline_is_declared_under_its_name_and_turns_its_feature_off():
    for cls in (UniformTaylorCache, EasyCacheSkip, RandomTokenDrop, UniformTokenMerge):
        assert get_class(accelerator_config(cls.name)._target_) is cls
    assert UniformTaylorCache().config.beta == 1.0 and UniformTaylorCache().config.layout_groups == ()
    assert EasyCacheSkip().config.ratio == 0.0
    assert RandomTokenDrop().config.weighting == "random" and RandomTokenDrop().config.skip_threshold == 0.0
    with pytest.raises(TypeError, match="beta"):  # what a baseline turns off is not a knob of it
        UniformTaylorCache(beta=0.5)
