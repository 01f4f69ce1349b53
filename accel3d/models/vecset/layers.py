"""The vecset VAE's configuration and building blocks: Fourier embedding, attention blocks, the
geo decoder and the point-cloud encoder (Hunyuan3D-2 ShapeVAE parameter names), and farthest-point
sampling. :class:`~accel3d.models.vecset.vae.VecsetVAE` puts them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from accel3d.core.validate import check_bool, check_float, check_int


@dataclass
class VecsetVAEConfig:
    """Sizes of a :class:`VecsetVAE`. Hunyuan3D-2: ``num_latents=3072, embed_dim=64,
    width=1024, heads=16, num_decoder_layers=16``."""

    num_latents: int = 256
    embed_dim: int = 32
    width: int = 64
    heads: int = 4
    num_decoder_layers: int = 4
    num_encoder_layers: int = 1
    num_freqs: int = 8
    include_pi: bool = False
    qkv_bias: bool = True
    qk_norm: bool = True
    geo_decoder_mlp_expand_ratio: int = 4
    geo_decoder_ln_post: bool = True
    geo_decoder_downsample_ratio: int = 1  # the geo decoder runs at width / ratio (Hunyuan3D-2 turbo: 2)
    bounds: float = 1.01
    scale_factor: float = 1.0  # generators' latents are divided by this before decoding (Hunyuan3D-2: ~0.9991)

    def __post_init__(self) -> None:
        for f in fields(self):  # a checkpoint's config is data: check it like a knob
            value = getattr(self, f.name)
            if f.type == "bool":
                check_bool(f"VecsetVAEConfig.{f.name}", value)
            elif f.type == "int":
                check_int(f"VecsetVAEConfig.{f.name}", value, low=0 if f.name == "num_encoder_layers" else 1)
            else:
                check_float(f"VecsetVAEConfig.{f.name}", value, low=0.0, low_open=True, high=1e6)

    @classmethod
    def from_dict(cls, data: dict) -> VecsetVAEConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"VecsetVAEConfig: unknown keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**data)


class FourierEmbedder(nn.Module):
    """``[x, sin(x f_k), cos(x f_k)]`` with ``f_k = 2^k`` (times pi if ``include_pi``)."""

    def __init__(self, num_freqs: int = 8, include_pi: bool = False) -> None:
        super().__init__()
        freqs = 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        if include_pi:
            freqs = freqs * math.pi
        self.register_buffer("frequencies", freqs, persistent=False)
        self.out_dim = 3 * (2 * num_freqs + 1)

    def forward(self, x: Tensor) -> Tensor:
        embed = (x[..., None] * self.frequencies).flatten(-2)
        return torch.cat([x, embed.sin(), embed.cos()], dim=-1)


class MLP(nn.Module):
    def __init__(self, width: int, expand_ratio: int = 4) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, width * expand_ratio)
        self.c_proj = nn.Linear(width * expand_ratio, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class QKNorm(nn.Module):
    """Per-head LayerNorm of queries and keys (identity when ``qk_norm`` is off)."""

    def __init__(self, head_dim: int, enabled: bool) -> None:
        super().__init__()
        make = (lambda: nn.LayerNorm(head_dim, eps=1e-6)) if enabled else nn.Identity
        self.q_norm = make()
        self.k_norm = make()


def _split_heads(x: Tensor, heads: int, parts: int) -> tuple[Tensor, ...]:
    """(B, N, heads*parts*d) laid out per head as [part0, part1, ...] -> parts x (B, H, N, d)."""
    b, n, _ = x.shape
    x = x.view(b, n, heads, -1).transpose(1, 2)
    return x.chunk(parts, dim=-1)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        self.attention = QKNorm(width // heads, qk_norm)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = _split_heads(self.c_qkv(x), self.heads, 3)
        q, k = self.attention.q_norm(q), self.attention.k_norm(k)
        return self.c_proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = SelfAttention(width, heads, qkv_bias, qk_norm)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = MLP(width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, qkv_bias, qk_norm) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class CrossAttention(nn.Module):
    """Queries attend to a data sequence. Keys/values can be precomputed once per
    shape with :meth:`keys_values`, because they do not depend on the queries."""

    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.heads = heads
        self.c_q = nn.Linear(width, width, bias=qkv_bias)
        self.c_kv = nn.Linear(width, 2 * width, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        self.attention = QKNorm(width // heads, qk_norm)

    def keys_values(self, data: Tensor) -> tuple[Tensor, Tensor]:
        k, v = _split_heads(self.c_kv(data), self.heads, 2)
        return self.attention.k_norm(k), v

    def queries(self, x: Tensor) -> Tensor:
        (q,) = _split_heads(self.c_q(x), self.heads, 1)
        return self.attention.q_norm(q)

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """(B, H, Nq, d) x (B, H, Nk, d) -> (B, H, Nq, d); accelerators replace this on the instance."""
        return F.scaled_dot_product_attention(q, k, v)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        return self.c_proj(_merge_heads(self.attend(self.queries(x), *kv)))


class ResidualCrossAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.attn = CrossAttention(width, heads, qkv_bias, qk_norm)
        self.ln_3 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = MLP(width, mlp_ratio)

    def keys_values(self, data: Tensor) -> tuple[Tensor, Tensor]:
        return self.attn.keys_values(self.ln_2(data))

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp(self.ln_3(x))


class CrossAttentionDecoder(nn.Module):
    """Geo decoder: Fourier-embedded query points cross-attend to the latent tokens.

    With ``geo_decoder_downsample_ratio`` r > 1 (Hunyuan3D-2 turbo) it runs at width/r with
    heads/r, and ``latents_proj`` maps the tokens down to that width first.
    """

    def __init__(self, cfg: VecsetVAEConfig, fourier: FourierEmbedder) -> None:
        super().__init__()
        ratio = cfg.geo_decoder_downsample_ratio
        if ratio < 1 or cfg.width % ratio or cfg.heads % ratio:
            raise ValueError(f"geo_decoder_downsample_ratio={ratio} must divide width={cfg.width} and heads={cfg.heads}")
        w = cfg.width // ratio
        self.fourier_embedder = fourier
        self.query_proj = nn.Linear(fourier.out_dim, w)
        if ratio != 1:
            self.latents_proj = nn.Linear(cfg.width, w)
        # As in Hunyuan3D-2: a decoder without ln_post (the turbo VAE) has no qk-norm in its cross-attention.
        qk_norm = cfg.qk_norm and cfg.geo_decoder_ln_post
        self.cross_attn_decoder = ResidualCrossAttentionBlock(
            w, cfg.heads // ratio, cfg.qkv_bias, qk_norm, cfg.geo_decoder_mlp_expand_ratio
        )
        self.ln_post = nn.LayerNorm(w) if cfg.geo_decoder_ln_post else nn.Identity()
        self.output_proj = nn.Linear(w, 1)

    def keys_values(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys/values of the decoded tokens; compute once per shape."""
        if hasattr(self, "latents_proj"):
            latents = self.latents_proj(latents)
        return self.cross_attn_decoder.keys_values(latents)

    def query(self, points: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        """Field at ``points`` (B, Q, 3) given precomputed keys/values -> (B, Q)."""
        x = self.query_proj(self.fourier_embedder(points))
        x = self.cross_attn_decoder(x, kv)
        return self.output_proj(self.ln_post(x)).squeeze(-1)

    def forward(self, points: Tensor, latents: Tensor) -> Tensor:
        return self.query(points, self.keys_values(latents))


class PointCloudEncoder(nn.Module):
    """Perceiver over surface points and normals; latent queries are FPS samples."""

    def __init__(self, cfg: VecsetVAEConfig, fourier: FourierEmbedder) -> None:
        super().__init__()
        w = cfg.width
        self.num_latents = cfg.num_latents
        self.fourier_embedder = fourier
        self.input_proj = nn.Linear(fourier.out_dim + 3, w)
        self.cross_attn = ResidualCrossAttentionBlock(w, cfg.heads, cfg.qkv_bias, cfg.qk_norm)
        self.self_attn = Transformer(w, cfg.num_encoder_layers, cfg.heads, cfg.qkv_bias, cfg.qk_norm)
        self.ln_post = nn.LayerNorm(w)
        self.to_moments = nn.Linear(w, 2 * cfg.embed_dim)
        # Start with a near-deterministic posterior (std ~ 0.007): with unit noise at init the
        # latents carry no shape information and training stalls at the average shape.
        nn.init.constant_(self.to_moments.bias[cfg.embed_dim :], -10.0)

    def forward(self, points: Tensor, normals: Tensor) -> tuple[Tensor, Tensor]:
        data = self.input_proj(torch.cat([self.fourier_embedder(points), normals], dim=-1))
        idx = farthest_point_sample(points, self.num_latents)
        queries = torch.gather(data, 1, idx[..., None].expand(-1, -1, data.shape[-1]))
        x = self.cross_attn(queries, self.cross_attn.keys_values(data))
        x = self.ln_post(self.self_attn(x))
        mean, logvar = self.to_moments(x).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)


@torch.no_grad()
def farthest_point_sample(points: Tensor, k: int) -> Tensor:
    """Indices (B, k) of a farthest-point subset of ``points`` (B, P, 3), starting at index 0."""
    b, p, _ = points.shape
    if k > p:
        raise ValueError(f"farthest_point_sample: k={k} exceeds the number of points {p}")
    idx = torch.zeros(b, k, dtype=torch.long, device=points.device)
    dist = torch.full((b, p), float("inf"), device=points.device)
    rows = torch.arange(b, device=points.device)
    for i in range(1, k):
        last = points[rows, idx[:, i - 1]]
        dist = torch.minimum(dist, (points - last[:, None]).square().sum(-1))
        idx[:, i] = dist.argmax(-1)
    return idx
