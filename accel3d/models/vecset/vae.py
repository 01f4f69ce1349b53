"""Reference vecset shape VAE in the Hunyuan3D-2 ShapeVAE architecture.

The decoder half follows Hunyuan3D-2's ``ShapeVAE`` (``post_kl`` -> self-attention
stack -> one cross-attention geo decoder over Fourier-embedded query points) and
uses the same parameter names, so its checkpoints map onto this module. The
encoder is accel3d's own: a point-cloud perceiver whose latent queries are
farthest-point samples of the input surface (point-anchored queries), which keeps
the decoder's attention spatially local.

The field is positive inside the shape. The shipped weights were trained by
``scripts/train_vecset.py`` to regress a truncated SDF scaled to [-1, 1].

This module holds :class:`VecsetVAE` and its own checkpoint files (``{"config", "state_dict",
"metadata"}``, written by :meth:`VecsetVAE.save`, read by :meth:`VecsetVAE.from_pretrained`); its
config and layers live in :mod:`accel3d.models.vecset.layers`, importable from here. Weights of any
format (Hunyuan3D-2 releases too) load through :func:`accel3d.models.vecset.checkpoint.load_vae`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from accel3d.core.io import atomic_write, load_torch_file
from accel3d.models.vecset.layers import (
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

__all__ = [  # the config and layers live in layers.py; re-exported here
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

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "vecset_small.pt"


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
        payload = {"config": asdict(self.config), "state_dict": self.state_dict(), "metadata": metadata or {}}
        with atomic_write(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, map_location: str = "cpu") -> VecsetVAE:
        """Load an accel3d checkpoint: a ``.pt`` file or a directory holding ``model.pt`` (default:
        the shipped weights), checked, moved to ``map_location`` and in eval mode. For Hunyuan3D-2
        folders use :func:`accel3d.models.load_vae`."""
        if path is not None and (not isinstance(path, str | Path) or not str(path)):
            raise ValueError(f"weights: expected None (the shipped weights) or a path, got {path!r}")
        path = Path(path).expanduser() if path is not None else DEFAULT_WEIGHTS
        try:
            torch.device(map_location)
        except (RuntimeError, TypeError):
            raise ValueError(f"map_location: expected a device such as 'cpu' or 'cuda:0', got {map_location!r}") from None
        if path.is_dir() and (path / "config.yaml").is_file() and not (path / "model.pt").is_file():
            raise ValueError(f"weights: '{path}' looks like a Hunyuan3D-2 VAE folder; load it with accel3d.models.load_vae(path)")
        if path.is_dir():
            path = path / "model.pt"
        if not path.is_file():
            raise FileNotFoundError(f"weights: no weights file at '{path}'")
        payload = load_torch_file(path, "weights")  # onto the CPU; moved to map_location once checked
        if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
            raise ValueError(f"weights: '{path}' is not an accel3d VecsetVAE checkpoint (expected a dict with 'config' and 'state_dict')")
        try:
            model = cls(VecsetVAEConfig.from_dict(payload["config"]))
            model.load_state_dict(payload["state_dict"])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"weights: '{path}' does not hold a loadable VecsetVAE ({exc})") from None
        bad = [k for k, v in payload["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise ValueError(f"weights: '{path}' has NaN or inf in {len(bad)} tensors, first {bad[0]}")
        model.metadata = payload.get("metadata", {})
        return model.to(map_location).eval()

    def describe(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"VecsetVAE({json.dumps(asdict(self.config))}, params={n:,})"
