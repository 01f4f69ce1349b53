"""``accel3d bench decoding --subjects local``: adaptive KV on a decoder whose attention is local by construction.

The shipped VAE's attention is diffuse, so selecting keys cannot save anything there. This measures
what the selection itself costs and saves where attention *is* local, as FlashVDM reports for
Hunyuan3D-2: a cross-attention of Hunyuan3D-2's size (3,072 latent tokens, 16 heads of 64) at random
init, whose tokens sit at random positions in the box and whose logits carry a distance bias
``-beta |x - p|^2`` on top of the random projections. It measures **speed only**: the field it
decodes is not a shape. Reported: the median time of ``query`` over ``--local-points`` points for
dense attention and each adaptive KV mode, the keys per query, and the attention output's relative
error against dense.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from torch import nn

from accel3d.bench.stacks import kv_config
from accel3d.decoding.accelerator import AdaptiveKVSelection
from accel3d.geometry.grid import DEFAULT_BOUND


class LocalAttention(nn.Module):
    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return nn.functional.scaled_dot_product_attention(q, k, v)


class LocalGeoDecoder(nn.Module):
    """A geo decoder (``query(points, kv)``, attention at ``cross_attn_decoder.attn``) with local attention.

    Example::

        decoder = LocalGeoDecoder()
        features = decoder.query(points[None], decoder.keys_values())   # (1, N, 1024)
    """

    def __init__(self, tokens: int = 3072, heads: int = 16, head_dim: int = 64, beta: float = 60.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.heads, self.head_dim, self.beta = heads, head_dim, beta
        self.positions = (torch.rand(tokens, 3, generator=g) * 2 - 1) * 0.9
        self.q_proj = torch.randn(3, heads * (head_dim - 4), generator=g) * 0.1
        self.k_rand = torch.randn(heads, tokens, head_dim - 4, generator=g) * 0.1
        self.values = torch.randn(heads, tokens, head_dim, generator=g)
        self.cross_attn_decoder = nn.Module()
        self.cross_attn_decoder.attn = LocalAttention()

    def keys_values(self) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.positions
        scale = self.head_dim**0.5  # SDPA divides the logits by sqrt(d): undo it for the bias
        lift = torch.cat([p, -self.beta * p.square().sum(-1, keepdim=True)], -1) * scale**0.5
        k = torch.cat([self.k_rand, lift.expand(self.heads, -1, -1)], -1)
        return k[None], self.values[None]

    def query(self, points: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, _ = points.shape
        rand = (points @ self.q_proj).view(b, n, self.heads, -1).transpose(1, 2)
        scale = self.head_dim**0.5
        lift = torch.cat([2 * self.beta * points, torch.ones_like(points[..., :1])], -1) * scale**0.5
        q = torch.cat([rand, lift[:, None].expand(-1, self.heads, -1, -1)], -1)
        out = self.cross_attn_decoder.attn.attend(q, kv[0], kv[1])  # (B, H, N, d)
        return out.transpose(1, 2).reshape(b, n, -1)  # the attention output itself (B, N, H d): what the error is taken on


def _timed(decoder: LocalGeoDecoder, points: torch.Tensor, kv: Any, repeats: int) -> tuple[list[float], torch.Tensor]:
    times, out = [], None
    for _ in range(1 + repeats):  # the first is the warm-up
        start = time.perf_counter()
        with torch.inference_mode():
            out = decoder.query(points, kv)
        times.append(time.perf_counter() - start)
    return times[1:], out


def run_local(args: argparse.Namespace) -> dict[str, Any]:
    """Dense vs each adaptive KV mode on :class:`LocalGeoDecoder`; prints and returns the figures."""
    decoder = LocalGeoDecoder()
    kv = decoder.keys_values()
    g = torch.Generator().manual_seed(0)
    points = (torch.rand(1, args.local_points, 3, generator=g) * 2 - 1) * DEFAULT_BOUND
    dense_times, dense_out = _timed(decoder, points, kv, args.repeats)
    rows = {"dense": {"seconds": statistics.median(dense_times), "keys_per_query": float(kv[0].shape[2]), "relative_error": 0.0}}
    for mode in args.kv_modes:
        acc = AdaptiveKVSelection(kv_config(mode, args).replace(backend="torch"))  # the mode's stack, on the CPU
        with acc.applied(decoder):
            times, out = _timed(decoder, points, kv, args.repeats)
        stats = acc.stats()
        rows[mode] = {
            "seconds": statistics.median(times),
            "keys_per_query": stats.get("keys_per_query"),
            "relative_error": float((out - dense_out).norm() / dense_out.norm()),
            "fallback_cell_share": stats.get("fallback_cell_share"),
        }
    print(f"\nlocal-attention decoder (speed only: 3,072 tokens, 16 heads of 64, a distance bias; {args.local_points} points)")
    for name, r in rows.items():
        ratio = rows["dense"]["seconds"] / r["seconds"]
        keys, error = r["keys_per_query"], r["relative_error"]
        print(f"  {name:<8}{r['seconds']:>8.3f} s {ratio:6.2f}x  keys/query {keys:>7.1f}  output error {error:.2e}")
    return {"subject": "local", "points": args.local_points, "methods": rows}
