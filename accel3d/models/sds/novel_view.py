"""A small image- and pose-conditioned diffusion U-Net for novel views (Zero123-style), in pixel space.

Zero123's recipe at CPU size: a diffusers ``UNet2DConditionModel`` takes the noisy target view
concatenated on its input channels with the reference view (RGB, 32x32, ``[-1, 1]``, background
0), and cross-attends to tokens embedded from the relative camera (delta elevation in radians, sin
and cos of delta azimuth, delta radius; :func:`accel3d.models.sds.mesh_views.relative_pose`). For
classifier-free guidance the unconditional branch sees a zero reference image and learned null
tokens, as training dropped both together. No VAE: the model works on pixels.

With ``image_tokens`` > 0 the reference also reaches the cross-attention, as Zero123's CLIP image
embedding does: a small convolutional encoder turns it into ``image_tokens**2`` tokens (one per
patch, with a learned position), appended to the pose tokens. The concatenated channels carry the
reference pixel by pixel; the tokens let every position read all of it, which a large change of
viewpoint needs.

Checkpoints are ``{"format", "config", "state_dict", "metadata"}`` files. The shipped one
(``weights/novel_view.pt``, written by ``scripts/train_novel_view.py``) records the cameras it was
trained on, its scheduler and its held-out figures (``weights/novel_view.json``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import Tensor, nn

from accel3d.core.io import atomic_write, load_torch_file

FORMAT = "accel3d.novel_view/1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "novel_view.pt"
POSE_DIM = 4


@dataclass
class NovelViewConfig:
    """The architecture, the cameras and the noise schedule of a :class:`NovelViewModel`.

    Example::

        NovelViewConfig(block_out_channels=(16, 32, 32), layers_per_block=1)   # a tiny test model
    """

    image_size: int = 32
    channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    cross_attention_dim: int = 64
    attention_head_dim: int = 8
    pose_tokens: int = 4
    image_tokens: int = 4  # side of the grid of reference-image tokens in the cross-attention (0: none)
    # the cameras it was trained on (degrees, scene units); SDS warns outside them
    elevation_range: tuple[float, float] = (-10.0, 45.0)
    radius_range: tuple[float, float] = (1.4, 1.8)
    fovy: float = 50.0
    scheduler: dict[str, Any] = field(
        default_factory=lambda: {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon"}
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NovelViewConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        data.setdefault("image_tokens", 0)  # checkpoints written before image tokens existed have none
        return cls(**data)

    def unet_config(self) -> dict[str, Any]:
        levels = len(self.block_out_channels)
        return {
            "sample_size": self.image_size,
            "in_channels": 2 * self.channels,  # noisy target + reference view
            "out_channels": self.channels,
            "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
            "up_block_types": ("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
            "block_out_channels": tuple(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "cross_attention_dim": self.cross_attention_dim,
            "attention_head_dim": self.attention_head_dim,
            "norm_num_groups": min(16, min(self.block_out_channels)),
        }


class PoseEncoder(nn.Module):
    """Relative camera ``(B, 4)`` -> ``pose_tokens`` cross-attention tokens ``(B, T, D)``; ``null`` for the unconditional branch."""

    def __init__(self, config: NovelViewConfig) -> None:
        super().__init__()
        dim, tokens = config.cross_attention_dim, config.pose_tokens
        self.tokens, self.dim = tokens, dim
        self.mlp = nn.Sequential(nn.Linear(POSE_DIM, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, tokens * dim))
        self.null = nn.Parameter(torch.zeros(1, tokens, dim))

    def forward(self, pose: Tensor) -> Tensor:
        return self.mlp(pose).view(len(pose), self.tokens, self.dim)


class ImageEncoder(nn.Module):
    """Reference view ``(B, C, H, W)`` -> ``image_tokens**2`` cross-attention tokens ``(B, T, D)``."""

    def __init__(self, config: NovelViewConfig) -> None:
        super().__init__()
        side, dim = config.image_tokens, config.cross_attention_dim
        ratio = config.image_size // side if side >= 1 else 0
        if side < 1 or config.image_size % side or ratio & (ratio - 1):  # the encoder halves the image down to the grid
            raise ValueError(f"image_tokens: expected image_size {config.image_size} over a power of two, got {side}")
        width = min(config.block_out_channels)
        layers: list[nn.Module] = [nn.Conv2d(config.channels, width, 3, padding=1), nn.SiLU()]
        size, channels = config.image_size, width
        while size > side:  # halve the resolution down to the token grid
            out = dim if size // 2 == side else min(2 * channels, dim)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(math.gcd(8, out), out), nn.SiLU()]
            size, channels = size // 2, out
        if channels != dim:
            layers.append(nn.Conv2d(channels, dim, 1))
        self.net = nn.Sequential(*layers)
        self.position = nn.Parameter(torch.zeros(1, side * side, dim))

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image).flatten(2).transpose(1, 2) + self.position


class NovelViewModel(nn.Module):
    """The U-Net and its pose encoder, with the config that sizes them.

    Example::

        model = NovelViewModel.from_pretrained()            # the shipped weights
        eps = model(noisy, t, reference, pose)              # (B, 3, 32, 32) each; pose (B, 4)
        sample = model.sample(reference, pose, steps=50, generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, config: NovelViewConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else NovelViewConfig()
        self.unet = UNet2DConditionModel(**self.config.unet_config())
        self.unet.conditioning_encodes_camera = True  # its cross-attention tokens are the pose: Hash3D keys on the pose instead
        self.pose_encoder = PoseEncoder(self.config)
        self.image_encoder = ImageEncoder(self.config) if self.config.image_tokens > 0 else None
        self.metadata: dict[str, Any] = {}

    def noise_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(**self.config.scheduler)

    def conditioning(self, pose: Tensor, drop: Tensor | None = None, reference: Tensor | None = None) -> Tensor:
        """Cross-attention tokens: the pose's, or the null tokens where ``drop`` is true; then, with
        image tokens, the reference's (a zero image where ``drop`` is true, as the input channels get)."""
        tokens = self.pose_encoder(pose)
        if drop is not None:
            tokens = torch.where(drop[:, None, None], self.pose_encoder.null.expand_as(tokens), tokens)
        if self.image_encoder is None:
            return tokens
        if reference is None:
            raise ValueError("reference: this novel-view model also cross-attends to the reference view; pass it")
        return torch.cat([tokens, self.image_encoder(self.dropped(reference, drop))], dim=1)

    @staticmethod
    def dropped(reference: Tensor, drop: Tensor | None) -> Tensor:
        """The reference with the unconditional rows (``drop``) zeroed."""
        if drop is None:
            return reference
        return torch.where(drop[:, None, None, None], torch.zeros_like(reference), reference)

    def forward(self, noisy: Tensor, t: Tensor, reference: Tensor, pose: Tensor, drop: Tensor | None = None) -> Tensor:
        tokens = self.conditioning(pose, drop, reference)
        return self.unet(torch.cat([noisy, self.dropped(reference, drop)], dim=1), t, encoder_hidden_states=tokens).sample

    @torch.no_grad()
    def sample(
        self, reference: Tensor, pose: Tensor, steps: int = 50, guidance_scale: float = 3.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """A novel view by ``steps``-step DDIM with classifier-free guidance: ``(B, 3, H, W)``."""
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler(**self.config.scheduler, clip_sample=True)
        scheduler.set_timesteps(steps)
        b = len(reference)
        x = torch.randn(reference.shape, generator=generator)
        drop = torch.cat([torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)])
        for t in scheduler.timesteps:
            eps = self(torch.cat([x, x]), t.expand(2 * b), torch.cat([reference, reference]), torch.cat([pose, pose]), drop)
            uncond, cond = eps.chunk(2)
            x = scheduler.step(uncond + guidance_scale * (cond - uncond), t, x).prev_sample
        return x.clamp(-1.0, 1.0)

    def save(self, path: str | Path, half: bool = True) -> None:
        """Write the checkpoint atomically (float16 tensors by default: half the size, loaded back as float32)."""
        state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in self.state_dict().items()}
        payload = {"format": FORMAT, "config": asdict(self.config), "state_dict": state, "metadata": self.metadata}
        with atomic_write(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> NovelViewModel:
        """Load a checkpoint (default: the shipped weights), in eval mode with gradients off.

        Refuses, naming ``weights``: a missing file, a checkpoint of another model, and a state dict
        that does not fit the architecture its config describes."""
        path = Path(path).expanduser() if path is not None else DEFAULT_WEIGHTS
        if not path.is_file():
            hint = " (train it with: python scripts/train_novel_view.py)" if path == DEFAULT_WEIGHTS else ""
            raise FileNotFoundError(f"weights: no novel-view checkpoint at '{path}'{hint}")
        payload = load_torch_file(path, "weights")
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            found = payload.get("format", "no format tag") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"weights: '{path}' is not a novel-view checkpoint ({FORMAT}); found {found}")
        try:
            model = cls(NovelViewConfig.from_dict(payload["config"]))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"weights: '{path}' does not fit the novel-view architecture its config describes ({exc})") from None
        model.metadata = payload.get("metadata", {})
        return model.eval().requires_grad_(False)
