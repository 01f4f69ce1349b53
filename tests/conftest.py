from __future__ import annotations

import os
from pathlib import Path

# Triton kernels run on CPU tensors only in the interpreter, which must be on before they are defined.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from accel3d.jobs.configs import register_configs  # noqa: E402
from accel3d.models.vecset.vae import VecsetVAE, VecsetVAEConfig  # noqa: E402

register_configs()  # tests compose the configs with Hydra's compose API, as `accel3d run` does after this call

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tiny_config() -> VecsetVAEConfig:
    return VecsetVAEConfig(num_latents=16, embed_dim=8, width=32, heads=2, num_decoder_layers=1)


@pytest.fixture
def tiny_weights(tmp_path: Path, tiny_config: VecsetVAEConfig) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny_vae.pt"
    VecsetVAE(tiny_config).save(path)
    return path
