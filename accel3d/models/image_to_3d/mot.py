"""Mixture-of-transformers (MoT) block: several token streams, each with its own weights,
sharing one adaLN modulation from the time embedding (SAM 3D Objects' SS flow block).

Who attends to whom is declared, not hard-coded: ``reads={"layout": ("shape",)}``
means the layout stream's queries see the layout keys/values plus the shape
stream's, **detached**, so a loss on the layout never trains the shape stream
through attention, and the shape stream (reading no other stream) is unaffected
by the layout inputs. That asymmetry is what lets SAM3D train the layout on top
of a shape model and what step-caching accelerators rely on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from accel3d.models.image_to_3d.layers import MLP, QKV, CrossAttention, attention, modulate


class MoTBlock(nn.Module):
    """One block over token streams ``{name: [B, N_name, width]}``.

    Per stream: modulated LayerNorm -> self-attention (its own QKV with qk RMS-norm,
    over its own tokens plus the detached keys/values of the streams it reads) ->
    affine LayerNorm -> cross-attention to the condition tokens -> modulated
    LayerNorm -> MLP. The shift/scale/gate come from one ``Linear(temb)`` shared by
    all streams.

    Example::

        block = MoTBlock(64, cond_channels=32, heads=4, streams=("shape", "layout"),
                         reads={"layout": ("shape",)})
        h = {"shape": torch.randn(2, 512, 64), "layout": torch.randn(2, 3, 64)}
        out = block(h, temb=torch.randn(2, 64), cond=torch.randn(2, 64, 32))
    """

    def __init__(
        self,
        width: int,
        cond_channels: int,
        heads: int,
        streams: Sequence[str],
        reads: Mapping[str, Sequence[str]] | None = None,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        self.streams = tuple(streams)
        self.reads = {s: tuple((reads or {}).get(s, ())) for s in self.streams}
        for s, others in self.reads.items():
            unknown = [o for o in others if o not in self.streams or o == s]
            if unknown:
                raise ValueError(f"reads: stream {s!r} reads {unknown}, expected other streams among {self.streams}")
        norm = lambda affine: nn.ModuleDict({s: nn.LayerNorm(width, elementwise_affine=affine, eps=1e-6) for s in self.streams})
        self.norm1, self.norm2, self.norm3 = norm(False), norm(True), norm(False)
        self.qkv = nn.ModuleDict({s: QKV(width, heads) for s in self.streams})
        self.proj = nn.ModuleDict({s: nn.Linear(width, width) for s in self.streams})
        self.cross = nn.ModuleDict({s: CrossAttention(width, cond_channels, heads) for s in self.streams})
        self.mlp = nn.ModuleDict({s: MLP(width, mlp_ratio) for s in self.streams})
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))  # shared by every stream

    def forward(self, h: Mapping[str, Tensor], temb: Tensor, cond: Tensor) -> dict[str, Tensor]:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(temb).chunk(6, dim=-1)
        qkv = {s: self.qkv[s](modulate(self.norm1[s](h[s]), shift1, scale1)) for s in self.streams}
        out = {}
        for s in self.streams:
            q, k, v = qkv[s]
            if self.reads[s]:
                # detached: gradients from this stream's loss stop at the other streams' keys and values
                k = torch.cat([k, *(qkv[o][1].detach() for o in self.reads[s])], dim=2)
                v = torch.cat([v, *(qkv[o][2].detach() for o in self.reads[s])], dim=2)
            x = h[s] + gate1[:, None] * self.proj[s](attention(q, k, v))
            x = x + self.cross[s](self.norm2[s](x), cond)
            out[s] = x + gate2[:, None] * self.mlp[s](modulate(self.norm3[s](x), shift2, scale2))
        return out
