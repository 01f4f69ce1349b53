from __future__ import annotations

import os
from pathlib import Path

# Triton kernels run on CPU tensors only in the interpreter, which must be on before they are defined.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from accel3d.geometry import shapes  # noqa: E402
from accel3d.models.vecset_vae import VecsetVAE, VecsetVAEConfig  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")
TAU = 0.03  # truncation used for analytic fields, as in the shipped model


def truncated(sdf):
    return lambda p: (sdf(p) / TAU).clamp(-1.0, 1.0)


def offset_thin_plate():
    """A 0.01-thick plate centred between the z-samples of a 64^3 grid over [-1.01, 1.01]."""
    plate = shapes.box((0.7, 0.7, 0.005))
    return lambda p: plate(p - torch.tensor([0.0, 0.0, 0.015]))


@pytest.fixture
def tiny_config() -> VecsetVAEConfig:
    return VecsetVAEConfig(num_latents=16, embed_dim=8, width=32, heads=2, num_decoder_layers=1)


@pytest.fixture
def tiny_weights(tmp_path: Path, tiny_config: VecsetVAEConfig) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny_vae.pt"
    VecsetVAE(tiny_config).save(path)
    return path
