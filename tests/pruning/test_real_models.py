"""The pruning accelerators on the real TRELLIS v1 and SAM 3D Objects samplers (small random weights, CPU).

Random weights say nothing about fidelity, so only the mechanics are tested: an inactive configuration
is bit-exact through the adapter, and an active one makes the expected number of backbone calls.
"""

from __future__ import annotations

import pytest
import torch

from accel3d.integrations.sam3d import Sam3DFlowStage
from accel3d.integrations.trellis import TrellisFlowStage
from accel3d.pruning import ModalityStepCache, TokenCarving
from accel3d.pruning.extrapolation import full_steps
from tests.integrations.real_models import keep_sparse_convs_training
from tests.integrations.test_real_model_adapters import (
    count_forwards,
    sam3d_slat_backbone,
    sam3d_ss_backbone,
    trellis_slat_model,
    trellis_ss_model,
    voxel_coords,
)

pytestmark = pytest.mark.filterwarnings("ignore:'locale.getdefaultlocale' is deprecated:DeprecationWarning")


def test_modality_cache_on_trellis_ss_sampler(trellis):
    model, sampler = trellis_ss_model(trellis), trellis.FlowEulerGuidanceIntervalSampler(sigma_min=1e-5)
    g = torch.Generator().manual_seed(1)
    noise, cond = torch.randn(1, 4, 8, 8, 8, generator=g), torch.randn(1, 5, 32, generator=g)
    kwargs = {"neg_cond": torch.zeros_like(cond), "steps": 8, "rescale_t": 3.0, "cfg_strength": 7.5, "cfg_interval": (0.0, 1.0)}
    reference = sampler.sample(model, noise, cond, verbose=False, **kwargs).samples
    with TrellisFlowStage(sampler, model) as stage:
        with ModalityStepCache(stride=1).applied(stage):
            same = sampler.sample(model, noise, cond, verbose=False, **kwargs).samples
        cache = ModalityStepCache(stride=3)  # a one-group stage: plain Taylor, no layout anchor
        with cache.applied(stage):
            forwards, hook = count_forwards(model)
            changed = sampler.sample(model, noise, cond, verbose=False, **kwargs).samples
            hook.remove()
    assert torch.equal(same, reference)
    full = full_steps(8, warmup=2, stride=3)  # [0, 1, 4, 7]
    assert cache.stats()["full_steps"] == len(full) and len(forwards) == 2 * len(full)  # CFG: two passes per full step
    assert not torch.equal(changed, reference) and torch.isfinite(changed).all()


def test_modality_cache_on_sam3d_shortcut_generator_anchors_its_layout_keys(sam3d):
    backbone = sam3d_ss_backbone(sam3d)
    guided = sam3d.cfg.ClassifierFreeGuidanceWithExternalUnconditionalProbability(
        backbone=backbone, p_unconditional=0.1, strength=7.0, interval=[0, 1000], unconditional_handling="zeros"
    )
    generator = sam3d.ShortCut(reverse_fn=guided, inference_steps=8, rescale_t=3.0, time_scale=1000.0, no_shortcut=True).eval()
    shapes = {k: (1, v.pos_emb.shape[0], v.input_layer.in_features) for k, v in backbone.latent_mapping.items()}
    cond = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(5))

    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(42)
        with torch.no_grad():
            return generator(shapes, torch.device("cpu"), cond)

    reference = run()
    results = {}
    with Sam3DFlowStage(generator) as stage:
        assert set(stage.token_groups) == {"shape", "layout"}
        with ModalityStepCache(stride=1).applied(stage):
            results["idle"] = run()
        for beta in (1.0, 0.5):
            cache = ModalityStepCache(stride=3, beta=beta)
            with cache.applied(stage):
                forwards, hook = count_forwards(backbone)
                results[beta] = run()
                hook.remove()
            assert len(forwards) == 2 * len(full_steps(8, 2, 3))
    assert all(torch.equal(results["idle"][k], reference[k]) for k in reference)
    assert torch.equal(results[1.0]["shape"], results[0.5]["shape"])  # beta moves the layout keys only
    assert not torch.equal(results[1.0]["6drotation_normalized"], results[0.5]["6drotation_normalized"])


def test_token_carving_on_trellis_sparse_slat_sampler_skips_steps(trellis):
    model, sampler = trellis_slat_model(trellis), trellis.FlowEulerCfgSampler(sigma_min=1e-5)
    coords = voxel_coords([60], resolution=16, seed=2)
    g = torch.Generator().manual_seed(3)
    noise = trellis.SparseTensor(feats=torch.randn(coords.shape[0], 8, generator=g), coords=coords)
    cond = torch.randn(1, 5, 32, generator=g)
    kwargs = {"neg_cond": torch.zeros_like(cond), "steps": 10, "rescale_t": 1.0, "cfg_strength": 0.0, "verbose": False}
    reference = sampler.sample(model, noise, cond, **kwargs).samples
    with TrellisFlowStage(sampler, model) as stage:
        with TokenCarving(ratio=0.0, skip_threshold=0.0).applied(stage):
            same = sampler.sample(model, noise, cond, **kwargs).samples
        carving = TokenCarving(warmup=3, ratio=0.1, skip_threshold=100.0)
        with carving.applied(stage):
            forwards, hook = count_forwards(model)
            skipped = sampler.sample(model, noise, cond, **kwargs).samples
            hook.remove()
    assert torch.equal(same.feats, reference.feats)
    stats = carving.stats()
    # warm-up 0-2 and the last step computed, 3-8 skipped; the last is carved: one object's sparse tensor reaches
    # the carving as tokens plus coordinates, and its kept voxels go through the model as a new SparseTensor
    assert stats["model_calls"] == 4 and stats["skipped_steps"] == 6
    assert len(forwards) == 2 * 4  # TRELLIS's CFG sampler runs both passes even at strength 0
    assert stats["carved_steps"] == 1 and stats["tokens_carved"] == 6 and "uncarved_steps" not in stats
    assert torch.isfinite(skipped.feats).all()


def test_token_carving_on_sam3d_slat_generator_skips_steps(sam3d):
    backbone = sam3d_slat_backbone(sam3d)
    generator = keep_sparse_convs_training(sam3d.FlowMatching(reverse_fn=backbone, inference_steps=8, rescale_t=1.0).eval())
    coords = voxel_coords([50], resolution=16, seed=7).numpy()
    cond = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(3))

    def run() -> torch.Tensor:
        torch.manual_seed(42)
        with torch.no_grad():
            return generator((1, coords.shape[0], 8), torch.device("cpu"), cond, coords)

    reference = run()
    with Sam3DFlowStage(generator) as stage:
        with TokenCarving(ratio=0.0, skip_threshold=0.0).applied(stage):
            same = run()
        carving = TokenCarving(warmup=2, ratio=0.1, skip_threshold=100.0)
        with carving.applied(stage):
            forwards, hook = count_forwards(backbone)
            run()
            hook.remove()
    assert torch.equal(same, reference)
    assert len(forwards) == carving.stats()["model_calls"] == 3 and carving.stats()["skipped_steps"] == 5
