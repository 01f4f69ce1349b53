"""Building blocks shared by the image-to-3D transformers: sinusoidal position and time
embeddings, multi-head attention with qk RMS-norm (``F.scaled_dot_product_attention``,
so no attention library is needed), cross-attention to condition tokens, MLPs, and
the adaLN-modulated block of the SLaT flow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sincos_embedding(positions: Tensor, channels: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of ``D``-dimensional positions ``[..., D]`` into ``[..., channels]``.

    Each axis gets ``channels // D`` channels rounded down to an even number (half sine,
    half cosine over log-spaced frequencies); the remainder is zero padding, so any
    width works.

    Example::

        coords = torch.tensor([[0, 0, 0], [3, 1, 2]])
        sincos_embedding(coords, 96).shape   # (2, 96)
    """
    positions = positions.float()
    dims = positions.shape[-1]
    half = channels // dims // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device) / max(half, 1))
    angles = positions[..., None] * freqs  # [..., D, half]
    embed = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # [..., D * 2 * half]
    return F.pad(embed, (0, channels - embed.shape[-1]))


def grid_positions(resolution: int, dims: int) -> Tensor:
    """Integer coordinates of a ``resolution^dims`` grid in C order (``meshgrid(indexing="ij")``), ``[R^dims, dims]``."""
    axis = torch.arange(resolution)
    return torch.stack(torch.meshgrid(*([axis] * dims), indexing="ij"), dim=-1).reshape(-1, dims)


class TimestepEmbedder(nn.Module):
    """``t`` in [0, 1] -> ``[B, width]``: sinusoids of ``t * time_scale`` through a two-layer MLP.

    Example::

        embed = TimestepEmbedder(128)
        embed(torch.tensor([0.0, 0.5])).shape   # (2, 128)
    """

    def __init__(self, width: int, time_scale: float = 1000.0, frequency_channels: int = 256) -> None:
        super().__init__()
        self.time_scale = time_scale
        self.frequency_channels = frequency_channels
        self.mlp = nn.Sequential(nn.Linear(frequency_channels, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sincos_embedding(t.reshape(-1, 1) * self.time_scale, self.frequency_channels))


def batch_times(t: Tensor | float, batch: int, device: torch.device) -> Tensor:
    """``t`` (a float, a 0-d tensor or ``[B]``) as a float tensor of shape ``[B]``."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1)
    return t.expand(batch) if t.numel() == 1 else t


class QKV(nn.Module):
    """One stream's query/key/value projection with per-head RMS-norm of q and k; returns ``[B, H, N, d]`` each.

    Example::

        q, k, v = QKV(64, heads=4)(torch.randn(2, 10, 64))   # each (2, 4, 10, 16)
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = nn.RMSNorm(width // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(width // heads, eps=1e-6)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # sizes explicit: n may be 0
        return self.q_norm(q), self.k_norm(k), v


def attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
    """Full attention ``[B, H, Nq, d] x [B, H, Nk, d] -> [B, Nq, H*d]``; ``key_mask`` ``[B, Nk]`` marks real keys."""
    mask = None
    if key_mask is not None:
        # an object with no real key would make a row of -inf (NaN); let it attend to its padding instead
        key_mask = key_mask | ~key_mask.any(dim=1, keepdim=True)
        mask = key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention with qk RMS-norm and an optional key mask (padded token batches).

    Example::

        y = SelfAttention(64, heads=4)(torch.randn(2, 10, 64), key_mask=torch.ones(2, 10, dtype=torch.bool))
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.qkv = QKV(width, heads)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        return self.proj(attention(*self.qkv(x), key_mask))


class CrossAttention(nn.Module):
    """Queries from the tokens, keys/values from the condition tokens ``[B, Nc, cond_channels]``.

    Example::

        y = CrossAttention(64, cond_channels=32, heads=4)(torch.randn(2, 10, 64), torch.randn(2, 16, 32))
    """

    def __init__(self, width: int, cond_channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(cond_channels, 2 * width)
        self.q_norm = nn.RMSNorm(width // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(width // heads, eps=1e-6)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        k, v = self.kv(cond).view(b, cond.shape[1], 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(attention(self.q_norm(q), self.k_norm(k), v))


class MLP(nn.Module):
    """``Linear -> GELU (tanh) -> Linear`` with a hidden width of ``ratio * width``.

    Example::

        y = MLP(64, ratio=4)(torch.randn(2, 10, 64))
    """

    def __init__(self, width: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width * ratio)
        self.fc2 = nn.Linear(width * ratio, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-sample ``[B, C]`` shift and scale."""
    return x * (1 + scale[:, None]) + shift[:, None]


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP over padded sparse tokens (the SLaT encoder and decoder).

    Example::

        block = TransformerBlock(64, heads=4)
        y = block(torch.randn(2, 10, 64), key_mask=torch.ones(2, 10, dtype=torch.bool))
    """

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.mlp(self.norm2(x))


class ModulatedCrossBlock(nn.Module):
    """adaLN-modulated self-attention, cross-attention to the condition, MLP (TRELLIS/SAM3D's flow block).

    The time embedding sets shift/scale/gate of the self-attention and the MLP; the
    cross-attention's norm is a plain affine LayerNorm, as in TRELLIS.

    Example::

        block = ModulatedCrossBlock(64, cond_channels=32, heads=4)
        y = block(torch.randn(2, 10, 64), temb=torch.randn(2, 64), cond=torch.randn(2, 16, 32))
    """

    def __init__(self, width: int, cond_channels: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.cross = CrossAttention(width, cond_channels, heads)
        self.norm3 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(width, mlp_ratio)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: Tensor, temb: Tensor, cond: Tensor, key_mask: Tensor | None = None) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(temb).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), key_mask)
        x = x + self.cross(self.norm2(x), cond)
        return x + gate2[:, None] * self.mlp(modulate(self.norm3(x), shift2, scale2))


def pad_tokens(tokens: list[Tensor]) -> tuple[Tensor, Tensor]:
    """A list of ``[N_i, C]`` tensors -> padded ``[B, max N_i, C]`` and a mask ``[B, max N_i]`` (True = real).

    Example::

        x, mask = pad_tokens([torch.randn(3, 8), torch.randn(5, 8)])   # x: (2, 5, 8)
    """
    if not tokens:
        raise ValueError("tokens: expected at least one object's tokens, got an empty list")
    n = max(len(t) for t in tokens)
    out = tokens[0].new_zeros((len(tokens), n, *tokens[0].shape[1:]))
    mask = torch.zeros(len(tokens), n, dtype=torch.bool, device=tokens[0].device)
    for i, t in enumerate(tokens):
        out[i, : len(t)] = t
        mask[i, : len(t)] = True
    return out, mask


def unpad_tokens(x: Tensor, mask: Tensor) -> list[Tensor]:
    """Inverse of :func:`pad_tokens`: the real tokens of each object."""
    return [x[i, mask[i]] for i in range(len(x))]
