"""Condition encoder: the object's RGB crop and mask -> condition tokens for cross-attention.

SAM 3D Objects conditions on DINOv2 tokens of the crop (and of the mask); here a
small convolutional patch encoder plays that role so that everything trains and
runs on a CPU: ``image_size`` px -> ``cond_grid^2`` tokens with a 2D sinusoidal
position embedding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accel3d.models.image_to_3d.config import ImageTo3DConfig
from accel3d.models.image_to_3d.layers import grid_positions, sincos_embedding


class ConditionEncoder(nn.Module):
    """``image [B, 3, S, S]`` in [0, 1] and ``mask [B, 1, S, S]`` in {0, 1} -> ``[B, cond_grid^2, cond_channels]``.

    Tokens are in C order over the ``cond_grid x cond_grid`` patches (row, column).
    The all-zeros tensor of the same shape is the "no condition" input of CFG.

    Example::

        config = ImageTo3DConfig()
        encoder = ConditionEncoder(config)
        tokens = encoder(torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64))   # (1, 64, 64)
    """

    def __init__(self, config: ImageTo3DConfig) -> None:
        super().__init__()
        self.config = config
        c = config.cond_channels
        layers: list[nn.Module] = [nn.Conv2d(4, c // 2 if config.cond_levels else c, 3, padding=1)]
        for level in range(config.cond_levels):
            c_in = c // 2 if level == 0 else c
            layers += [nn.GELU(), nn.Conv2d(c_in, c, 4, stride=2, padding=1)]  # halves the side exactly
        self.convs = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(c)
        self.proj = nn.Linear(c, c)
        pos = sincos_embedding(grid_positions(config.cond_grid, 2), c)
        self.register_buffer("pos", pos[None], persistent=False)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        size = self.config.image_size
        if image.ndim != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"image: expected [B, 3, {size}, {size}] in [0, 1], got {tuple(image.shape)}")
        if tuple(mask.shape) != (image.shape[0], 1, size, size):
            raise ValueError(f"mask: expected [{image.shape[0]}, 1, {size}, {size}] like the image, got {tuple(mask.shape)}")
        # centre the colours; the mask also zeroes the background so the crop's surroundings do not leak in
        x = torch.cat([(image - 0.5) * 2 * mask, mask.to(image.dtype)], dim=1)
        feats = self.convs(x).flatten(2).transpose(1, 2)  # [B, grid^2, C], C order
        return self.proj(self.norm(feats + self.pos))
