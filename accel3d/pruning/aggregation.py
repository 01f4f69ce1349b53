"""Spectral-aware token aggregation (Fast-SAM3D): fewer SLaT tokens for simple objects, between the two stages.

Attaches to the ``sparse_structure`` stage: an object whose ``coords(logits, mask)`` returns the
voxels the SLaT flow samples over as a dataclass with ``coords`` ``[N, 3]``, ``factor`` and
``occupied`` (accel3d's :class:`~accel3d.models.image_to_3d.stages.SparseCoords`), and with a
``resolution``. The wrapped ``coords``:

1. scores the object: ``H = w HFER(mask) / s_2D + (1 - w) HFER(occupancy) / s_3D``
   (:mod:`accel3d.pruning.spectral`), each ratio in units of its calibration set's median ``hfer_scales``;
2. routes ``H`` to a factor ``S`` (``>= tau_high`` -> 1.25, ``> tau_low`` -> 1.5, else 2.0), or uses a
   fixed ``factor`` (1: off; a fixed factor is the uniform-merge baseline); the factors are given at
   the ``reference_resolution`` grid (SAM3D's 64^3) and at a side ``R`` become ``1 + (S - 1) R / 64``,
   so the coarsening the merge adds, in object units, stays the paper's;
3. shrinks the structure by ``S`` about the grid centre (``floor((p + 1/2 - R/2) / S + R/2)``) and
   merges the voxels that land together with :func:`accel3d.kernels.scatter_max_rows` (their
   occupancy logits, max-pooled);
4. multiplies ``factor`` by ``S``, which the pipeline applies to the layout scale, so the mesh keeps
   its size and position.

Guards: fewer than ``min_tokens`` voxels (at a ``reference_resolution`` grid; scaled by the area
ratio ``(R / reference_resolution)^2`` at other sides, since surface voxels grow with the area)
are left alone; a structure the stage already shrank for its token cap is not shrunk again.

The default ``hfer_scales`` and thresholds are calibrated (``scripts/calibrate_spectral.py``, the
paper's "tau calibrated by dataset") on renders of the reference pipeline's training meshes:
with the paper's power spectrum a binary mask's HFER is of order 1e-3, so the public code's
thresholds 0.7 / 0.5 (set for its magnitude ratio of a grey image) always route to the strongest
factor. See docs/pruning.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from accel3d.core.accelerator import BaseAccelerator, stage_reference
from accel3d.kernels import scatter_max_rows
from accel3d.pruning.config import SpectralAggregationConfig
from accel3d.pruning.spectral import mask_hfer, occupancy_hfer, quantise_about_centre, route_factor


def merge_voxels(coords: Tensor, logits: Tensor, factor: float, resolution: int) -> tuple[Tensor, Tensor]:
    """The structure shrunk by ``factor``: unique voxels (C order) and each one's max-pooled logit."""
    shrunk = quantise_about_centre(coords, factor, resolution)
    unique, inverse = torch.unique(shrunk, dim=0, return_inverse=True)
    values = logits[coords[:, 0], coords[:, 1], coords[:, 2]].float()[:, None]
    pooled = scatter_max_rows(values, inverse, len(unique), empty_value=float("-inf"))
    return unique, pooled[:, 0]


class SpectralAggregation(BaseAccelerator):
    """Fast-SAM3D's spectral-aware token aggregation on the ``sparse_structure`` stage.

    Knobs (declared once in :class:`~accel3d.pruning.config.SpectralAggregationConfig`): ``mask_weight``,
    ``hfer_scales``, ``tau_high`` and ``tau_low`` (the routing), ``factors`` (gentle, middle, strong, at
    ``reference_resolution``), ``mask_size``, ``mask_radius``, ``occupancy_radius``, ``min_tokens``,
    ``reference_resolution``, ``scale_factors`` (convert the factors to the stage's grid side) and
    ``factor`` (a fixed factor instead of the routing; 1 = no aggregation).

    Example::

        aggregation = SpectralAggregation()
        with aggregation.applied(pipeline.stage("sparse_structure")):
            result = pipeline.run(inputs)
        aggregation.stats()   # factor, hfer_2d, hfer_3d, score, tokens_before, tokens_after
    """

    Config = SpectralAggregationConfig

    def __init__(self, config: SpectralAggregationConfig | None = None, **knobs: Any) -> None:
        super().__init__(config, **knobs)
        self._resolution: Callable[[], int] = lambda: 0

    def _attach(self, target: Any) -> None:
        if not callable(getattr(target, "coords", None)) or not isinstance(getattr(target, "resolution", None), int):
            raise TypeError(
                f"{self.name}: expected a sparse-structure stage with coords(logits, mask) and an int resolution, "
                f"got {type(target).__name__}"
            )
        stage = stage_reference(target)
        self._resolution = lambda: stage().resolution if stage() is not None else 0
        self.patches.wrap(target, "coords", self._wrap)

    def min_tokens_at(self, resolution: int) -> int:
        """The token guard at a grid of side ``resolution`` (``min_tokens`` scaled by the area ratio)."""
        return int(round(self.config.min_tokens * (resolution / self.config.reference_resolution) ** 2))

    def factor_at(self, factor: float, resolution: int) -> float:
        """A factor given at ``reference_resolution`` as it applies to a grid of side ``resolution``."""
        if not self.config.scale_factors:
            return factor
        return 1.0 + (factor - 1.0) * resolution / self.config.reference_resolution

    def score(self, hfer_2d: float | None, hfer_3d: float) -> float:
        """The mixed score ``w HFER_2D / s_2D + (1 - w) HFER_3D / s_3D`` (without a mask: the 3D term alone)."""
        w = self.config.mask_weight if hfer_2d is not None else 0.0
        return w * (hfer_2d or 0.0) / self.config.hfer_scales[0] + (1 - w) * hfer_3d / self.config.hfer_scales[1]

    def choose(self, logits: Tensor, mask: Tensor | None) -> tuple[float, dict[str, float]]:
        """The factor for this object (at ``reference_resolution``) and the figures it was chosen from."""
        h3 = occupancy_hfer(logits > 0, self.config.occupancy_radius)
        h2 = mask_hfer(mask, self.config.mask_size, self.config.mask_radius) if mask is not None else None
        score = self.score(h2, h3)
        figures = {"hfer_3d": h3, "score": score, **({"hfer_2d": h2} if h2 is not None else {})}
        return route_factor(score, self.config.tau_high, self.config.tau_low, self.config.factors), figures

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def coords(logits: Tensor, mask: Tensor | None = None) -> Any:
            found = original(logits, mask)
            resolution = self._resolution()
            before = len(found.coords)
            self.statistics.add("calls")
            self.statistics.add("tokens_before", before)
            if self.config.factor is not None:
                factor, figures = self.config.factor, {}
            else:
                factor, figures = self.choose(logits, mask)
            factor = self.factor_at(factor, resolution)
            if before < self.min_tokens_at(resolution) or found.factor > 1.0:
                factor = 1.0  # too few tokens to gain from, or the token cap already shrank it
            for key, value in figures.items():
                self.statistics.set(key, value)
            self.statistics.set("factor", factor)
            if factor == 1.0 or before == 0:
                self.statistics.add("tokens_after", before)
                return found
            merged, pooled = merge_voxels(found.coords, logits, factor, resolution)
            self.statistics.add("tokens_after", len(merged))
            self.statistics.set("pooled_logit_min", float(pooled.min()))
            return dataclasses.replace(found, coords=merged.to(found.coords.dtype), factor=found.factor * factor)

        return coords

    def summary(self) -> dict[str, float]:
        c = self.statistics.counters
        if not c.get("tokens_before"):
            return {}
        return {"aggregation_factor": c.get("factor", 1.0), "slat_tokens_kept": c.get("tokens_after", 0) / c["tokens_before"]}
