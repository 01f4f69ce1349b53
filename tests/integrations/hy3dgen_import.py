"""hy3dgen 2.0.2 for the tests: its ShapeVAE module, and its pipeline, DiT and scheduler without its package ``__init__``
chain (which needs torchvision), with stand-ins for the pipeline's image encoder and preprocessor."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch

from accel3d.integrations.hunyuan3d import hy3dgen_autoencoders

INSTALL_HINT = "pip install --no-deps hy3dgen==2.0.2 einops (what .ci/run installs)"


def import_hy3dgen_autoencoders() -> types.ModuleType | None:
    """``hy3dgen.shapegen.models.autoencoders`` (accel3d's own import of it), or None when hy3dgen or einops is absent."""
    try:
        return hy3dgen_autoencoders()
    except ModuleNotFoundError:
        return None


def import_hy3dgen_pipeline() -> types.SimpleNamespace | None:
    """hy3dgen's flow-matching pipeline, its DiT and its scheduler (None when hy3dgen or einops is absent).

    ``hy3dgen.shapegen``'s ``__init__`` imports its image preprocessors (cv2, rembg) and its conditioner
    (torchvision), so only the pipeline, DiT and scheduler files are imported, under bare parent packages."""
    autoencoders = import_hy3dgen_autoencoders()
    if autoencoders is None:
        return None
    root = Path(autoencoders.__file__).parents[1]
    if "hy3dgen.shapegen.models.denoisers" not in sys.modules:
        module = types.ModuleType("hy3dgen.shapegen.models.denoisers")
        module.__path__ = [str(root / "denoisers")]
        sys.modules[module.__name__] = module
    return types.SimpleNamespace(
        ShapeVAE=autoencoders.ShapeVAE,
        Hunyuan3DDiT=importlib.import_module("hy3dgen.shapegen.models.denoisers.hunyuan3ddit").Hunyuan3DDiT,
        FlowMatchEulerDiscreteScheduler=importlib.import_module("hy3dgen.shapegen.schedulers").FlowMatchEulerDiscreteScheduler,
        Hunyuan3DDiTFlowMatchingPipeline=importlib.import_module("hy3dgen.shapegen.pipelines").Hunyuan3DDiTFlowMatchingPipeline,
    )


class ImageTokens(torch.nn.Module):
    """Stand-in for hy3dgen's image conditioner (torchvision): one 16-channel context token per pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 16)

    def forward(self, image: torch.Tensor, **_: Any) -> dict[str, torch.Tensor]:
        return {"main": self.proj(image.flatten(2).transpose(1, 2))}

    def unconditional_embedding(self, batch: int, **_: Any) -> dict[str, torch.Tensor]:
        return {"main": torch.zeros(batch, 64, 16)}


def read_image(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stand-in for hy3dgen's image preprocessor (cv2, rembg)."""
    return {"image": torch.as_tensor(image, dtype=torch.float32)[None]}


def tiny_pipeline(hy: types.SimpleNamespace, shape_vae: Any) -> Any:
    """hy3dgen's own ``Hunyuan3DDiTFlowMatchingPipeline`` around ``shape_vae`` and a small random ``Hunyuan3DDiT``
    (hidden 64, one double and one single block), with the two image stand-ins above, on the CPU in float32."""
    torch.manual_seed(0)
    dit = hy.Hunyuan3DDiT(in_channels=32, context_in_dim=16, hidden_size=64, num_heads=4, depth=1, depth_single_blocks=1, axes_dim=[16])
    with torch.no_grad():
        for p in dit.parameters():  # the constructor zeroes some layers, which would give a zero velocity
            p.normal_(0, 0.05)
    scheduler = hy.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    return hy.Hunyuan3DDiTFlowMatchingPipeline(
        shape_vae, dit.eval(), scheduler, ImageTokens(), read_image, device="cpu", dtype=torch.float32
    )
