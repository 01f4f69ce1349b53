"""FlashVDM's training-free volume decoding: hierarchical decoding (and, next, adaptive KV)."""

from accel3d.decoding.accelerator import HierarchicalDecoding
from accel3d.decoding.hierarchical import HierarchicalVolumeDecoder, coarse_to_fine_levels, refinement_mask
from accel3d.geometry.volume import DenseVolumeDecoder, VolumeGrid

__all__ = [
    "DenseVolumeDecoder",
    "HierarchicalDecoding",
    "HierarchicalVolumeDecoder",
    "VolumeGrid",
    "coarse_to_fine_levels",
    "refinement_mask",
]
