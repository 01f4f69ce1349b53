"""Integrations with real libraries' models, one module per library. Each imports its library only inside
functions (or never: it reads the files or takes the objects the library made), so accel3d installs and
imports without any of them.

- :mod:`accel3d.integrations.hunyuan3d`: Hunyuan3D-2 ShapeVAE release folders (``hy3dgen``'s
  ``config.yaml`` + ``model*.safetensors``) loaded into accel3d's vecset VAE, and (through
  :mod:`accel3d.integrations.hunyuan3d_stages`) the stages of hy3dgen's own ``ShapeVAE`` and pipeline;
- :mod:`accel3d.integrations.diffusers`: the ``denoiser`` stage of diffusers U-Nets, pipelines and guidance
  objects, and a diffusers U-Net from a local folder (the ``sds`` backbone);
- :mod:`accel3d.integrations.trellis`: TRELLIS v1's Euler samplers as accel3d stages (MIT);
- :mod:`accel3d.integrations.sam3d`: SAM 3D Objects' ``ShortCut`` / ``FlowMatching`` generators as accel3d
  stages (Meta's SAM License; accel3d never depends on it);
- :mod:`accel3d.integrations.flow_adapter`: what the TRELLIS and SAM 3D Objects stages share: the interface
  of :class:`accel3d.models.image_to_3d.sampler.FlowSampler`, one ``velocity(x, t, cond, step, **kwargs)``
  method called once per step (what accelerators wrap with ``PatchSet.wrap(stage, "velocity", ...)``) and
  ``token_groups`` naming the state's streams.

:func:`stages_of` asks each integration that recognises objects for the stages of one, so that
``accel3d.apply(obj, stack)`` takes a real library's object in one call.

Example::

    stages_of(diffusers_pipeline)   # {"denoiser": diffusers_pipeline.unet}

    from accel3d.integrations.trellis import TrellisFlowStage

    with TrellisFlowStage(pipeline.sparse_structure_sampler, pipeline.models["sparse_structure_flow_model"]) as stage:
        ...   # accelerators wrap stage.velocity; pipeline.run(...) goes through it
"""

from importlib import import_module
from typing import Any

RECOGNISERS = ("diffusers", "hunyuan3d", "trellis", "sam3d")  # the integrations with a ``stages(obj)`` function, asked in this order


def stages_of(obj: Any) -> dict[str, Any] | None:
    """The stages of a real library's object, named as stacks name them; None if no integration recognises it."""
    for name in RECOGNISERS:
        found = import_module(f"accel3d.integrations.{name}").stages(obj)
        if found is not None:
            return found
    return None
