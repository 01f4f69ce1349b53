"""Sparse-structure VAE: occupancy ``structure_resolution^3`` <-> latent ``ss_latent_resolution^3 x C``.

Like TRELLIS/SAM3D's SS VAE it is KL-regularised (the encoder gives a mean and a
log-variance); training uses a small KL weight (1e-6-ish), so it behaves almost as
a plain autoencoder with a well-scaled latent, and the flow models the mean
(``encode(..., sample=False)``). The decoder upsamples with conv res-blocks and a
3D pixel-shuffle (SAM3D: 16^3 -> 64^3; defaults here: 8^3 -> 32^3). Occupied
voxels are those with logits > 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from accel3d.models.image_to_3d.config import ImageTo3DConfig


def pixel_shuffle_3d(x: Tensor, factor: int) -> Tensor:
    """``[B, C*f^3, D, H, W]`` -> ``[B, C, D*f, H*f, W*f]``; channel ``c*f^3 + (i*f + j)*f + k`` lands at offset ``(i, j, k)``.

    Example::

        pixel_shuffle_3d(torch.randn(1, 16, 4, 4, 4), 2).shape   # (1, 2, 8, 8, 8)
    """
    b, c, d, h, w = x.shape
    if c % factor**3:
        raise ValueError(f"x: expected channels divisible by factor^3 = {factor**3}, got {c}")
    x = x.view(b, c // factor**3, factor, factor, factor, d, h, w)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c // factor**3, d * factor, h * factor, w * factor)


def pixel_unshuffle_3d(x: Tensor, factor: int) -> Tensor:
    """Inverse of :func:`pixel_shuffle_3d`: ``[B, C, D*f, H*f, W*f]`` -> ``[B, C*f^3, D, H, W]``."""
    b, c, d, h, w = x.shape
    if d % factor or h % factor or w % factor:
        raise ValueError(f"x: expected spatial sizes divisible by {factor}, got {(d, h, w)}")
    x = x.view(b, c, d // factor, factor, h // factor, factor, w // factor, factor)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * factor**3, d // factor, h // factor, w // factor)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock3d(nn.Module):
    """GroupNorm-SiLU-Conv3d twice, plus the input (1x1 projected if the width changes).

    Example::

        y = ResBlock3d(16, 32)(torch.randn(1, 16, 8, 8, 8))   # (1, 32, 8, 8, 8)
    """

    def __init__(self, c_in: int, c_out: int | None = None) -> None:
        super().__init__()
        c_out = c_out or c_in
        self.body = nn.Sequential(
            _norm(c_in), nn.SiLU(), nn.Conv3d(c_in, c_out, 3, padding=1), _norm(c_out), nn.SiLU(), nn.Conv3d(c_out, c_out, 3, padding=1)
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv3d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class SSVAE(nn.Module):
    """Occupancy autoencoder of the sparse structure.

    Example::

        config = ImageTo3DConfig()
        vae = SSVAE(config)
        occ = (torch.rand(1, 32, 32, 32) > 0.9).float()
        latent = vae.encode(occ)             # (1, 8, 8, 8, 8)
        logits = vae.decode(latent)          # (1, 1, 32, 32, 32)
        occupied = vae.occupancy(latent)     # bool (1, 32, 32, 32): logits > 0
    """

    def __init__(self, config: ImageTo3DConfig) -> None:
        super().__init__()
        self.config = config
        levels, blocks = config.ss_levels, config.ss_vae_blocks
        # width per level, finest (structure) first; the latent level has ss_vae_channels
        widths = [max(8, config.ss_vae_channels >> (levels - lv)) for lv in range(levels + 1)]
        enc: list[nn.Module] = [nn.Conv3d(1, widths[0], 3, padding=1)]
        for lv in range(levels):
            enc += [ResBlock3d(widths[lv]) for _ in range(blocks)]
            enc.append(nn.Conv3d(widths[lv], widths[lv + 1], 3, stride=2, padding=1))
        enc += [ResBlock3d(widths[-1]) for _ in range(blocks)]
        enc += [_norm(widths[-1]), nn.SiLU(), nn.Conv3d(widths[-1], 2 * config.ss_latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.decoder_in = nn.Conv3d(config.ss_latent_channels, widths[-1], 3, padding=1)
        self.decoder_mid = nn.Sequential(*[ResBlock3d(widths[-1]) for _ in range(blocks)])
        self.upsample = nn.ModuleList(nn.Conv3d(widths[lv], widths[lv - 1] * 8, 3, padding=1) for lv in range(levels, 0, -1))
        self.decoder_blocks = nn.ModuleList(
            nn.Sequential(*[ResBlock3d(widths[lv - 1]) for _ in range(blocks)]) for lv in range(levels, 0, -1)
        )
        self.decoder_out = nn.Sequential(_norm(widths[0]), nn.SiLU(), nn.Conv3d(widths[0], 1, 3, padding=1))

    def _grid(self, occupancy: Tensor) -> Tensor:
        r = self.config.structure_resolution
        if occupancy.ndim == 4:
            occupancy = occupancy[:, None]
        if occupancy.ndim != 5 or occupancy.shape[1:] != (1, r, r, r):
            raise ValueError(f"occupancy: expected [B, {r}, {r}, {r}] (or [B, 1, {r}, {r}, {r}]), got {tuple(occupancy.shape)}")
        return occupancy.float()

    def encode_distribution(self, occupancy: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of the latent, each ``[B, C, r, r, r]``."""
        mean, logvar = self.encoder(self._grid(occupancy)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, occupancy: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """The latent mean, or (``sample=True``) a draw from the posterior using ``generator``."""
        mean, logvar = self.encode_distribution(occupancy)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * logvar).exp() * noise

    def decode(self, latent: Tensor) -> Tensor:
        """Occupancy logits ``[B, 1, R, R, R]`` of latents ``[B, C, r, r, r]``."""
        r, c = self.config.ss_latent_resolution, self.config.ss_latent_channels
        if latent.ndim != 5 or latent.shape[1:] != (c, r, r, r):
            raise ValueError(f"latent: expected [B, {c}, {r}, {r}, {r}], got {tuple(latent.shape)}")
        h = self.decoder_mid(self.decoder_in(latent))
        for up, blocks in zip(self.upsample, self.decoder_blocks):
            h = blocks(pixel_shuffle_3d(up(h), 2))
        return self.decoder_out(h)

    def occupancy(self, latent: Tensor) -> Tensor:
        """Occupied voxels ``[B, R, R, R]`` (bool): decoded logits > 0."""
        return self.decode(latent)[:, 0] > 0

    def forward(self, occupancy: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass: logits of a posterior sample, and the posterior's mean and log-variance."""
        mean, logvar = self.encode_distribution(occupancy)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.decode(mean + (0.5 * logvar).exp() * noise), mean, logvar

    @staticmethod
    def kl_loss(mean: Tensor, logvar: Tensor) -> Tensor:
        """KL divergence to N(0, I), averaged over the batch (summed over latent entries)."""
        return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
