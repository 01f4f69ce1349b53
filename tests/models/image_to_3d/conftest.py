"""Fixtures of the image-to-3D pipeline tests: tiny random-init checkpoints written into ``tmp_path``
(never the shipped weights, which another engineer trains)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from accel3d.models.image_to_3d import ImageTo3DConfig, ImageTo3DModels

TINY_IMAGE_TO_3D = dict(
    image_size=16,
    cond_grid=4,
    cond_channels=16,
    structure_resolution=16,
    ss_latent_resolution=4,
    ss_latent_channels=4,
    ss_vae_channels=16,
    ss_flow_width=32,
    ss_flow_depth=1,
    ss_flow_heads=2,
    slat_channels=4,
    slat_vae_width=32,
    slat_vae_depth=1,
    slat_vae_heads=2,
    slat_flow_width=32,
    slat_flow_depth=1,
    slat_flow_heads=2,
)


@pytest.fixture
def tiny_image_to_3d_config() -> ImageTo3DConfig:
    return ImageTo3DConfig(**TINY_IMAGE_TO_3D)


@pytest.fixture
def tiny_image_to_3d_models(tiny_image_to_3d_config: ImageTo3DConfig) -> ImageTo3DModels:
    torch.manual_seed(0)
    return ImageTo3DModels(tiny_image_to_3d_config).eval()


@pytest.fixture
def tiny_image_to_3d_weights(tmp_path: Path, tiny_image_to_3d_models: ImageTo3DModels) -> Path:
    """A random-init image-to-3D checkpoint of the tiny config (its 16^3 structure is about 40% occupied)."""
    path = tmp_path / "tiny_image_to_3d.pt"
    tiny_image_to_3d_models.save(path)
    return path


@pytest.fixture
def empty_structure_weights(tmp_path: Path, tiny_image_to_3d_models: ImageTo3DModels) -> Path:
    """The tiny checkpoint with its SS decoder's last convolution set to a constant logit of -10: no voxel is occupied."""
    last = tiny_image_to_3d_models.ss_vae.decoder_out[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)
    path = tmp_path / "empty_structure.pt"
    tiny_image_to_3d_models.save(path)
    return path
