"""SLaT flow transformer: velocities of the structured latent, one token per occupied voxel.

Full self-attention over one object's tokens (a padded batch with a key mask),
cross-attention to the same condition tokens as the SS flow, adaLN from the time
embedding, 3D sinusoidal embeddings of the integer voxel coordinates. TRELLIS/SAM3D
wrap this in sparse-conv down/up-sampling and windowed attention; at a 32^3
structure full attention over a few thousand tokens is affordable and needs no
sparse library.
"""

from __future__ import annotations

from torch import Tensor, nn

from accel3d.models.image_to_3d.config import ImageTo3DConfig
from accel3d.models.image_to_3d.layers import ModulatedCrossBlock, TimestepEmbedder, batch_times, sincos_embedding
from accel3d.models.image_to_3d.slat import check_sparse_inputs

# x is one tensor; an empty tuple names the whole tensor (see sampler.group_tensors)
SLAT_TOKEN_GROUPS: dict[str, tuple[str, ...]] = {"slat": ()}


class SLaTFlowTransformer(nn.Module):
    """Velocity ``v(x_t, t, cond; coords, mask)`` of SLaT tokens ``[B, N, slat_channels]``.

    ``coords`` ``[B, N, 3]`` are the tokens' voxel coordinates (integers in
    ``[0, structure_resolution)``), ``mask`` ``[B, N]`` marks real tokens (None: all);
    padded tokens get a zero velocity.

    Example::

        config = ImageTo3DConfig(slat_flow_width=64, slat_flow_depth=2)
        model = SLaTFlowTransformer(config)
        coords = torch.randint(0, 32, (1, 500, 3))
        v = model(torch.randn(1, 500, 8), 0.3, torch.randn(1, 64, config.cond_channels), coords=coords)
    """

    token_groups: dict[str, tuple[str, ...]] = SLAT_TOKEN_GROUPS

    def __init__(self, config: ImageTo3DConfig) -> None:
        super().__init__()
        self.config = config
        width = config.slat_flow_width
        self.input = nn.Linear(config.slat_channels, width)
        self.t_embed = TimestepEmbedder(width, config.time_scale)
        heads, depth = config.slat_flow_heads, config.slat_flow_depth
        self.blocks = nn.ModuleList(ModulatedCrossBlock(width, config.cond_channels, heads, config.mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.output = nn.Linear(width, config.slat_channels)

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor, coords: Tensor, mask: Tensor | None = None) -> Tensor:
        cfg = self.config
        mask = check_sparse_inputs(x, coords, mask, cfg.slat_channels, cfg.structure_resolution)
        if cond.ndim != 3 or cond.shape[0] != x.shape[0] or cond.shape[2] != cfg.cond_channels:
            raise ValueError(f"cond: expected [{x.shape[0]}, tokens, {cfg.cond_channels}], got {tuple(cond.shape)}")
        temb = self.t_embed(batch_times(t, x.shape[0], x.device))
        h = self.input(x) + sincos_embedding(coords, cfg.slat_flow_width)
        for block in self.blocks:
            h = block(h, temb, cond, mask)
        return self.output(self.norm(h)) * mask[..., None]
