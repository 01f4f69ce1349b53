"""Adapters that expose real image-to-3D models' samplers through accel3d's stage interface.

The same interface as :class:`accel3d.models.image_to_3d.sampler.FlowSampler`: one ``velocity(x, t,
cond, step, **kwargs)`` method called once per step (what accelerators wrap with
``PatchSet.wrap(stage, "velocity", ...)``) and ``token_groups`` naming the state's streams.

- :mod:`accel3d.models.adapters.trellis`: TRELLIS v1's Euler samplers (MIT);
- :mod:`accel3d.models.adapters.sam3d`: SAM 3D Objects' ``ShortCut`` / ``FlowMatching`` generators
  (Meta's SAM License; accel3d never depends on it).

Neither package is imported here or by the adapters: they take the pipeline's own objects.

Example::

    from accel3d.models.adapters import TrellisFlowStage

    with TrellisFlowStage(pipeline.sparse_structure_sampler, pipeline.models["sparse_structure_flow_model"]) as stage:
        ...   # accelerators wrap stage.velocity; pipeline.run(...) goes through it
"""

from accel3d.models.adapters.base import FlowStageAdapter, state_tensors
from accel3d.models.adapters.sam3d import Sam3DFlowStage
from accel3d.models.adapters.trellis import TrellisFlowStage

__all__ = ["FlowStageAdapter", "Sam3DFlowStage", "TrellisFlowStage", "state_tensors"]
