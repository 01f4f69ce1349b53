"""Sparse-structure (SS) flow transformer: velocities of the SS latent grid and the layout.

Token groups (a dict of ``[B, tokens, channels]`` tensors):

- ``shape``: the SS latent grid ``[B, C, R, R, R]`` flattened in C order
  (``meshgrid(indexing="ij")``: token ``i*R*R + j*R + k`` is voxel ``(i, j, k)``),
  ``R^3`` tokens of ``C`` channels. Inside the transformer they are patchified
  as TRELLIS and SAM 3D Objects do (``patch_size``, here ``ss_flow_patch``): each
  ``p^3`` block of latent voxels is one token of ``p^3 C`` channels, with absolute
  3D sinusoidal position embeddings on the ``(R/p)^3`` patch grid. Callers (the
  sampler, accelerators) only ever see the ``R^3`` latent tokens;
- ``rotation`` (6D, 6 channels), ``translation`` (3) and ``scale`` (3): one token
  each, a ``Linear`` in plus a learned embedding, merged into one ``layout`` stream
  as SAM 3D Objects does.

The two streams (``shape``, ``layout``) run through :class:`~accel3d.models.image_to_3d.mot.MoTBlock`
blocks: shape attends to shape only, layout to layout plus the detached shape keys/values.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from accel3d.models.image_to_3d.config import POSE_CHANNELS, ImageTo3DConfig
from accel3d.models.image_to_3d.layers import TimestepEmbedder, batch_times, grid_positions, sincos_embedding
from accel3d.models.image_to_3d.mot import MoTBlock

SS_TOKEN_GROUPS: dict[str, tuple[str, ...]] = {"shape": ("shape",), "layout": tuple(POSE_CHANNELS)}


def grid_to_tokens(latent: Tensor) -> Tensor:
    """``[B, C, R, R, R]`` -> ``[B, R^3, C]`` in C order (the ``shape`` token group)."""
    return latent.flatten(2).transpose(1, 2)


def patchify(latent: Tensor, patch: int) -> Tensor:
    """``[B, C, R, R, R]`` -> ``[B, (R/p)^3, p^3 C]``: patch tokens in C order over the patch grid."""
    b, c, r = latent.shape[:3]
    n = r // patch
    x = latent.reshape(b, c, n, patch, n, patch, n, patch)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, n**3, patch**3 * c)


def unpatchify(tokens: Tensor, patch: int, channels: int) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, (R/p)^3, p^3 C]`` -> ``[B, C, R, R, R]``."""
    b, count = tokens.shape[:2]
    n = round(count ** (1 / 3))
    x = tokens.reshape(b, n, n, n, patch, patch, patch, channels)
    return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, channels, n * patch, n * patch, n * patch)


def tokens_to_grid(tokens: Tensor, resolution: int) -> Tensor:
    """Inverse of :func:`grid_to_tokens`: ``[B, R^3, C]`` -> ``[B, C, R, R, R]``."""
    b, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, resolution, resolution, resolution)


class SSFlowTransformer(nn.Module):
    """Velocity ``v(x_t, t, cond)`` of the SS latent and the layout, a dict in, a dict out.

    ``t`` runs from 0 (noise) to 1 (data), a float or ``[B]``; ``cond`` is the
    condition encoder's tokens ``[B, N_c, cond_channels]`` (zeros for the
    unconditional pass of CFG).

    Example::

        config = ImageTo3DConfig(ss_flow_width=64, ss_flow_depth=2)
        model = SSFlowTransformer(config)
        x = {k: torch.randn(2, *shape) for k, shape in model.token_shapes.items()}
        v = model(x, torch.tensor([0.1, 0.1]), cond=torch.randn(2, 64, config.cond_channels))
        v["shape"].shape   # (2, 512, 8)
    """

    token_groups: dict[str, tuple[str, ...]] = SS_TOKEN_GROUPS

    def __init__(self, config: ImageTo3DConfig) -> None:
        super().__init__()
        self.config = config
        width = config.ss_flow_width
        patch_channels = config.ss_latent_channels * config.ss_flow_patch**3
        self.shape_in = nn.Linear(patch_channels, width)
        # fixed from the config, so not part of the checkpoint
        pos = sincos_embedding(grid_positions(config.ss_flow_patches, 3), width)
        self.register_buffer("shape_pos", pos[None], persistent=False)
        self.layout_in = nn.ModuleDict({k: nn.Linear(c, width) for k, c in POSE_CHANNELS.items()})
        self.layout_embed = nn.ParameterDict({k: nn.Parameter(0.02 * torch.randn(1, 1, width)) for k in POSE_CHANNELS})
        self.t_embed = TimestepEmbedder(width, config.time_scale)
        self.blocks = nn.ModuleList(
            MoTBlock(width, config.cond_channels, config.ss_flow_heads, tuple(self.token_groups), {"layout": ("shape",)}, config.mlp_ratio)
            for _ in range(config.ss_flow_depth)
        )
        self.out_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.shape_out = nn.Linear(width, patch_channels)
        self.layout_out = nn.ModuleDict({k: nn.Linear(width, c) for k, c in POSE_CHANNELS.items()})

    def zero_outputs(self) -> None:
        """Zero the output layers, so the velocity starts at 0 (how DiT-style flows begin training).

        Training calls this; a freshly built model keeps random outputs so that tests
        of random-weight models see velocities that depend on their inputs.
        """
        for layer in (self.shape_out, *self.layout_out.values()):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def token_shapes(self) -> dict[str, tuple[int, int]]:
        """``(tokens, channels)`` of each key of ``x``, in the order noise is drawn."""
        return {"shape": (self.config.ss_tokens, self.config.ss_latent_channels), **{k: (1, c) for k, c in POSE_CHANNELS.items()}}

    def check_inputs(self, x: Mapping[str, Tensor], cond: Tensor) -> int:
        """The batch size, or an error naming ``x`` or ``cond`` and the expected shapes."""
        if not isinstance(x, Mapping) or set(x) != set(self.token_shapes):
            got = sorted(x) if isinstance(x, Mapping) else type(x).__name__
            raise ValueError(f"x: expected a dict with keys {sorted(self.token_shapes)}, got {got}")
        batch = x["shape"].shape[0]
        for key, shape in self.token_shapes.items():
            if tuple(x[key].shape) != (batch, *shape):
                raise ValueError(f"x[{key!r}]: expected shape {(batch, *shape)}, got {tuple(x[key].shape)}")
        if cond.ndim != 3 or cond.shape[0] != batch or cond.shape[2] != self.config.cond_channels:
            raise ValueError(f"cond: expected [{batch}, tokens, {self.config.cond_channels}], got {tuple(cond.shape)}")
        return batch

    def forward(self, x: Mapping[str, Tensor], t: Tensor | float, cond: Tensor) -> dict[str, Tensor]:
        batch = self.check_inputs(x, cond)
        config = self.config
        temb = self.t_embed(batch_times(t, batch, cond.device))
        patches = patchify(tokens_to_grid(x["shape"], config.ss_latent_resolution), config.ss_flow_patch)
        h = {
            "shape": self.shape_in(patches) + self.shape_pos,
            "layout": torch.cat([self.layout_in[k](x[k]) + self.layout_embed[k] for k in POSE_CHANNELS], dim=1),
        }
        for block in self.blocks:
            h = block(h, temb, cond)
        shape = unpatchify(self.shape_out(self.out_norm(h["shape"])), config.ss_flow_patch, config.ss_latent_channels)
        out = {"shape": grid_to_tokens(shape)}
        layout = self.out_norm(h["layout"])
        for i, k in enumerate(POSE_CHANNELS):
            out[k] = self.layout_out[k](layout[:, i : i + 1])
        return out
