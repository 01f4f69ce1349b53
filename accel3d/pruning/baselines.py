"""The baselines Fast-SAM3D is compared with, on the same protocol and stages as its modules.

- ``taylorseer`` (stage ``ss_sampler``): uniform step caching in the style of TaylorSeer: a full step
  every ``stride``, first-order Taylor in between, every token alike (no layout anchor);
- ``easycache`` (``slat_sampler``): whole-step skipping in the style of EasyCache: while the accumulated
  ``k |dx| / |v|`` stays under the threshold, reuse output minus input; no token carving;
- ``random_drop`` (``slat_sampler``): token carving at the same ratio with random scores instead of saliency;
- ``uniform_merge`` (``sparse_structure``): the structure quantised and max-merged at one fixed factor for
  every object.

Why by hand: diffusers' ``TaylorSeerCacheConfig`` / ``MagCacheConfig`` hooks need tensor-valued blocks
registered in its ``TransformerBlockRegistry`` and a cache context per CFG pass; SAM 3D Objects' MoT blocks
return dicts and TRELLIS's SLaT blocks ``SparseTensor`` s, and diffusers has no EasyCache hook. Each
baseline is therefore the matching Fast-SAM3D module with the feature that distinguishes it turned off,
so the comparison isolates that feature.
"""

from __future__ import annotations

from collections.abc import Sequence

from accel3d.core.registry import register_accelerator
from accel3d.pruning.aggregation import SpectralAggregation
from accel3d.pruning.step_cache import ModalityStepCache
from accel3d.pruning.token_carving import TokenCarving


@register_accelerator("taylorseer")
class UniformTaylorCache(ModalityStepCache):
    """TaylorSeer-style uniform step caching: :class:`ModalityStepCache` with every group extrapolated alike.

    Example::

        with UniformTaylorCache(stride=3).applied(pipeline.stage("ss_sampler")):
            result = pipeline.run(inputs)
    """

    name = "taylorseer"
    stage = "ss_sampler"  # stated here too: `accel3d list` reads stages from the source

    def __init__(self, warmup: int = 2, stride: int = 3, order: int = 1) -> None:
        super().__init__(warmup=warmup, stride=stride, beta=1.0, order=order, layout_groups=())


@register_accelerator("easycache")
class EasyCacheSkip(TokenCarving):
    """EasyCache-style whole-step skipping: :class:`TokenCarving` with no carving.

    Example::

        with EasyCacheSkip(skip_threshold=1.5).applied(pipeline.stage("slat_sampler")):
            result = pipeline.run(inputs)
    """

    name = "easycache"
    stage = "slat_sampler"

    def __init__(self, warmup: int = 3, skip_threshold: float = 1.5, rate: str = "ema", force_last: bool = True) -> None:
        super().__init__(warmup=warmup, ratio=0.0, skip_threshold=skip_threshold, rate=rate, force_last=force_last)


@register_accelerator("random_drop")
class RandomTokenDrop(TokenCarving):
    """Random token drop: :class:`TokenCarving` at the same ratio with random scores, no step skipping.

    Example::

        with RandomTokenDrop(ratio=0.1, seed=0).applied(pipeline.stage("slat_sampler")):
            result = pipeline.run(inputs)
    """

    name = "random_drop"
    stage = "slat_sampler"

    def __init__(self, warmup: int = 3, ratio: float = 0.1, max_stale: int = 4, seed: int = 0) -> None:
        super().__init__(warmup=warmup, ratio=ratio, max_stale=max_stale, weighting="random", skip_threshold=0.0, seed=seed)


@register_accelerator("uniform_merge")
class UniformTokenMerge(SpectralAggregation):
    """Uniform token merge: :class:`SpectralAggregation` at one fixed factor for every object.

    Example::

        with UniformTokenMerge(factor=1.5).applied(pipeline.stage("sparse_structure")):
            result = pipeline.run(inputs)
    """

    name = "uniform_merge"
    stage = "sparse_structure"

    def __init__(self, factor: float = 1.5, min_tokens: int = 2048, reference_resolution: int = 64, scale_factors: bool = True) -> None:
        super().__init__(factor=factor, min_tokens=min_tokens, reference_resolution=reference_resolution, scale_factors=scale_factors)


BASELINES: Sequence[type] = (UniformTaylorCache, EasyCacheSkip, RandomTokenDrop, UniformTokenMerge)
