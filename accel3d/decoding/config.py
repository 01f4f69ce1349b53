"""The decoding accelerators' one declaration each: ``hierarchical`` and ``adaptive_kv`` (torch-free).

Example::

    from accel3d.decoding.config import HierarchicalConfig

    HierarchicalConfig(band=2.5).knobs()   # {"min_resolution": 48, "band": 2.5, ...}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from accel3d.core.config import AcceleratorConfig, knob
from accel3d.core.validate import ArgumentError, check_bool, check_choice, check_float, check_int

BAND_UNITS = ("voxels", "field")
SLOPES = ("local", "global")
SQRT3 = math.sqrt(3.0)
KV_MODES = ("mean", "merge", "mass")
MAX_CELLS = 64  # cells per axis; 64^3 cells already leave most cells of a decoding chunk empty
BACKENDS = ("auto", "torch", "triton")  # accel3d.kernels' dispatch choices
DEFAULT_BOUND = 1.01  # Hunyuan3D-2's box half-side (accel3d.geometry.grid)


def _attention_path(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or any(not part for part in value.split(".")):
        raise ArgumentError(f"{name}: expected a dotted attribute path such as 'cross_attn_decoder.attn', got {value!r}")
    return value


@dataclass(frozen=True)
class HierarchicalConfig(AcceleratorConfig):
    """FlashVDM's hierarchical volume decoding (:class:`accel3d.decoding.HierarchicalDecoding`).

    The surface level and which side is inside are not knobs: they are the decoded stage's conventions
    (its ``level`` and ``inside``), read when the accelerator attaches. The chunking and progress knobs
    default to the stage's own settings.

    Example::

        HierarchicalDecoding(HierarchicalConfig(band=2.5))      # or HierarchicalDecoding(band=2.5)
    """

    NAME: ClassVar[str] = "hierarchical"
    STAGE: ClassVar[str] = "volume_decoder"
    _target_: str = "accel3d.decoding.HierarchicalDecoding"
    min_resolution: int = knob(
        48, "coarsest level: the target halved while >= this (256 -> 64, 128, 256; 384 -> 48, ..., 384)", check_int, low=2
    )
    band: float | None = knob(
        SQRT3,
        "how far from the surface to refine, in band_units; sqrt(3) voxels (a cell's diagonal) is exact wherever the slope bound "
        "holds; None turns the band off (field units only)",
        check_float,
        low=0.0,
        low_open=True,
        allow_none=True,
    )
    band_units: str = knob(
        "voxels",
        "voxels: the band in voxels of each level, read through the field's slope; field: |v - level| < band",
        check_choice,
        choices=BAND_UNITS,
    )
    slope_margin: float = knob(
        1.25, "the measured slope times this (a finite difference underestimates the steepest slope)", check_float, low=1.0
    )
    slope: str = knob(
        "local", "local: each sample's band from the slope near it; global: from the steepest slope anywhere", check_choice, choices=SLOPES
    )
    dilation: int = knob(0, "extra 3x3x3 dilations of the refinement mask, on top of the rule's own", check_int, low=0)
    verify: float | None = knob(
        None,
        "a share in (0, 1] of the never-decoded points to query afterwards as a check; None: no check",
        check_float,
        low=0.0,
        low_open=True,
        high=1.0,
        allow_none=True,
    )
    verify_tolerance: float = knob(
        1e-3, "warn when more of that sample than this is on the wrong side of the surface", check_float, low=0.0, low_open=True, high=1.0
    )
    verify_refine: bool = knob(True, "decode around each miss the check finds", check_bool)
    seed: int = knob(0, "the verification sample's seed", check_int, low=0)
    chunk_size: int | None = knob(None, "points per field call; None: the stage's", check_int, low=1, allow_none=True)
    progress: bool | None = knob(None, "show a progress bar; None: as the stage does", check_bool, allow_none=True)
    max_memory_bytes: int | None = knob(None, "cap on one chunk's working memory; None: the stage's", check_int, low=1, allow_none=True)

    def check_knobs(self) -> None:
        if self.band is None and self.band_units == "voxels":
            raise ArgumentError("band: expected a positive number of voxels, got None (None turns the band off only in field units)")


@dataclass(frozen=True)
class AdaptiveKVConfig(AcceleratorConfig):
    """FlashVDM's adaptive KV selection in a geo decoder's cross-attention (:class:`accel3d.decoding.AdaptiveKVSelection`).

    Meant for VAEs whose cross-attention is local, as Hunyuan3D-2's is; measure yours with
    :func:`accel3d.decoding.attention_sparsity` first (docs/decoding.md).

    Example::

        AdaptiveKVSelection(AdaptiveKVConfig(mode="mean"))      # or AdaptiveKVSelection(mode="mean")
    """

    NAME: ClassVar[str] = "adaptive_kv"
    STAGE: ClassVar[str] = "geo_decoder"
    _target_: str = "accel3d.decoding.AdaptiveKVSelection"
    mode: str = knob(
        "mass",
        "mass: the fewest keys holding `mass` of the attention, checked (error-bounded); FlashVDM's: mean, merge",
        check_choice,
        choices=KV_MODES,
    )
    topk: int | None = knob(
        None,
        "mean mode: a count of keys; None (and no topk_ratio): Hunyuan3D-2's rule (1024 of 3072, 256 of 512, else N/3)",
        check_int,
        low=1,
        allow_none=True,
    )
    topk_ratio: float | None = knob(
        None, "mean mode: a share of the keys in (0, 1]", check_float, low=0.0, low_open=True, high=1.0, allow_none=True
    )
    per_head: bool | None = knob(None, "None: FlashVDM's choice (per head in mean mode, shared in merge mode)", check_bool, allow_none=True)
    cells: int = knob(6, "cells per axis over the VAE's box; each cell picks its own keys", check_int, low=1, high=MAX_CELLS)
    sample_every: int | None = knob(
        None, "None: every 50th query (mean) or 30th (merge, mass) of a cell scores the keys", check_int, low=1, allow_none=True
    )
    threshold: float = knob(1e-6, "merge mode: keep keys whose probability exceeds this", check_float, low=0.0, high=1.0, high_open=True)
    mass: float = knob(
        0.999999,
        "mass mode: the share of each sampled query's attention its kept keys must hold (1 - 1e-6)",
        check_float,
        low=0.0,
        low_open=True,
        high=1.0,
    )
    tolerance: float = knob(
        0.01,
        "a cell whose kept keys move its output by more (relative) falls back to all keys (mass) or is warned about (mean, merge)",
        check_float,
        low=0.0,
        low_open=True,
    )
    check: bool = knob(True, "run that check on a few queries per cell (off: mass mode never falls back)", check_bool)
    dense_above: float = knob(
        0.9, "mass mode: a call keeping this share of the keys or more runs dense attention", check_float, low=0.0, low_open=True, high=1.0
    )
    probe_calls: int = knob(
        4, "mass mode: after this many all-dense calls on the same keys, the rest of the decode skips the selection", check_int, low=0
    )
    bound: float = knob(DEFAULT_BOUND, "half-side of the VAE's box, over which the cells are laid", check_float, low=0.0, low_open=True)
    attention: str = knob(
        "cross_attn_decoder.attn",
        "dotted path from the geo decoder to its cross-attention (a module with attend(q, k, v))",
        _attention_path,
    )
    backend: str | None = knob(
        None,
        "packed sparse attention backend: None/auto (Triton on CUDA, PyTorch on CPU), torch or triton",
        check_choice,
        choices=(None, *BACKENDS),
    )
    scale: float | None = knob(None, "attention logit scale; None: head_dim ** -0.5", check_float, low=0.0, low_open=True, allow_none=True)

    def check_knobs(self) -> None:
        if self.topk is not None and self.topk_ratio is not None:
            raise ArgumentError(
                f"topk, topk_ratio: give a count of keys or a share of them, not both (got {self.topk!r} and {self.topk_ratio!r})"
            )
