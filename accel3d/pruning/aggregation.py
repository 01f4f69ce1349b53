"""Spectral-aware token aggregation (Fast-SAM3D): fewer SLaT tokens for simple objects, between the two stages.

Attaches to the ``sparse_structure`` stage: an object whose ``coords(logits, mask)`` returns the
voxels the SLaT flow samples over as a dataclass with ``coords`` ``[N, 3]``, ``factor`` and
``occupied`` (accel3d's :class:`~accel3d.pipelines.image_to_3d_stages.SparseCoords`), and with a
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
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from accel3d.core.accelerator import BaseAccelerator
from accel3d.core.registry import register_accelerator
from accel3d.core.validate import ArgumentError, check_bool, check_float, check_int
from accel3d.kernels import scatter_max_rows
from accel3d.pruning.spectral import CALIBRATED_SCALES, CALIBRATED_TAU, mask_hfer, occupancy_hfer, quantise_about_centre, route_factor


def check_floats(name: str, value: Any, count: int, what: str, **bounds: Any) -> tuple[float, ...]:
    """``value`` as ``count`` checked floats, or an error naming ``name`` (``name[i]`` for one entry)."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != count:
        raise ArgumentError(f"{name}: expected {what}, got {value!r}")
    return tuple(check_float(f"{name}[{i}]", v, **bounds) for i, v in enumerate(value))  # type: ignore[misc]


def merge_voxels(coords: Tensor, logits: Tensor, factor: float, resolution: int) -> tuple[Tensor, Tensor]:
    """The structure shrunk by ``factor``: unique voxels (C order) and each one's max-pooled logit."""
    shrunk = quantise_about_centre(coords, factor, resolution)
    unique, inverse = torch.unique(shrunk, dim=0, return_inverse=True)
    values = logits[coords[:, 0], coords[:, 1], coords[:, 2]].float()[:, None]
    pooled = scatter_max_rows(values, inverse, len(unique), empty_value=float("-inf"))
    return unique, pooled[:, 0]


@register_accelerator("spectral_aggregation")
class SpectralAggregation(BaseAccelerator):
    """Fast-SAM3D's spectral-aware token aggregation on the ``sparse_structure`` stage.

    Args:
        mask_weight: ``w`` of the 2D mask's HFER in the mix (0.9).
        hfer_scales: (2D, 3D) units the two ratios are divided by before mixing (calibrated medians).
        tau_high, tau_low: the routing thresholds on the mixed score (calibrated terciles).
        factors: (gentle, middle, strong) factors (1.25, 1.5, 2.0) at ``reference_resolution``.
        mask_size, mask_radius: the 2D HFER's resize side (256) and low-frequency radius as a share of it (0.15).
        occupancy_radius: the 3D HFER's low-frequency radius as a share of the grid side (8 of 64).
        min_tokens: no aggregation below this many voxels at ``reference_resolution`` (2048 at 64, SAM3D's grid).
        reference_resolution: the grid side ``min_tokens`` and the factors are given at.
        scale_factors: convert the factors to the stage's grid side (``1 + (S - 1) R / reference_resolution``);
            False takes them as given.
        factor: a fixed factor instead of the spectral routing (1 = no aggregation), converted alike.

    Example::

        aggregation = SpectralAggregation()
        with aggregation.applied(pipeline.stage("sparse_structure")):
            result = pipeline.run(inputs)
        aggregation.stats()   # factor, hfer_2d, hfer_3d, score, tokens_before, tokens_after
    """

    name = "spectral_aggregation"
    stage = "sparse_structure"

    def __init__(
        self,
        mask_weight: float = 0.9,
        hfer_scales: Sequence[float] = CALIBRATED_SCALES,
        tau_high: float = CALIBRATED_TAU[1],
        tau_low: float = CALIBRATED_TAU[0],
        factors: Sequence[float] = (1.25, 1.5, 2.0),
        mask_size: int = 256,
        mask_radius: float = 0.15,
        occupancy_radius: float = 8 / 64,
        min_tokens: int = 2048,
        reference_resolution: int = 64,
        scale_factors: bool = True,
        factor: float | None = None,
    ) -> None:
        super().__init__()
        self.mask_weight = check_float("mask_weight", mask_weight, low=0.0, high=1.0)
        self.hfer_scales = check_floats("hfer_scales", hfer_scales, 2, "two positive scales (2D, 3D)", low=0.0, low_open=True)
        self.tau_high = check_float("tau_high", tau_high, low=0.0)
        self.tau_low = check_float("tau_low", tau_low, low=0.0)
        if self.tau_low > self.tau_high:
            raise ArgumentError(f"tau_low: expected at most tau_high ({self.tau_high}), got {self.tau_low}")
        self.factors = check_floats("factors", factors, 3, "three factors (gentle, middle, strong)", low=1.0, high=16.0)
        self.mask_size = check_int("mask_size", mask_size, low=8)
        self.mask_radius = check_float("mask_radius", mask_radius, low=0.0, high=1.0)
        self.occupancy_radius = check_float("occupancy_radius", occupancy_radius, low=0.0, high=1.0)
        self.min_tokens = check_int("min_tokens", min_tokens, low=0)
        self.reference_resolution = check_int("reference_resolution", reference_resolution, low=1)
        self.scale_factors = check_bool("scale_factors", scale_factors)
        self.factor = check_float("factor", factor, low=1.0, high=16.0, allow_none=True)
        self._resolution: Callable[[], int] = lambda: 0

    def _attach(self, target: Any) -> None:
        if not callable(getattr(target, "coords", None)) or not isinstance(getattr(target, "resolution", None), int):
            raise TypeError(
                f"{self.name}: expected a sparse-structure stage with coords(logits, mask) and an int resolution, "
                f"got {type(target).__name__}"
            )
        self._resolution = lambda: target.resolution
        self.patches.wrap(target, "coords", self._wrap)

    def min_tokens_at(self, resolution: int) -> int:
        """The token guard at a grid of side ``resolution`` (``min_tokens`` scaled by the area ratio)."""
        return int(round(self.min_tokens * (resolution / self.reference_resolution) ** 2))

    def factor_at(self, factor: float, resolution: int) -> float:
        """A factor given at ``reference_resolution`` as it applies to a grid of side ``resolution``."""
        if not self.scale_factors:
            return factor
        return 1.0 + (factor - 1.0) * resolution / self.reference_resolution

    def score(self, hfer_2d: float | None, hfer_3d: float) -> float:
        """The mixed score ``w HFER_2D / s_2D + (1 - w) HFER_3D / s_3D`` (without a mask: the 3D term alone)."""
        w = self.mask_weight if hfer_2d is not None else 0.0
        return w * (hfer_2d or 0.0) / self.hfer_scales[0] + (1 - w) * hfer_3d / self.hfer_scales[1]

    def choose(self, logits: Tensor, mask: Tensor | None) -> tuple[float, dict[str, float]]:
        """The factor for this object (at ``reference_resolution``) and the figures it was chosen from."""
        h3 = occupancy_hfer(logits > 0, self.occupancy_radius)
        h2 = mask_hfer(mask, self.mask_size, self.mask_radius) if mask is not None else None
        score = self.score(h2, h3)
        figures = {"hfer_3d": h3, "score": score, **({"hfer_2d": h2} if h2 is not None else {})}
        return route_factor(score, self.tau_high, self.tau_low, self.factors), figures

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def coords(logits: Tensor, mask: Tensor | None = None) -> Any:
            found = original(logits, mask)
            resolution = self._resolution()
            before = len(found.coords)
            self.statistics.add("calls")
            self.statistics.add("tokens_before", before)
            if self.factor is not None:
                factor, figures = self.factor, {}
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
