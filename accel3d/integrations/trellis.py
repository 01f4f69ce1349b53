"""TRELLIS v1's flow samplers as accel3d stages.

TRELLIS (MIT licence; ``trellis.pipelines.samplers``) samples both of its stages with Euler samplers
(``FlowEulerSampler``, ``FlowEulerCfgSampler``, ``FlowEulerGuidanceIntervalSampler``). Their time runs
from 1 (noise) to 0 (data): ``t_seq = linspace(1, 0, steps + 1)`` rescaled by ``t' = r t / (1 + (r - 1) t)``,
and each step is ``x <- x - (t - t_prev) v``. ``sample_once`` asks ``sampler._inference_model(model,
x_t, t, cond, **kwargs)`` for the step's velocity, CFG included (``(1 + s) v_cond - s v_neg`` where the
sampler guides); that is the one call :class:`TrellisFlowStage` routes through its ``velocity``.

Token groups: the sparse-structure flow's state is one dense grid (``{"shape": ()}``), the structured
latent's one sparse tensor (``{"slat": ()}``); an empty key tuple means the whole state. One object's sparse
tensor reaches accelerators as tensor-plus-coordinates, the form token carving cuts: its features as ``[1, N, C]``
tokens and its voxels as ``coords=`` ``[1, N, 3]``; a subset of them is computed as a new ``SparseTensor``
of those voxels (several objects' states stay ``SparseTensor``s, which accelerators only step-skip).

Nothing here imports TRELLIS: the adapter takes the sampler and the model (the pipeline's own objects).

Example::

    from accel3d.integrations.trellis import attach_pipeline

    stages = attach_pipeline(pipeline)           # a trellis TrellisImageTo3DPipeline
    stages["ss_sampler"].token_groups            # {"shape": ()}
    outputs = pipeline.run(image)                # every step goes through stages[...].velocity
    for stage in stages.values():
        stage.detach()
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from accel3d.integrations.flow_adapter import FlowStageAdapter, attach_all, object_rows, pipeline_models
from accel3d.integrations.sparse_structure import SparseStructureStage

TRELLIS_SS_TOKEN_GROUPS: dict[str, tuple[str, ...]] = {"shape": ()}
TRELLIS_SLAT_TOKEN_GROUPS: dict[str, tuple[str, ...]] = {"slat": ()}

# TRELLIS flow-model classes (any class in the model's MRO) -> their token groups
_GROUPS_BY_CLASS: dict[str, dict[str, tuple[str, ...]]] = {
    "SparseStructureFlowModel": TRELLIS_SS_TOKEN_GROUPS,
    "SLatFlowModel": TRELLIS_SLAT_TOKEN_GROUPS,
    "ElasticSLatFlowModel": TRELLIS_SLAT_TOKEN_GROUPS,
}

# the TRELLIS pipeline's attributes: accel3d stage name -> (sampler attribute, key of pipeline.models)
PIPELINE_STAGES: dict[str, tuple[str, str]] = {
    "ss_sampler": ("sparse_structure_sampler", "sparse_structure_flow_model"),
    "slat_sampler": ("slat_sampler", "slat_flow_model"),
}


def default_token_groups(model: Any) -> dict[str, tuple[str, ...]]:
    """``{"shape": ()}`` for a ``SparseStructureFlowModel``, ``{"slat": ()}`` for a ``SLatFlowModel`` (by class name, MRO included).

    Example::

        default_token_groups(pipeline.models["slat_flow_model"])   # {"slat": ()}
    """
    for cls in type(model).__mro__:
        if cls.__name__ in _GROUPS_BY_CLASS:
            return dict(_GROUPS_BY_CLASS[cls.__name__])
    known = ", ".join(sorted(_GROUPS_BY_CLASS))
    raise ValueError(
        f"token_groups: {type(model).__name__} is none of TRELLIS's flow models ({known}); "
        "pass token_groups={'name': ()} (an empty key tuple: the whole state)"
    )


def _steps_argument(signature: inspect.Signature | None, args: tuple, kwargs: dict) -> int | None:
    """The ``steps`` a ``sampler.sample(...)`` call runs (its default where not passed), or None if unreadable."""
    if signature is None:
        return None
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    steps = bound.arguments.get("steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


class TrellisFlowStage(FlowStageAdapter):
    """A TRELLIS Euler sampler whose per-step velocity goes through :meth:`velocity`.

    Args:
        sampler: a ``trellis.pipelines.samplers`` sampler (``FlowEulerSampler`` or a CFG subclass);
            attached, its instance attribute ``_inference_model`` calls this stage, and ``sample``
            restarts the step count.
        model: the flow model the sampler is run with (``pipeline.models["sparse_structure_flow_model"]``
            or ``["slat_flow_model"]``); used when :meth:`velocity` is called without ``model=``, and
            exposed as ``stage.model`` for accelerators that hook inside it.
        token_groups: default: from the model's class (:func:`default_token_groups`).

    Example::

        stage = TrellisFlowStage(pipeline.sparse_structure_sampler, pipeline.models["sparse_structure_flow_model"])
        with stage:                                    # or stage.attach() ... stage.detach()
            patches = PatchSet("count")
            patches.wrap(stage, "velocity", lambda original: lambda *a, **k: original(*a, **k))
            z = pipeline.sparse_structure_sampler.sample(flow_model, noise, cond, neg_cond, steps=25).samples
            patches.restore()
    """

    name = "trellis_flow_stage"
    step_attribute = "_inference_model"
    entry_attribute = "sample"

    def __init__(self, sampler: Any, model: Any, token_groups: Mapping[str, tuple[str, ...]] | None = None) -> None:
        super().__init__(sampler, model, token_groups if token_groups is not None else default_token_groups(model))
        self._sparse: Any = None  # the sparse state of the step in progress (one object's)

    @property
    def sampler(self) -> Any:
        """The wrapped TRELLIS sampler."""
        return self.target

    def _step_function(self) -> Callable[..., Any]:
        def inference_model(model: Any, x_t: Any, t: Any, cond: Any = None, **kwargs: Any) -> Any:
            step = self._next_step()
            coords = one_object_coords(x_t)
            if coords is None:
                return self.velocity(x_t, t, cond, step, model=model, **kwargs)
            # one object's sparse tensor: accelerators see its features as [1, N, C] tokens and its voxels as coords
            self._sparse = x_t
            v = self.velocity(x_t.feats[None], t, cond, step, model=model, coords=coords, **kwargs)
            return x_t.replace(v[0])

        return inference_model

    def _rebuilt(self, tokens: Any, coords: Any) -> Any:
        """The sparse tensor of ``tokens`` ``[1, n, C]`` at ``coords`` ``[1, n, 3]``: the step's own one with new
        features, or (a subset of its voxels, as token carving asks for) a new one of TRELLIS's class."""
        template = self._sparse
        if tokens.shape[1] == template.feats.shape[0]:
            return template.replace(tokens[0])
        rows = object_rows(coords[0]).to(template.coords)
        return type(template)(feats=tokens[0], coords=rows)

    def _entry_function(self, original: Callable[..., Any]) -> Callable[..., Any]:
        try:
            signature: inspect.Signature | None = inspect.signature(original)
        except (TypeError, ValueError):
            signature = None

        def sample(*args: Any, **kwargs: Any) -> Any:
            self._begin(_steps_argument(signature, args, kwargs))
            return original(*args, **kwargs)

        return sample

    def velocity(self, x: Any, t: Any, cond: Any, step: int, model: Any = None, coords: Any = None, **kwargs: Any) -> Any:
        """The sampler's own (guided) velocity: ``sampler._inference_model(model, x, t, cond, **kwargs)`` as it was before attaching.

        Args:
            x: the state: a dense tensor (the SS), or the SLaT's features as ``[1, N, C]`` tokens (one object's
                ``SparseTensor``; several objects' stay a ``SparseTensor``).
            t: TRELLIS's time (1 = noise, 0 = data; :meth:`progress` gives accel3d's).
            cond: the condition tokens.
            step: the step's index in the trajectory (0 first).
            model: the flow model the sampler was called with (default: ``self.model``).
            coords: the tokens' voxels ``[1, N, 3]`` (x, y, z) where ``x`` is one object's sparse features; a
                subset of the step's tokens (token carving) is computed as a sparse tensor of those voxels.
            kwargs: what the sampler passes on (``neg_cond``, ``cfg_strength``, ``cfg_interval`` and model kwargs).
        """
        model = self.model if model is None else model
        if coords is None:
            return self._call_original(model, x, t, cond, **kwargs)
        return self._call_original(model, self._rebuilt(x, coords), t, cond, **kwargs).feats[None]

    def progress(self, t: Any) -> float:
        """``1 - t``: TRELLIS's time runs from 1 (noise) to 0 (data), accel3d's from 0 to 1."""
        return 1.0 - float(t)


def one_object_coords(x: Any) -> Any:
    """``[1, N, 3]`` voxel coordinates of a TRELLIS ``SparseTensor`` holding one object (batch index 0 throughout),
    else None (a dense state, or several objects)."""
    coords, feats = getattr(x, "coords", None), getattr(x, "feats", None)
    if not (isinstance(coords, torch.Tensor) and isinstance(feats, torch.Tensor) and callable(getattr(x, "replace", None))):
        return None
    if coords.ndim != 2 or coords.shape[1] != 4 or len(coords) != len(feats) or bool(coords[:, 0].any()):
        return None
    return coords[:, 1:][None]


def attach_stage(sampler: Any, model: Any, token_groups: Mapping[str, tuple[str, ...]] | None = None) -> TrellisFlowStage:
    """A :class:`TrellisFlowStage`, attached; ``stage.detach()`` takes it off.

    Example::

        stage = attach_stage(pipeline.slat_sampler, pipeline.models["slat_flow_model"])
    """
    return TrellisFlowStage(sampler, model, token_groups).attach()


def attach_pipeline(pipeline: Any) -> dict[str, TrellisFlowStage]:
    """Attach a stage to both samplers of a TRELLIS pipeline, named as accel3d's ``image_to_3d`` names them.

    Returns ``{"ss_sampler": ..., "slat_sampler": ...}`` (``pipeline.sparse_structure_sampler`` with
    ``pipeline.models["sparse_structure_flow_model"]``, ``pipeline.slat_sampler`` with
    ``pipeline.models["slat_flow_model"]``), all attached; nothing stays attached if one fails.

    Example::

        stages = attach_pipeline(pipeline)
        ...
        for stage in stages.values():
            stage.detach()
    """
    models = pipeline_models(pipeline, "TRELLIS")
    for sampler_attr, model_key in PIPELINE_STAGES.values():
        if getattr(pipeline, sampler_attr, None) is None or model_key not in models:
            raise ValueError(f"pipeline: {type(pipeline).__name__} has no {sampler_attr} with models[{model_key!r}]")
    makers = {name: (lambda a=a, k=k: attach_stage(getattr(pipeline, a), models[k])) for name, (a, k) in PIPELINE_STAGES.items()}
    return attach_all(makers)


def is_pipeline(obj: Any) -> bool:
    """Whether ``obj`` is a TRELLIS image- or text-to-3D pipeline, read from its classes' names."""
    names = ("TrellisImageTo3DPipeline", "TrellisTextTo3DPipeline")
    return any(c.__name__ in names and c.__module__.startswith("trellis.") for c in type(obj).__mro__)


def stages(obj: Any) -> dict[str, TrellisFlowStage] | None:
    """``{"ss_sampler": ..., "slat_sampler": ..., "sparse_structure": ...}`` (detached) for a TRELLIS pipeline (the last
    where it holds its SS decoder, :class:`~accel3d.integrations.sparse_structure.SparseStructureStage`); None otherwise.

    Example::

        stages(pipeline)["slat_sampler"].token_groups   # {"slat": ()}
    """
    if not is_pipeline(obj):
        return None
    models = pipeline_models(obj, "TRELLIS")
    found: dict[str, Any] = {
        name: TrellisFlowStage(getattr(obj, sampler), models[key])
        for name, (sampler, key) in PIPELINE_STAGES.items()
        if key in models and getattr(obj, sampler, None) is not None
    }
    if "sparse_structure_decoder" in models:
        found["sparse_structure"] = SparseStructureStage(obj, "sparse_structure_decoder")
    return found
