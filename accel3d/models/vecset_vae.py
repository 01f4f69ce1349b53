"""Reference vecset shape VAE in the Hunyuan3D-2 ShapeVAE architecture.

The decoder half follows Hunyuan3D-2's ``ShapeVAE`` (``post_kl`` -> self-attention
stack -> one cross-attention geo decoder over Fourier-embedded query points) and
uses the same parameter names, so its checkpoints map onto this module. The
encoder is accel3d's own: a point-cloud perceiver whose latent queries are
farthest-point samples of the input surface (point-anchored queries), which keeps
the decoder's attention spatially local.

The field is positive inside the shape. The shipped weights were trained by
``scripts/train_vecset.py`` to regress a truncated SDF scaled to [-1, 1].

This module holds :class:`VecsetVAE`; its config and layers live in
:mod:`accel3d.models.vecset_layers`, its checkpoint files in
:mod:`accel3d.models.vecset_checkpoint`, all importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from accel3d.models.vecset_checkpoint import DEFAULT_WEIGHTS, read_checkpoint, save_checkpoint
from accel3d.models.vecset_layers import (
    MLP,
    CrossAttention,
    CrossAttentionDecoder,
    FourierEmbedder,
    PointCloudEncoder,
    QKNorm,
    ResidualAttentionBlock,
    ResidualCrossAttentionBlock,
    SelfAttention,
    Transformer,
    VecsetVAEConfig,
    farthest_point_sample,
)

__all__ = [  # the config and layers live in vecset_layers, checkpoint files in vecset_checkpoint; re-exported here
    "DEFAULT_WEIGHTS",
    "MLP",
    "CrossAttention",
    "CrossAttentionDecoder",
    "FourierEmbedder",
    "PointCloudEncoder",
    "QKNorm",
    "ResidualAttentionBlock",
    "ResidualCrossAttentionBlock",
    "SelfAttention",
    "Transformer",
    "VecsetVAE",
    "VecsetVAEConfig",
    "farthest_point_sample",
]


class VecsetVAE(nn.Module):
    """Vecset shape VAE: surface point cloud -> latent tokens -> field ``f(points)``.

    Example::

        vae = VecsetVAE.from_pretrained()            # shipped reference weights
        latents = vae.encode(points, normals)        # (1, N, embed_dim)
        field = vae.field(latents)                   # f(points[N, 3]) -> values[N]
        values = field(torch.zeros(4, 3))            # positive inside
    """

    def __init__(self, config: VecsetVAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or VecsetVAEConfig()
        if cfg.width % cfg.heads:
            raise ValueError(f"VecsetVAEConfig: width={cfg.width} must be divisible by heads={cfg.heads}")
        fourier = FourierEmbedder(cfg.num_freqs, cfg.include_pi)
        self.encoder = PointCloudEncoder(cfg, fourier)
        self.post_kl = nn.Linear(cfg.embed_dim, cfg.width)
        self.transformer = Transformer(cfg.width, cfg.num_decoder_layers, cfg.heads, cfg.qkv_bias, cfg.qk_norm)
        self.geo_decoder = CrossAttentionDecoder(cfg, fourier)
        self.has_encoder = True  # False for decoder-only checkpoints (Hunyuan3D-2 ShapeVAE)

    @property
    def bounds(self) -> float:
        return self.config.bounds

    def encode(self, points: Tensor, normals: Tensor, sample: bool = False) -> Tensor:
        """Surface ``points``/``normals`` (B, P, 3) -> latents (B, num_latents, embed_dim)."""
        if points.ndim != 3 or points.shape[-1] != 3 or normals.shape != points.shape:
            raise ValueError(
                f"VecsetVAE.encode: points and normals must both be (B, P, 3); got {tuple(points.shape)} and {tuple(normals.shape)}"
            )
        if not self.has_encoder:
            raise RuntimeError("VecsetVAE.encode: these weights have no encoder (a decoder-only checkpoint); decode latents instead")
        mean, logvar = self.encoder(points, normals)
        if sample:
            return mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return mean

    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> decoded tokens the geo decoder attends to (B, N, width)."""
        return self.transformer(self.post_kl(latents))

    def forward(self, points: Tensor, normals: Tensor, queries: Tensor) -> Tensor:
        return self.geo_decoder(queries, self.decode(self.encode(points, normals)))

    @torch.no_grad()
    def field(self, latents: Tensor) -> Callable[[Tensor], Tensor]:
        """A query function ``f(points[N, 3]) -> values[N]`` for one shape.

        The decoded tokens and their cross-attention keys/values are computed once
        here, not per query chunk.
        """
        if latents.ndim == 2:
            latents = latents[None]
        if latents.shape[0] != 1:
            raise ValueError(f"VecsetVAE.field: expected latents for one shape, got batch {latents.shape[0]}")
        kv = self.geo_decoder.keys_values(self.decode(latents))
        param = next(self.parameters())

        @torch.inference_mode()
        def query(points: Tensor) -> Tensor:
            pts = points.to(device=param.device, dtype=param.dtype)[None]
            return self.geo_decoder.query(pts, kv)[0].to(points.dtype)

        return query

    # ---- persistence -------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """Write ``{"config", "state_dict", "metadata"}`` to ``path`` atomically."""
        save_checkpoint(self, path, metadata)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, map_location: str = "cpu") -> VecsetVAE:
        """Load an accel3d checkpoint: a ``.pt`` file or a directory holding ``model.pt`` (default:
        the shipped weights). For Hunyuan3D-2 folders use :func:`accel3d.models.load_vae`."""
        return read_checkpoint(cls, path, map_location)

    def describe(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"VecsetVAE({json.dumps(asdict(self.config))}, params={n:,})"
