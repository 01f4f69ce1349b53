"""FlashVDM's training-free volume decoding: hierarchical decoding and adaptive KV selection.

Each accelerator is declared once in :mod:`accel3d.decoding.config` (torch-free). Names load on
first use, so that reading the configs (``accel3d list``) does not import torch.

Example::

    from accel3d.decoding import HierarchicalDecoding, HierarchicalVolumeDecoder
"""

from accel3d.core.lazy import lazy_exports

_EXPORTS = {
    "AdaptiveKVConfig": "config",
    "HierarchicalConfig": "config",
    "AdaptiveKVSelection": "accelerator",
    "HierarchicalDecoding": "accelerator",
    "HierarchicalVolumeDecoder": "hierarchical",
    "coarse_to_fine_levels": "hierarchical",
    "CellPlan": "kv_selection",
    "KVSelector": "kv_selection",
    "Selection": "kv_selection",
    "default_topk": "kv_selection",
    "plan_cells": "kv_selection",
    "resolve_topk": "kv_selection",
    "refinement_mask": "refinement",
    "attention_sparsity": "sparsity",
    "DenseVolumeDecoder": "accel3d.geometry.volume",
    "VolumeGrid": "accel3d.geometry.volume",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
