"""Fast-SAM3D's modules and their baselines, one declaration each (torch-free).

A baseline is the matching module with the feature that distinguishes it turned off. Its config
declares only the knobs it keeps; what it turns off is a class variable (``TaylorSeerConfig.beta = 1``:
no layout anchor), and what it does not use is read from the module's defaults.

Example::

    from accel3d.pruning.config import ModalityCacheConfig

    ModalityCacheConfig(stride=3, beta=0.7).knobs()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from accel3d.core.config import AcceleratorConfig, knob, knob_from
from accel3d.core.validate import ArgumentError, check_bool, check_choice, check_float, check_floats, check_int, check_names, check_seed

WEIGHTINGS = ("paper", "code", "random")
RATES = ("ema", "curvature")
# scripts/calibrate_spectral.py on renders of the training meshes (docs/results/spectral_calibration.json):
CALIBRATED_SCALES: tuple[float, float] = (2.98e-6, 0.651)  # each HFER's median (2D mask, 3D occupancy)
CALIBRATED_TAU: tuple[float, float] = (0.332, 6.63)  # the mixed score's terciles (tau_low, tau_high)


def _scales(name: str, value: Any) -> tuple[float, ...]:
    return check_floats(name, value, 2, "two positive scales (2D, 3D)", low=0.0, low_open=True)


def _factors(name: str, value: Any) -> tuple[float, ...]:
    return check_floats(name, value, 3, "three factors (gentle, middle, strong)", low=1.0, high=16.0)


@dataclass(frozen=True)
class ModalityCacheConfig(AcceleratorConfig):
    """Fast-SAM3D's modality-aware step caching (:class:`accel3d.pruning.ModalityStepCache`).

    Full SS steps in warm-up, then every ``stride``-th and the last; in between shape tokens are
    Taylor-extrapolated and layout tokens blended with the last full evaluation (the paper's anchor;
    the public code has none: ``beta`` 1).

    Example::

        ModalityStepCache(ModalityCacheConfig(stride=3))   # or ModalityStepCache(stride=3)
    """

    NAME: ClassVar[str] = "modality_cache"
    STAGE: ClassVar[str] = "ss_sampler"
    _target_: str = "accel3d.pruning.ModalityStepCache"
    warmup: int = knob(2, "full steps first (paper and code: 2)", check_int, low=0)
    stride: int = knob(
        3, "k: a full step every k after the warm-up; 1 = every step (exact); k >= 4 drifts the pose (paper)", check_int, low=1
    )
    beta: float = knob(0.7, "layout blend beta * v_lin + (1 - beta) * v_anchor; the paper gives 0.5-0.7", check_float, low=0.0, high=1.0)
    order: int = knob(1, "Taylor order: 1 (the paper) or 2 (three full evaluations)", check_int, low=1, high=2)
    layout_groups: Any = knob(
        ("layout",), "token groups that get the anchored blend (a one-group stage, like TRELLIS's SS flow, has none)", check_names
    )


@dataclass(frozen=True)
class TokenCarvingConfig(AcceleratorConfig):
    """Fast-SAM3D's spatiotemporal token carving with adaptive step skipping (:class:`accel3d.pruning.TokenCarving`).

    On computed steps the least salient tokens keep their previous velocity and the rest go through the
    model as a smaller set; whole steps are skipped (``v = x_t + (v_last - x_last)``) while the accumulated
    relative change stays under a threshold.

    Example::

        TokenCarving(TokenCarvingConfig(ratio=0.1))   # or TokenCarving(ratio=0.1)
    """

    NAME: ClassVar[str] = "token_carving"
    STAGE: ClassVar[str] = "slat_sampler"
    _target_: str = "accel3d.pruning.TokenCarving"
    warmup: int = knob(3, "steps computed in full first; carving and skipping start after them", check_int, low=0)
    ratio: float = knob(
        0.1, "share of tokens carved on a computed step, in [0, 1); 0 = none", check_float, low=0.0, high=1.0, high_open=True
    )
    max_stale: int = knob(
        4, "a token cached this many steps in a row is forced to update (the paper; the public code: 5)", check_int, low=1
    )
    gamma: float = knob(1.0, "weight of the abrupt change A in J = (M + gamma A) / 2 + S_freq / 2", check_float, low=0.0)
    weighting: str = knob(
        "paper",
        "paper | code (0.3 S_freq + 0.7 (0.7 A + 0.3 M), the public code's) | random (the random-drop baseline)",
        check_choice,
        choices=WEIGHTINGS,
    )
    freq_radius: float = knob(0.125, "S_freq's low-frequency sphere, a share of the grid side (8 of 64)", check_float, low=0.0, high=1.0)
    resolution: int | None = knob(  # at most 256: S_freq's FFT holds resolution^3 complex128 values (256 MiB at 256)
        None,
        "the structure grid's side for S_freq (it must hold the voxel coordinates); None: the smallest power of two holding them",
        check_int,
        low=2,
        high=256,
        allow_none=True,
    )
    skip_threshold: float = knob(1.5, "E at which a step is computed again (the public code's 1.5); 0 = never skip", check_float, low=0.0)
    rate: str = knob(
        "ema",
        "k in eps = k |dx| / |v|: ema (0.7 k + 0.3 kappa, the code's smoothing) | curvature (the latest kappa, the paper)",
        check_choice,
        choices=RATES,
    )
    force_last: bool = knob(True, "always compute the last step (the public code may skip it)", check_bool)
    token_kwargs: Any = knob(
        ("coords", "mask"), "the velocity's keyword arguments that hold one row per token (gathered with them)", check_names
    )
    seed: int = knob(0, "the random scores of weighting=random (restarted by reset)", check_seed)

    def check_knobs(self) -> None:
        if self.ratio > 0 and "coords" not in self.token_kwargs:
            # carving reads the coordinates (S_freq) and must send the model the kept tokens' rows of them
            raise ArgumentError(
                f"token_kwargs: expected 'coords' among the per-token arguments when carving (ratio {self.ratio:g}), "
                f"got {list(self.token_kwargs)}"
            )


@dataclass(frozen=True)
class SpectralAggregationConfig(AcceleratorConfig):
    """Fast-SAM3D's spectral-aware token aggregation (:class:`accel3d.pruning.SpectralAggregation`), between the
    two stages, where the public code applies it (the paper places it at the mesh decoder).

    ``H = w HFER(mask) / s_2D + (1 - w) HFER(occupancy) / s_3D`` picks the factor; the structure is shrunk by it
    about the grid centre, merged voxels are max-pooled and the layout scale multiplied by the factor.

    Example::

        SpectralAggregation(SpectralAggregationConfig(factor=1.5))   # a fixed factor instead of the routing
    """

    NAME: ClassVar[str] = "spectral_aggregation"
    STAGE: ClassVar[str] = "sparse_structure"
    _target_: str = "accel3d.pruning.SpectralAggregation"
    mask_weight: float = knob(0.9, "w of the 2D mask's HFER", check_float, low=0.0, high=1.0)
    hfer_scales: Any = knob(CALIBRATED_SCALES, "(2D, 3D): each ratio's median on the calibration set", _scales)
    tau_high: float = knob(
        CALIBRATED_TAU[1], "H >= tau_high: the gentle factor (the calibration set's upper tercile)", check_float, low=0.0
    )
    tau_low: float = knob(CALIBRATED_TAU[0], "H > tau_low: the middle one; else the strong one (lower tercile)", check_float, low=0.0)
    factors: Any = knob(
        (1.25, 1.5, 2.0), "(gentle, middle, strong) at reference_resolution; at a side R: 1 + (S - 1) R / reference", _factors
    )
    # at most 4096: the resized mask and its FFT take mask_size^2 values each (16.8M, 256 MiB of complex128, at 4096);
    # the paper's is 256, and a larger side only resamples the same mask more finely
    mask_size: int = knob(256, "the mask crop is resized to this square", check_int, low=8, high=4096)
    mask_radius: float = knob(0.15, "2D low-frequency radius, a share of mask_size", check_float, low=0.0, high=1.0)
    occupancy_radius: float = knob(0.125, "3D low-frequency radius, a share of the grid side (8 of 64)", check_float, low=0.0, high=1.0)
    min_tokens: int = knob(
        2048, "no aggregation below this many voxels at reference_resolution (scaled by the area ratio)", check_int, low=0
    )
    reference_resolution: int = knob(64, "the grid side min_tokens and factors are given at (SAM3D's 64^3)", check_int, low=1)
    scale_factors: bool = knob(True, "false: the factors as given, at any grid side", check_bool)
    factor: float | None = knob(None, "a fixed factor instead of the routing; 1 = off", check_float, low=1.0, high=16.0, allow_none=True)

    def check_knobs(self) -> None:
        if self.tau_low > self.tau_high:
            raise ArgumentError(f"tau_low: expected at most tau_high ({self.tau_high}), got {self.tau_low}")


@dataclass(frozen=True)
class TaylorSeerConfig(AcceleratorConfig):
    """Baseline: TaylorSeer-style uniform step caching (:class:`accel3d.pruning.UniformTaylorCache`): a full step
    every stride, first-order Taylor in between, every token group alike (no layout anchor).

    Example::

        UniformTaylorCache(stride=3)
    """

    NAME: ClassVar[str] = "taylorseer"
    STAGE: ClassVar[str] = "ss_sampler"
    beta: ClassVar[float] = 1.0  # off: no layout anchor
    layout_groups: ClassVar[tuple[str, ...]] = ()  # every group extrapolated alike
    _target_: str = "accel3d.pruning.UniformTaylorCache"
    warmup: int = knob_from(ModalityCacheConfig, "warmup")
    stride: int = knob_from(ModalityCacheConfig, "stride")
    order: int = knob_from(ModalityCacheConfig, "order")


@dataclass(frozen=True)
class EasyCacheConfig(AcceleratorConfig):
    """Baseline: EasyCache-style whole-step skipping (:class:`accel3d.pruning.EasyCacheSkip`): reuse output minus
    input while the accumulated ``k |dx| / |v|`` stays under the threshold; no token carving.

    Example::

        EasyCacheSkip(skip_threshold=1.5)
    """

    NAME: ClassVar[str] = "easycache"
    STAGE: ClassVar[str] = "slat_sampler"
    ratio: ClassVar[float] = 0.0  # off: no token carving
    max_stale: ClassVar[int] = TokenCarvingConfig.max_stale
    gamma: ClassVar[float] = TokenCarvingConfig.gamma
    weighting: ClassVar[str] = TokenCarvingConfig.weighting
    freq_radius: ClassVar[float] = TokenCarvingConfig.freq_radius
    resolution: ClassVar[int | None] = TokenCarvingConfig.resolution
    token_kwargs: ClassVar[tuple[str, ...]] = TokenCarvingConfig.token_kwargs
    seed: ClassVar[int] = TokenCarvingConfig.seed
    _target_: str = "accel3d.pruning.EasyCacheSkip"
    warmup: int = knob_from(TokenCarvingConfig, "warmup")
    skip_threshold: float = knob_from(TokenCarvingConfig, "skip_threshold")
    rate: str = knob_from(TokenCarvingConfig, "rate")
    force_last: bool = knob_from(TokenCarvingConfig, "force_last")


@dataclass(frozen=True)
class RandomDropConfig(AcceleratorConfig):
    """Baseline: random token drop (:class:`accel3d.pruning.RandomTokenDrop`): token carving's ratio with random
    scores instead of saliency, no step skipping.

    Example::

        RandomTokenDrop(ratio=0.1, seed=0)
    """

    NAME: ClassVar[str] = "random_drop"
    STAGE: ClassVar[str] = "slat_sampler"
    weighting: ClassVar[str] = "random"  # off: saliency
    skip_threshold: ClassVar[float] = 0.0  # off: step skipping
    gamma: ClassVar[float] = TokenCarvingConfig.gamma
    freq_radius: ClassVar[float] = TokenCarvingConfig.freq_radius
    resolution: ClassVar[int | None] = TokenCarvingConfig.resolution
    rate: ClassVar[str] = TokenCarvingConfig.rate
    force_last: ClassVar[bool] = TokenCarvingConfig.force_last
    token_kwargs: ClassVar[tuple[str, ...]] = TokenCarvingConfig.token_kwargs
    _target_: str = "accel3d.pruning.RandomTokenDrop"
    warmup: int = knob_from(TokenCarvingConfig, "warmup")
    ratio: float = knob_from(
        TokenCarvingConfig, "ratio", doc="share of tokens dropped at random (keeping their previous velocity), in [0, 1)"
    )
    max_stale: int = knob_from(TokenCarvingConfig, "max_stale")
    seed: int = knob_from(TokenCarvingConfig, "seed", doc="the random scores")


@dataclass(frozen=True)
class UniformMergeConfig(AcceleratorConfig):
    """Baseline: uniform token merge (:class:`accel3d.pruning.UniformTokenMerge`): every object's structure quantised
    and max-merged at one fixed factor, whatever its complexity.

    Example::

        UniformTokenMerge(factor=1.5)
    """

    NAME: ClassVar[str] = "uniform_merge"
    STAGE: ClassVar[str] = "sparse_structure"
    mask_weight: ClassVar[float] = SpectralAggregationConfig.mask_weight  # the routing's knobs: unused with a fixed factor
    hfer_scales: ClassVar[tuple[float, float]] = SpectralAggregationConfig.hfer_scales
    tau_high: ClassVar[float] = SpectralAggregationConfig.tau_high
    tau_low: ClassVar[float] = SpectralAggregationConfig.tau_low
    factors: ClassVar[tuple[float, ...]] = SpectralAggregationConfig.factors
    mask_size: ClassVar[int] = SpectralAggregationConfig.mask_size
    mask_radius: ClassVar[float] = SpectralAggregationConfig.mask_radius
    occupancy_radius: ClassVar[float] = SpectralAggregationConfig.occupancy_radius
    _target_: str = "accel3d.pruning.UniformTokenMerge"
    factor: float = knob(  # never None: a fixed factor is what this baseline is
        1.5, "the one factor at reference_resolution, converted alike (1.25 at a 32^3 grid)", check_float, low=1.0, high=16.0
    )
    min_tokens: int = knob_from(SpectralAggregationConfig, "min_tokens")
    reference_resolution: int = knob_from(SpectralAggregationConfig, "reference_resolution")
    scale_factors: bool = knob_from(SpectralAggregationConfig, "scale_factors")
