"""Diffusion U-Net backbones for score distillation: built at random init, or loaded from a local folder.

No weights ship for these: the tiny U-Net and the SD-2.1-base architecture are
random-init stand-ins that give the caching code a realistic structure and compute
profile on the CPU. A user with real weights gives a local diffusers folder, which
:func:`accel3d.integrations.diffusers.load_unet` reads (nothing is downloaded).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DConditionModel

from accel3d.integrations.diffusers import load_unet

# A 6.1M-parameter U-Net with the Stable Diffusion layout (3 up layers per block,
# cross-attention in the lower levels), small enough for tests and the default job:
# about 42 ms for a full forward at a 32x32 latent with batch 2 on 2 CPU cores.
TINY_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (32, 64, 128),
    "layers_per_block": 2,
    "cross_attention_dim": 64,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}

# The Stable Diffusion 2.1-base U-Net architecture (865.9M parameters).
SD21_BASE_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
}

BACKBONES = ("tiny", "sd21_base")


def build_unet(backbone: str = "tiny", seed: int = 0, in_channels: int | None = None) -> UNet2DConditionModel:
    """A random-init U-Net: ``tiny`` or ``sd21_base``, or a local diffusers folder path.

    ``in_channels`` = 8 builds the Zero123-style variant (noisy latent + image latent).
    """
    if backbone not in BACKBONES:
        return load_unet(backbone)
    config = dict(TINY_CONFIG if backbone == "tiny" else SD21_BASE_CONFIG)
    if in_channels is not None:
        if in_channels not in (4, 8):
            raise ValueError(f"in_channels: expected 4 (text-conditioned) or 8 (Zero123-style), got {in_channels}")
        config["in_channels"] = in_channels
    torch.manual_seed(seed)
    return UNet2DConditionModel(**config).eval().requires_grad_(False)
