"""FlashVDM's training-free volume decoding: hierarchical decoding and adaptive KV selection."""

from accel3d.decoding.accelerator import AdaptiveKVSelection, HierarchicalDecoding
from accel3d.decoding.hierarchical import HierarchicalVolumeDecoder, coarse_to_fine_levels
from accel3d.decoding.kv_selection import CellPlan, KVSelector, Selection, default_topk, plan_cells, resolve_topk
from accel3d.decoding.refinement import refinement_mask
from accel3d.decoding.sparsity import attention_sparsity
from accel3d.geometry.volume import DenseVolumeDecoder, VolumeGrid

__all__ = [
    "AdaptiveKVSelection",
    "CellPlan",
    "DenseVolumeDecoder",
    "HierarchicalDecoding",
    "HierarchicalVolumeDecoder",
    "KVSelector",
    "Selection",
    "VolumeGrid",
    "attention_sparsity",
    "coarse_to_fine_levels",
    "default_topk",
    "plan_cells",
    "refinement_mask",
    "resolve_topk",
]
