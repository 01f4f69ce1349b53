"""Sizes of the reference image-to-3D model set (SAM 3D Objects' structure at CPU size).

Every field is checked in ``__post_init__`` because a checkpoint's config is data
read from a file: a wrong type or an inconsistent pair of sizes fails at once,
naming the field, instead of as a shape error deep inside a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from accel3d.core.validate import ArgumentError, check_float, check_int

POSE_CHANNELS = {"rotation": 6, "translation": 3, "scale": 3}  # 6D rotation, xyz translation, xyz scale


def _power_of_two_ratio(name: str, fine: int, coarse: int, fine_name: str) -> int:
    """The k with ``fine == coarse * 2**k``, or an error naming ``name``."""
    ratio, k = fine // coarse, 0
    while (1 << k) < ratio:
        k += 1
    if fine % coarse or (1 << k) != ratio:
        raise ArgumentError(f"ImageTo3DConfig.{name}: expected {fine_name} ({fine}) = {name} ({coarse}) times a power of two")
    return k


@dataclass
class ImageTo3DConfig:
    """Sizes of :class:`~accel3d.models.image_to_3d.ImageTo3DModels`.

    SAM 3D Objects uses 518-px DINOv2 tokens (1024 channels), a 16^3 x 8 SS latent
    decoded to a 64^3 structure, and 1024-wide, 24-block transformers; the defaults
    here keep the structure and shrink every size so that a forward pass takes
    milliseconds on a CPU core.

    Example::

        config = ImageTo3DConfig(ss_flow_width=64, ss_flow_depth=2)
        config.ss_tokens          # 512 shape tokens (8^3)
        config.slat_fine_resolution  # 64: the mesh decoder's SDF grid per axis
    """

    # condition encoder: RGB crop + mask -> cond_grid^2 tokens of cond_channels
    image_size: int = 64
    cond_grid: int = 8
    cond_channels: int = 64
    # sparse structure (SS): occupancy at structure_resolution^3 <-> latent ss_latent_resolution^3 x ss_latent_channels
    structure_resolution: int = 32
    ss_latent_resolution: int = 8
    ss_latent_channels: int = 8
    ss_vae_channels: int = 32  # at the latent resolution; halved at each finer level (at least 8)
    ss_vae_blocks: int = 1  # residual blocks per resolution level
    # SS flow transformer (two streams: shape, layout)
    ss_flow_patch: int = 2  # shape tokens the transformer sees: (R/patch)^3 patches of patch^3 latent voxels
    ss_flow_width: int = 96
    ss_flow_depth: int = 4
    ss_flow_heads: int = 4
    # structured latent (SLaT): one token of slat_channels per occupied voxel
    slat_channels: int = 8
    slat_subdivision: int = 2  # the mesh decoder's SDF samples per voxel and axis
    slat_vae_width: int = 64
    slat_vae_depth: int = 2
    slat_vae_heads: int = 4
    slat_flow_width: int = 96
    slat_flow_depth: int = 4
    slat_flow_heads: int = 4
    max_tokens: int = 42000  # SAM3D's cap on sparse tokens; above it the structure is downsampled by 2
    # shared
    mlp_ratio: int = 4
    time_scale: float = 1000.0  # the flows embed t * time_scale (SAM3D and TRELLIS: 1000)
    bound: float = 1.0  # the structure grid covers [-bound, bound]^3 of the object frame
    sdf_truncation: float = 0.125  # SDF clamp in object units; outside the structure = +truncation

    def __post_init__(self) -> None:
        for f in fields(self):  # a checkpoint's config is data: check it like a knob
            value = getattr(self, f.name)
            if f.type == "int":
                check_int(f"ImageTo3DConfig.{f.name}", value, low=1)
            else:
                check_float(f"ImageTo3DConfig.{f.name}", value, low=0.0, low_open=True, high=1e6)
        _power_of_two_ratio("cond_grid", self.image_size, self.cond_grid, "image_size")
        _power_of_two_ratio("ss_latent_resolution", self.structure_resolution, self.ss_latent_resolution, "structure_resolution")
        if self.ss_latent_resolution % self.ss_flow_patch:
            raise ArgumentError(
                f"ImageTo3DConfig.ss_flow_patch: expected a divisor of ss_latent_resolution ({self.ss_latent_resolution}), "
                f"got {self.ss_flow_patch}"
            )
        for width, heads in (
            ("ss_flow_width", "ss_flow_heads"),
            ("slat_vae_width", "slat_vae_heads"),
            ("slat_flow_width", "slat_flow_heads"),
        ):
            if getattr(self, width) % getattr(self, heads):
                raise ArgumentError(
                    f"ImageTo3DConfig.{width}: expected a multiple of {heads} ({getattr(self, heads)}), got {getattr(self, width)}"
                )

    @property
    def ss_tokens(self) -> int:
        """Shape tokens of the SS flow: the latent grid flattened."""
        return self.ss_latent_resolution**3

    @property
    def ss_flow_patches(self) -> int:
        """Patches per axis inside the SS flow transformer (8 / 2 = 4: 64 attended shape tokens)."""
        return self.ss_latent_resolution // self.ss_flow_patch

    @property
    def ss_levels(self) -> int:
        """Stride-2 levels between the structure and the SS latent (32 -> 8: 2)."""
        return _power_of_two_ratio("ss_latent_resolution", self.structure_resolution, self.ss_latent_resolution, "structure_resolution")

    @property
    def cond_levels(self) -> int:
        """Stride-2 convolutions of the condition encoder (64 px -> 8: 3)."""
        return _power_of_two_ratio("cond_grid", self.image_size, self.cond_grid, "image_size")

    @property
    def slat_fine_resolution(self) -> int:
        """Samples per axis of the mesh decoder's SDF grid (32 voxels x 2 = 64)."""
        return self.structure_resolution * self.slat_subdivision

    @property
    def slat_samples_per_voxel(self) -> int:
        return self.slat_subdivision**3

    @classmethod
    def from_dict(cls, data: dict) -> ImageTo3DConfig:
        """Build from a checkpoint's config dict; unknown keys are refused, named."""
        if not isinstance(data, dict):
            raise ArgumentError(f"ImageTo3DConfig: expected a dict of fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ArgumentError(f"ImageTo3DConfig: unknown keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**data)
