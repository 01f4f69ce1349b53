"""Structured latent (SLaT): one token of ``slat_channels`` per occupied structure voxel.

- :class:`SLaTEncoder`: each voxel's local geometry (its ``s^3`` fine SDF samples,
  divided by the truncation) and its coordinates -> a token (KL: mean, log-variance).
- :class:`SLaTMeshDecoder`: tokens -> the voxel's ``s^3`` fine SDF samples, then
  marching cubes (:func:`~accel3d.models.image_to_3d.structure.sdf_to_mesh`) to a
  ``trimesh.Trimesh`` placed in the layout pose.

Both are full-attention transformers over one object's tokens (padded batches with
a key mask) with 3D sinusoidal embeddings of the integer coordinates, in plain
PyTorch: no sparse-convolution library. TRELLIS/SAM3D use sparse windowed
attention and sparse convolutions here; at a 32^3 structure (a few thousand tokens)
full attention is affordable and exact.
"""

from __future__ import annotations

import torch
import trimesh
from torch import Tensor, nn

from accel3d.models.image_to_3d.config import ImageTo3DConfig
from accel3d.models.image_to_3d.layers import TransformerBlock, sincos_embedding
from accel3d.models.image_to_3d.pose import place_mesh
from accel3d.models.image_to_3d.structure import scatter_fine_sdf, sdf_to_mesh


def check_sparse_inputs(tokens: Tensor, coords: Tensor, mask: Tensor | None, channels: int, resolution: int) -> Tensor:
    """The key mask (all True when ``mask`` is None), or an error naming the bad argument."""
    if tokens.ndim != 3 or tokens.shape[2] != channels:
        raise ValueError(f"tokens: expected [B, N, {channels}], got {tuple(tokens.shape)}")
    if tuple(coords.shape) != (*tokens.shape[:2], 3) or coords.is_floating_point():
        raise ValueError(f"coords: expected integer [B, N, 3] = {(*tokens.shape[:2], 3)}, got {coords.dtype} {tuple(coords.shape)}")
    if mask is None:
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    elif tuple(mask.shape) != tuple(tokens.shape[:2]) or mask.dtype != torch.bool:
        raise ValueError(f"mask: expected bool [B, N] = {tuple(tokens.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
    real = coords[mask]
    if len(real) and (int(real.min()) < 0 or int(real.max()) >= resolution):
        raise ValueError(f"coords: expected voxel coordinates in [0, {resolution - 1}], got [{int(real.min())}, {int(real.max())}]")
    return mask


class _SparseTransformer(nn.Module):
    """Linear in + coordinate embedding -> blocks -> LayerNorm -> Linear out; padding rows come out as zeros."""

    def __init__(self, config: ImageTo3DConfig, c_in: int, c_out: int) -> None:
        super().__init__()
        self.config = config
        self.c_in = c_in
        width = config.slat_vae_width
        self.input = nn.Linear(c_in, width)
        self.blocks = nn.ModuleList(TransformerBlock(width, config.slat_vae_heads, config.mlp_ratio) for _ in range(config.slat_vae_depth))
        self.norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, c_out)

    def run(self, x: Tensor, coords: Tensor, mask: Tensor | None) -> Tensor:
        mask = check_sparse_inputs(x, coords, mask, self.c_in, self.config.structure_resolution)
        h = self.input(x) + sincos_embedding(coords, self.config.slat_vae_width)
        for block in self.blocks:
            h = block(h, mask)
        return self.output(self.norm(h)) * mask[..., None]


class SLaTEncoder(_SparseTransformer):
    """Per-voxel fine SDF samples -> SLaT tokens (mean and log-variance, each ``[B, N, slat_channels]``).

    Example::

        config = ImageTo3DConfig()
        encoder = SLaTEncoder(config)
        coords = torch.randint(0, 32, (1, 100, 3))
        sdf = torch.zeros(1, 100, config.slat_samples_per_voxel)    # the voxels' fine SDF samples
        mean, logvar = encoder(sdf, coords)                          # (1, 100, 8) each
    """

    def __init__(self, config: ImageTo3DConfig) -> None:
        super().__init__(config, config.slat_samples_per_voxel, 2 * config.slat_channels)

    def forward(self, sdf: Tensor, coords: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # SDF in object units -> [-1, 1], the range the decoder predicts in
        features = sdf.clamp(-self.config.sdf_truncation, self.config.sdf_truncation) / self.config.sdf_truncation
        mean, logvar = self.run(features, coords, mask).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)


class SLaTMeshDecoder(_SparseTransformer):
    """SLaT tokens -> per-voxel fine SDF samples ``[B, N, s^3]`` in ``(-truncation, truncation)``, and meshes.

    Example::

        decoder = SLaTMeshDecoder(ImageTo3DConfig())
        coords = torch.nonzero(torch.ones(4, 4, 4, dtype=torch.bool)) + 14   # [N, 3] voxels
        tokens = torch.randn(len(coords), 8)
        sdf = decoder(tokens[None], coords[None])                 # (1, N, 8): 2^3 samples per voxel
        mesh = decoder.to_mesh(tokens, coords,                    # one object, in its layout pose
                               rotation6d=torch.tensor([1.0, 0, 0, 0, 1, 0]),
                               translation=torch.zeros(3), scale=torch.ones(3))
    """

    def __init__(self, config: ImageTo3DConfig) -> None:
        super().__init__(config, config.slat_channels, config.slat_samples_per_voxel)

    def forward(self, tokens: Tensor, coords: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.config.sdf_truncation * torch.tanh(self.run(tokens, coords, mask))

    def fine_sdf(self, tokens: Tensor, coords: Tensor) -> Tensor:
        """One object's tokens ``[N, C]`` and coordinates ``[N, 3]`` -> the dense fine SDF ``[F, F, F]``."""
        values = self(tokens[None], coords[None])[0]
        cfg = self.config
        return scatter_fine_sdf(coords, values, cfg.structure_resolution, cfg.slat_subdivision, cfg.sdf_truncation)

    def to_mesh(
        self,
        tokens: Tensor,
        coords: Tensor,
        rotation6d: Tensor | None = None,
        translation: Tensor | None = None,
        scale: Tensor | None = None,
        downsample_factor: int = 1,
    ) -> trimesh.Trimesh:
        """One object's mesh: fine SDF -> marching cubes (object frame) -> the layout pose, if given.

        ``downsample_factor`` is :func:`~accel3d.models.image_to_3d.structure.downsample_structure`'s
        factor: the shrunk structure is scaled back up by it.
        """
        with torch.no_grad():
            fine = self.fine_sdf(tokens, coords)
        mesh = sdf_to_mesh(fine, self.config.bound, self.config.sdf_truncation)
        if rotation6d is None and translation is None and scale is None and downsample_factor == 1:
            return mesh
        rotation6d = torch.tensor([1.0, 0, 0, 0, 1, 0]) if rotation6d is None else rotation6d.reshape(6)
        translation = torch.zeros(3) if translation is None else translation.reshape(3)
        scale = (torch.ones(3) if scale is None else scale.reshape(-1)) * downsample_factor
        return place_mesh(mesh, rotation6d, translation, scale)
