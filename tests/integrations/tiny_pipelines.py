"""Small random real TRELLIS v1 and SAM 3D Objects pipelines, for the tests and ``scripts/bench_real_pruning.py``.

Each takes the namespace of :mod:`tests.integrations.real_models`' loaders and returns the library's own pipeline
class holding small random models. The image encoders are stand-ins (one token per pixel).
"""

from __future__ import annotations

import types
from typing import Any

import torch

from tests.integrations.real_models import keep_sparse_convs_training
from tests.integrations.test_real_model_adapters import POSE_KEYS, randomized, sam3d_slat_backbone, trellis_slat_model, trellis_ss_model


def occupying(decoder: torch.nn.Module, channels: int, side: int, share: float) -> torch.nn.Module:
    """Random weights fill about half the grid: shift the output bias so that about ``share`` of it is occupied
    (for a random latent; enough voxels for spectral aggregation's token guard, few enough to run fast)."""
    with torch.no_grad():
        logits = decoder(torch.randn(1, channels, side, side, side, generator=torch.Generator().manual_seed(0))).flatten()
        decoder.out_layer[-1].bias -= torch.quantile(logits[:: max(1, len(logits) // 100_000)], 1 - share)
    return decoder


def trellis_pipeline(trellis: types.SimpleNamespace) -> Any:
    """TRELLIS's own ``TrellisImageTo3DPipeline`` with small random models (SS flow at 8^3, decoder to 16^3, SLaT flow),
    built as its ``from_pretrained`` builds it: an empty pipeline, then its attributes."""
    decoder = trellis.SparseStructureDecoder(out_channels=1, latent_channels=4, num_res_blocks=1, channels=[16, 8], num_res_blocks_middle=1)
    pipe = trellis.TrellisImageTo3DPipeline()  # as from_pretrained builds it: empty, then its attributes
    pipe.models = {
        "sparse_structure_flow_model": trellis_ss_model(trellis),
        "sparse_structure_decoder": occupying(randomized(decoder, seed=1).eval(), 4, 8, 0.12),
        "slat_flow_model": trellis_slat_model(trellis),
    }
    pipe.sparse_structure_sampler = trellis.FlowEulerGuidanceIntervalSampler(sigma_min=1e-5)
    pipe.slat_sampler = trellis.FlowEulerGuidanceIntervalSampler(sigma_min=1e-5)
    pipe.sparse_structure_sampler_params = {"steps": 8, "cfg_strength": 7.5, "cfg_interval": (0.5, 1.0), "rescale_t": 3.0}
    pipe.slat_sampler_params = {"steps": 8, "cfg_strength": 3.0, "cfg_interval": (0.5, 1.0), "rescale_t": 3.0}
    pipe.slat_normalization = {"mean": [0.0] * 8, "std": [1.0] * 8}
    return pipe


class ImageTokens(torch.nn.Module):
    """A condition embedder: one 32-channel token per pixel (SAM 3D Objects' is a DINOv2 image encoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 32)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(image.flatten(2).transpose(1, 2))


def sam3d_pipeline(sam3d: types.SimpleNamespace) -> Any:
    """SAM 3D Objects' own ``InferencePipeline`` with small random models, its attributes set as its constructor sets
    them from a config (the constructor itself loads checkpoints and a depth model)."""
    torch.manual_seed(0)
    mapping = {"shape": sam3d.Latent(8, 64, sam3d.ShapePositionEmbedder(64, 16, 1))}  # 16^3 shape tokens, as its decoder needs
    for key, width in POSE_KEYS.items():
        mapping[key] = sam3d.Latent(width, 64, sam3d.LearntPositionEmbedder(64, 1))
    ss_backbone = sam3d.SparseStructureFlowTdfyWrapper(
        latent_mapping=mapping, latent_share_transformer={"6drotation_normalized": list(POSE_KEYS)},
        in_channels=8, model_channels=64, cond_channels=32, out_channels=8, num_blocks=1, num_heads=4,
        mlp_ratio=2, pe_mode="ape", qk_rms_norm=True, is_shortcut_model=True,
    )  # fmt: skip
    ss = sam3d.ShortCut(reverse_fn=sam3d.cfg.ClassifierFreeGuidance(backbone=randomized(ss_backbone)), inference_steps=6).eval()
    guided = sam3d.cfg.ClassifierFreeGuidance(
        backbone=sam3d_slat_backbone(sam3d), strength=5.0, interval=[0, 1000], unconditional_handling="zeros"
    )
    slat = keep_sparse_convs_training(sam3d.FlowMatching(reverse_fn=guided, inference_steps=8, rescale_t=3.0).eval())
    decoder = sam3d.SparseStructureDecoder(
        out_channels=1, latent_channels=8, num_res_blocks=1, channels=[16, 8, 8], num_res_blocks_middle=1
    )
    decoder = occupying(randomized(decoder, seed=1).eval(), 8, 16, 0.01)
    pipe = object.__new__(sam3d.InferencePipeline)
    pipe.models = torch.nn.ModuleDict({"ss_generator": ss, "slat_generator": slat, "ss_decoder": decoder})
    pipe.condition_embedders = {"ss_condition_embedder": ImageTokens(), "slat_condition_embedder": ImageTokens()}
    pipe.ss_condition_input_mapping = pipe.slat_condition_input_mapping = ["image"]
    pipe.ss_cfg_strength, pipe.ss_cfg_strength_pm, pipe.slat_cfg_strength = 7.0, 0.0, 5.0
    pipe.shape_model_dtype = pipe.dtype = torch.float32
    pipe.downsample_ss_dist = 0
    pipe.slat_mean, pipe.slat_std = torch.zeros(8), torch.ones(8)
    return pipe
