"""Reference image-to-3D models in the shape of SAM 3D Objects (pure PyTorch, CPU-sized).

Two flow stages and a mesh decoder:

1. sparse structure (SS): :class:`SSFlowTransformer` (shape + layout streams of
   :class:`MoTBlock`) samples an SS latent and a layout pose; :class:`SSVAE` decodes
   the latent to occupancy (logits > 0);
2. structured latent (SLaT): :class:`SLaTFlowTransformer` samples one token per
   occupied voxel (capped by :func:`downsample_structure`);
3. :class:`SLaTMeshDecoder` turns the tokens into a fine SDF and a mesh in the layout pose.

Both flows run through :class:`FlowSampler` (Euler + CFG, SAM3D's time rescaling),
whose one ``velocity`` method is what accelerators wrap.

Example::

    from accel3d.models.image_to_3d import ImageTo3DConfig, ImageTo3DModels

    models = ImageTo3DModels(ImageTo3DConfig())
    cond = models.condition(image, mask)
    x = models.ss_sampler().sample(cond, torch.Generator().manual_seed(0))
"""

from accel3d.models.image_to_3d.checkpoint import ImageTo3DModels, architecture_differences
from accel3d.models.image_to_3d.condition import ConditionEncoder
from accel3d.models.image_to_3d.config import POSE_CHANNELS, ImageTo3DConfig
from accel3d.models.image_to_3d.layers import pad_tokens, unpad_tokens
from accel3d.models.image_to_3d.mot import MoTBlock
from accel3d.models.image_to_3d.pose import matrix_to_rotation_6d, place_mesh, pose_matrix, rotation_6d_to_matrix
from accel3d.models.image_to_3d.sampler import (
    SLAT_SAMPLER_DEFAULTS,
    SS_SAMPLER_DEFAULTS,
    FlowSampler,
    rescale_time,
    time_schedule,
)
from accel3d.models.image_to_3d.slat import SLaTEncoder, SLaTMeshDecoder
from accel3d.models.image_to_3d.slat_flow import SLAT_TOKEN_GROUPS, SLaTFlowTransformer
from accel3d.models.image_to_3d.ss_flow import SS_TOKEN_GROUPS, SSFlowTransformer, grid_to_tokens, tokens_to_grid
from accel3d.models.image_to_3d.ss_vae import SSVAE, pixel_shuffle_3d, pixel_unshuffle_3d
from accel3d.models.image_to_3d.structure import (
    downsample_structure,
    fine_sample_points,
    gather_fine_sdf,
    occupied_coords,
    scatter_fine_sdf,
    sdf_to_mesh,
)

__all__ = [
    "POSE_CHANNELS",
    "SLAT_SAMPLER_DEFAULTS",
    "SLAT_TOKEN_GROUPS",
    "SS_SAMPLER_DEFAULTS",
    "SS_TOKEN_GROUPS",
    "SSVAE",
    "ConditionEncoder",
    "FlowSampler",
    "ImageTo3DConfig",
    "ImageTo3DModels",
    "MoTBlock",
    "SLaTEncoder",
    "SLaTFlowTransformer",
    "SLaTMeshDecoder",
    "SSFlowTransformer",
    "architecture_differences",
    "downsample_structure",
    "fine_sample_points",
    "gather_fine_sdf",
    "grid_to_tokens",
    "matrix_to_rotation_6d",
    "occupied_coords",
    "pad_tokens",
    "place_mesh",
    "pixel_shuffle_3d",
    "pixel_unshuffle_3d",
    "pose_matrix",
    "rescale_time",
    "rotation_6d_to_matrix",
    "scatter_fine_sdf",
    "sdf_to_mesh",
    "time_schedule",
    "tokens_to_grid",
    "unpad_tokens",
]
