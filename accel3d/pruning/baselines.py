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
baseline is therefore the matching Fast-SAM3D module run on a config (:mod:`accel3d.pruning.config`) that
turns off the feature that distinguishes it, so the comparison isolates that feature.
"""

from __future__ import annotations

from collections.abc import Sequence

from accel3d.pruning.aggregation import SpectralAggregation
from accel3d.pruning.config import EasyCacheConfig, RandomDropConfig, TaylorSeerConfig, UniformMergeConfig
from accel3d.pruning.step_cache import ModalityStepCache
from accel3d.pruning.token_carving import TokenCarving


class UniformTaylorCache(ModalityStepCache):
    """TaylorSeer-style uniform step caching: :class:`ModalityStepCache` with every group extrapolated alike.

    Example::

        with UniformTaylorCache(stride=3).applied(pipeline.stage("ss_sampler")):
            result = pipeline.run(inputs)
    """

    Config = TaylorSeerConfig


class EasyCacheSkip(TokenCarving):
    """EasyCache-style whole-step skipping: :class:`TokenCarving` with no carving.

    Example::

        with EasyCacheSkip(skip_threshold=1.5).applied(pipeline.stage("slat_sampler")):
            result = pipeline.run(inputs)
    """

    Config = EasyCacheConfig


class RandomTokenDrop(TokenCarving):
    """Random token drop: :class:`TokenCarving` at the same ratio with random scores, no step skipping.

    Example::

        with RandomTokenDrop(ratio=0.1, seed=0).applied(pipeline.stage("slat_sampler")):
            result = pipeline.run(inputs)
    """

    Config = RandomDropConfig


class UniformTokenMerge(SpectralAggregation):
    """Uniform token merge: :class:`SpectralAggregation` at one fixed factor for every object.

    Example::

        with UniformTokenMerge(factor=1.5).applied(pipeline.stage("sparse_structure")):
            result = pipeline.run(inputs)
    """

    Config = UniformMergeConfig


BASELINES: Sequence[type] = (UniformTaylorCache, EasyCacheSkip, RandomTokenDrop, UniformTokenMerge)
