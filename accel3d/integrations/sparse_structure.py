"""The ``sparse_structure`` stage of TRELLIS and SAM 3D Objects pipelines: where their voxel coordinates are made.

Both pipelines make the SLaT's voxels inline in ``sample_sparse_structure``: the SS decoder's occupancy logits
``[B, 1, R, R, R]``, then ``argwhere(logits > 0)`` (SAM 3D Objects then prunes them and, above its token cap,
halves the structure, returning ``coords`` and ``downsample_factor``). Installed, this stage keeps the decoder's
logits of the call (a wrap of its ``forward`` that returns them untouched) and passes the coordinates the
pipeline made through :meth:`SparseStructureStage.coords`, the call Fast-SAM3D's spectral aggregation wraps.
When ``coords`` gives them back unchanged, the pipeline's own result is returned as it was (bit for bit).

A structure shrunk by ``factor`` keeps the object's size through the pipeline's scale: SAM 3D Objects multiplies
its layout ``scale`` by the returned ``downsample_factor``, which the stage multiplies by ``factor``; TRELLIS has no
layout, so the stage scales the vertices of the meshes ``decode_slat`` returns by ``factor`` about the centre
(its Gaussians and radiance fields are not rescaled: use ``formats=["mesh"]`` or scale them by
``stage.factor``). Only one object per call is reshaped; a batch of several passes through untouched.

Example::

    stage = SparseStructureStage(pipeline, decoder_key="sparse_structure_decoder").attach()
    coords = pipeline.sample_sparse_structure(cond)    # through stage.coords
    stage.detach()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from accel3d.core.hooks import PatchSet
from accel3d.integrations.flow_adapter import object_rows
from accel3d.integrations.installed import InstalledStage
from accel3d.models.image_to_3d.stages import SparseCoords


class SparseStructureStage(InstalledStage):
    """Stage ``sparse_structure`` of a TRELLIS or SAM 3D Objects pipeline (see the module).

    Args:
        pipeline: the pipeline (``sample_sparse_structure`` and ``models[decoder_key]``).
        decoder_key: the SS decoder's key in ``pipeline.models`` (TRELLIS: ``sparse_structure_decoder``,
            SAM 3D Objects: ``ss_decoder``).

    Attributes:
        resolution: the side of the occupancy grid (64 in both; read from each call's logits).
        factor: the structure's shrink factor in the last call (1: as the pipeline made it).
    """

    name = "sparse_structure_stage"

    def __init__(self, pipeline: Any, decoder_key: str, resolution: int = 64) -> None:
        super().__init__()
        self.pipeline, self.decoder_key = pipeline, decoder_key
        self.resolution, self.factor = int(resolution), 1.0
        self._logits: Tensor | None = None
        self._made: SparseCoords | None = None

    def _install(self, patches: PatchSet) -> None:
        decoder = self.pipeline.models[self.decoder_key]
        patches.wrap(decoder, "forward", self._keep_logits)
        patches.wrap(self.pipeline, "sample_sparse_structure", self._reshaped)
        if callable(getattr(self.pipeline, "decode_slat", None)) and "downsample_factor" not in _structure_keys(self.pipeline):
            patches.wrap(self.pipeline, "decode_slat", self._rescaled)

    # ------------------------------------------------------------------ the stage interface
    def coords(self, logits: Tensor, mask: Tensor | None = None) -> SparseCoords:
        """The voxels the pipeline made from ``logits`` ``[R, R, R]`` (what spectral aggregation wraps)."""
        if self._made is None:
            raise RuntimeError("sparse_structure: coords() is called by the pipeline's sample_sparse_structure while installed")
        return self._made

    # ------------------------------------------------------------------ the wraps
    def _keep_logits(self, original: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def forward(*args: Any, **kwargs: Any) -> Tensor:
            logits = original(*args, **kwargs)
            self._logits = logits
            return logits

        return forward

    def _reshaped(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def sample_sparse_structure(*args: Any, **kwargs: Any) -> Any:
            self._logits, self.factor = None, 1.0
            result = original(*args, **kwargs)
            made = result["coords"] if isinstance(result, dict) else result
            logits = self._logits
            if logits is None or logits.ndim != 5 or logits.shape[0] != 1 or bool(made[:, 0].any()):
                return result  # several objects (or no decoder call seen): as the pipeline made it
            before = float(result.get("downsample_factor", 1.0)) if isinstance(result, dict) else 1.0
            self.resolution = int(logits.shape[-1])
            self._made = made_coords = SparseCoords(made[:, 1:].long(), before, len(made))
            try:
                found = self.coords(logits[0, 0], _mask_of(args, kwargs))
            finally:
                self._made, self._logits = None, None
            if found is made_coords or (found.factor == before and torch.equal(found.coords, made_coords.coords)):
                return result
            rows = object_rows(found.coords).to(made)
            self.factor = found.factor / before
            if not isinstance(result, dict):
                return rows
            return {**result, "coords": rows, "downsample_factor": found.factor}

        return sample_sparse_structure

    def _rescaled(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def decode_slat(*args: Any, **kwargs: Any) -> Any:
            outputs = original(*args, **kwargs)
            if self.factor != 1.0 and isinstance(outputs, dict):
                for mesh in outputs.get("mesh", []):
                    mesh.vertices = mesh.vertices * self.factor  # TRELLIS's meshes are centred at 0
            return outputs

        return decode_slat


def _structure_keys(pipeline: Any) -> set[str]:
    """SAM 3D Objects' pipeline returns a dict with ``downsample_factor``; TRELLIS's returns the coordinates."""
    return {"downsample_factor"} if any(c.__module__.startswith("sam3d_objects.") for c in type(pipeline).__mro__) else set()


def _mask_of(args: tuple, kwargs: dict) -> Tensor | None:
    """The object's 2D mask where the call carries one (SAM 3D Objects' input dict's ``mask``), else None."""
    inputs = args[0] if args and isinstance(args[0], dict) else kwargs.get("ss_input_dict")
    mask = inputs.get("mask") if isinstance(inputs, dict) else None
    if not isinstance(mask, Tensor) or mask.ndim < 2 or mask.numel() != mask.shape[-1] * mask.shape[-2]:
        return None
    return mask.reshape(mask.shape[-2:])
