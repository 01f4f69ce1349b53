"""Fast-SAM3D for two-stage flow pipelines (sparse structure -> structured latent -> mesh).

- :class:`ModalityStepCache` (stage ``ss_sampler``): full steps on a schedule, Taylor
  extrapolation of shape tokens and an anchored blend of layout tokens in between;
- :class:`TokenCarving` (stage ``slat_sampler``): the least salient tokens keep their velocity,
  the rest go through the model as a smaller set; whole steps are skipped while the
  accumulated relative change stays under a threshold;
- :class:`SpectralAggregation` (stage ``sparse_structure``): a 2D/3D high-frequency energy score
  picks a factor; the structure is shrunk by it, merged voxels max-pooled, the layout scale compensated;
- the baselines (:mod:`accel3d.pruning.baselines`): ``taylorseer``, ``easycache``, ``random_drop``, ``uniform_merge``.

Each is declared once in :mod:`accel3d.pruning.config` (torch-free). Names load on first use, so that
reading the configs (``accel3d list``) does not import torch.

Example::

    from accel3d.pruning import ModalityStepCache
    with ModalityStepCache(stride=3, beta=0.7).applied(pipeline.stage("ss_sampler")):
        result = pipeline.run(inputs)
"""

from accel3d.core.lazy import lazy_exports

_EXPORTS = {
    "SpectralAggregation": "aggregation",
    "EasyCacheSkip": "baselines",
    "RandomTokenDrop": "baselines",
    "UniformTaylorCache": "baselines",
    "UniformTokenMerge": "baselines",
    "ModalityStepCache": "step_cache",
    "TokenCarving": "token_carving",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
