"""SAM 3D Objects' flow generators as accel3d stages.

SAM 3D Objects (Meta's SAM License, not open source: never a runtime dependency of accel3d, and none
of its code is copied here) samples its sparse structure with a ``ShortCut`` generator and its
structured latent with a ``FlowMatching`` one (``sam3d_objects.model.backbone.generator``), both
wrapping the backbone in classifier-free guidance (``generator.reverse_fn``). Time runs from 0 (noise)
to 1 (data), ``t' = t / (1 + (r - 1)(1 - t))``, and the ODE solver asks
``generator._generate_dynamics(x_t, t, *cond, **kw)`` (``ShortCut``: ``(x_t, t, d, *cond, **kw)``) for
each step's guided velocity; that is the one call :class:`Sam3DFlowStage` routes through its ``velocity``.

Token groups come from the backbone. The SS backbone (``SparseStructureFlowTdfyWrapper``) keys its state
by ``latent_mapping`` (``shape``, ``6drotation_normalized``, ``translation``, ``scale``,
``translation_scale``) and merges the pose keys into one transformer stream
(``latent_share_transformer``), so the groups are ``{"shape": ("shape",), "layout": (the four pose
keys)}``; the SLaT backbone's state is one tensor (``{"slat": ()}``).

Example::

    from accel3d.integrations.sam3d import attach_pipeline

    stages = attach_pipeline(pipeline)       # a sam3d_objects InferencePipeline
    stages["ss_sampler"].token_groups        # {"shape": ("shape",), "layout": ("6drotation_normalized", ...)}
    output = pipeline.run(image, mask)       # every step goes through stages[...].velocity
    for stage in stages.values():
        stage.detach()
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from accel3d.integrations.flow_adapter import FlowStageAdapter, attach_all, object_rows, pipeline_models
from accel3d.integrations.sparse_structure import SparseStructureStage

SAM3D_SLAT_TOKEN_GROUPS: dict[str, tuple[str, ...]] = {"slat": ()}

# the SAM3D pipeline's generators: accel3d stage name -> key of pipeline.models
PIPELINE_STAGES: dict[str, str] = {"ss_sampler": "ss_generator", "slat_sampler": "slat_generator"}


def backbone_of(generator: Any) -> Any:
    """The velocity network of a generator: ``generator.reverse_fn.backbone`` under CFG, else ``generator.reverse_fn``."""
    reverse_fn = getattr(generator, "reverse_fn", None)
    if reverse_fn is None:
        raise TypeError(f"generator: expected a SAM3D generator with a reverse_fn (ShortCut, FlowMatching), got {type(generator).__name__}")
    return getattr(reverse_fn, "backbone", reverse_fn)


def state_keys(backbone: Any) -> list[str] | None:
    """The keys of the backbone's dict state (``latent_mapping``'s, in order), or None for a one-tensor state."""
    mapping = getattr(backbone, "latent_mapping", None)
    return None if mapping is None else [str(k) for k in mapping.keys()]


def default_token_groups(backbone: Any) -> dict[str, tuple[str, ...]]:
    """Token groups read from the backbone: its transformer streams, the one holding ``shape`` named ``shape``.

    A dict state's streams are ``latent_share_transformer``'s merged keys plus each key not merged; with
    one stream besides ``shape`` it is named ``layout``, with several they keep their own names. A
    one-tensor state is ``{"slat": ()}`` for a ``SLatFlowModel`` (MRO included), else ``{"shape": ()}``.

    Example::

        default_token_groups(ss_generator.reverse_fn.backbone)
        # {"shape": ("shape",), "layout": ("6drotation_normalized", "translation", "scale", "translation_scale")}
    """
    keys = state_keys(backbone)
    if keys is None:
        if any(cls.__name__.startswith("SLatFlowModel") for cls in type(backbone).__mro__):
            return dict(SAM3D_SLAT_TOKEN_GROUPS)
        return {"shape": ()}
    share = dict(getattr(backbone, "latent_share_transformer", None) or {})
    merged = {str(k) for members in share.values() for k in members}
    streams: dict[str, tuple[str, ...]] = {k: (k,) for k in keys if k not in merged}
    streams.update({str(name): tuple(str(k) for k in members) for name, members in share.items()})
    shape_stream = next((name for name, members in streams.items() if "shape" in members), None)
    if shape_stream is None:
        return streams
    others = [name for name in streams if name != shape_stream]
    groups = {"shape": streams[shape_stream]}
    if len(others) == 1:
        groups["layout"] = streams[others[0]]
    else:
        groups.update({name: streams[name] for name in others})
    return groups


def _check_groups(groups: Mapping[str, tuple[str, ...]], keys: list[str] | None) -> None:
    if keys is None:
        named = sorted({k for members in groups.values() for k in members})
        if named:
            raise ValueError(f"token_groups: the backbone's state is one tensor (no keys), but the groups name {named}; use ()")
        return
    unknown = sorted({k for members in groups.values() for k in members} - set(keys))
    if unknown:
        raise ValueError(f"token_groups: {unknown} are not keys of the backbone's latent_mapping {keys}")


class Sam3DFlowStage(FlowStageAdapter):
    """A SAM 3D Objects generator whose per-step velocity goes through :meth:`velocity`.

    Args:
        generator: a ``ShortCut`` or ``FlowMatching`` generator (``pipeline.models["ss_generator"]``,
            ``["slat_generator"]``); attached, its instance attributes ``_generate_dynamics`` (calls
            this stage) and ``generate_iter`` (restarts the step count) shadow its class's methods.
        token_groups: default: read from the backbone (:func:`default_token_groups`); checked against
            its ``latent_mapping`` keys.

    The generator draws its noise from the **global** torch RNG and applies guidance only in eval mode,
    so seed with ``torch.manual_seed`` and call ``generator.eval()`` as SAM3D's pipeline does.

    Example::

        stage = Sam3DFlowStage(pipeline.models["ss_generator"])
        with stage:
            patches = PatchSet("probe")
            patches.wrap(stage, "velocity", lambda original: lambda *a, **k: original(*a, **k))
            torch.manual_seed(0)
            x = generator(latent_shapes, device, *condition_args)    # dict of token groups
            patches.restore()
    """

    name = "sam3d_flow_stage"
    step_attribute = "_generate_dynamics"
    entry_attribute = "generate_iter"

    def __init__(self, generator: Any, token_groups: Mapping[str, tuple[str, ...]] | None = None) -> None:
        backbone = backbone_of(generator)
        groups = dict(token_groups) if token_groups is not None else default_token_groups(backbone)
        _check_groups(groups, state_keys(backbone))
        super().__init__(generator, backbone, groups)
        dynamics = getattr(type(generator), self.step_attribute, None)
        if dynamics is None:
            raise TypeError(f"generator: {type(generator).__name__} has no {self.step_attribute}; expected a ShortCut or FlowMatching")
        # ShortCut's per-step call carries the shortcut step size d after t
        self.shortcut = "d" in inspect.signature(dynamics).parameters
        self._voxels: Any = None  # the positional voxels of the SLaT step in progress

    @property
    def generator(self) -> Any:
        """The wrapped SAM3D generator."""
        return self.target

    def _step_function(self) -> Callable[..., Any]:
        if self.shortcut:

            def generate_dynamics(x_t: Any, t: Any, d: Any, *args: Any, **kwargs: Any) -> Any:
                return self.velocity(x_t, t, args, self._next_step(), d=d, **kwargs)

        else:

            def generate_dynamics(x_t: Any, t: Any, *args: Any, **kwargs: Any) -> Any:
                step = self._next_step()
                coords = one_object_coords(x_t, args)
                if coords is None:
                    return self.velocity(x_t, t, args, step, **kwargs)
                # SLaT tokens with their voxels last in the condition: accelerators get the voxels as coords
                self._voxels = args[-1]
                return self.velocity(x_t, t, args[:-1], step, coords=coords, **kwargs)

        return generate_dynamics

    def _voxels_of(self, coords: Any) -> Any:
        """The generator's positional voxels for ``coords`` ``[1, n, 3]``: the step's own (every token), or rows
        ``(0, x, y, z)`` of the subset (token carving), in the type and dtype the pipeline passed."""
        voxels = self._voxels
        if coords.shape[1] == len(voxels):
            return voxels
        rows = object_rows(coords[0])
        if isinstance(voxels, torch.Tensor):
            return rows.to(voxels)
        return rows.cpu().numpy().astype(np.asarray(voxels).dtype)

    def _entry_function(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def generate_iter(*args: Any, **kwargs: Any) -> Iterator[Any]:
            steps = getattr(self.target, "inference_steps", None)
            self._begin(steps if isinstance(steps, int) else None)
            yield from original(*args, **kwargs)

        return generate_iter

    def velocity(self, x: Any, t: Any, cond: tuple, step: int, **kwargs: Any) -> Any:
        """The generator's own (guided) velocity: its ``_generate_dynamics`` as it was before attaching.

        Args:
            x: the state (a dict of token tensors for the SS, one ``[B, N, 8]`` tensor for the SLaT).
            t: SAM3D's time (0 = noise, 1 = data; :meth:`progress` gives accel3d's).
            cond: the generator's positional condition arguments, as a tuple. For one object's SLaT, SAM3D's
                pipeline passes the voxels last (``[N, 4]`` numpy rows ``(0, x, y, z)``): they are taken out of
                ``cond`` and come as ``coords=`` ``[1, N, 3]``, the per-token argument token carving cuts.
            step: the step's index in the trajectory (0 first).
            kwargs: the keyword conditions, and ``d`` (the shortcut step size) for a ``ShortCut``.
        """
        if "coords" in kwargs and not self.shortcut:  # voxels this stage took out of the condition (see generate_dynamics)
            return self._call_original(x, t, *cond, self._voxels_of(kwargs.pop("coords")), **kwargs)
        if self.shortcut:
            if "d" not in kwargs:
                raise TypeError("velocity: a ShortCut stage needs d= (the shortcut step size its solver passes)")
            d = kwargs.pop("d")
            return self._call_original(x, t, d, *cond, **kwargs)
        return self._call_original(x, t, *cond, **kwargs)

    def progress(self, t: Any) -> float:
        """``t`` itself (SAM3D's time already runs from noise, 0, to data, 1), or ``1 - t`` under ``reversed_timestamp``."""
        value = float(t)
        return 1.0 - value if getattr(self.target, "reversed_timestamp", False) else value


def one_object_coords(x: Any, args: tuple) -> Any:
    """``[1, N, 3]`` voxel coordinates where ``x`` is one object's ``[1, N, C]`` tokens and the last condition argument
    its ``[N, 4]`` voxels (batch index 0 throughout), as SAM3D's pipeline calls the SLaT generator; else None."""
    if not (isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[0] == 1 and args):
        return None
    voxels = args[-1]
    if not isinstance(voxels, (np.ndarray, torch.Tensor)) or voxels.ndim != 2 or tuple(voxels.shape) != (x.shape[1], 4):
        return None
    rows = torch.as_tensor(voxels)
    if rows.is_floating_point() or bool(rows[:, 0].any()):
        return None
    return rows[:, 1:].to(device=x.device, dtype=torch.long)[None]


def attach_stage(generator: Any, token_groups: Mapping[str, tuple[str, ...]] | None = None) -> Sam3DFlowStage:
    """A :class:`Sam3DFlowStage`, attached; ``stage.detach()`` takes it off.

    Example::

        stage = attach_stage(pipeline.models["slat_generator"])    # token_groups {"slat": ()}
    """
    return Sam3DFlowStage(generator, token_groups).attach()


def attach_pipeline(pipeline: Any) -> dict[str, Sam3DFlowStage]:
    """Attach a stage to both generators of a SAM3D pipeline, named as accel3d's ``image_to_3d`` names them.

    Returns ``{"ss_sampler": ..., "slat_sampler": ...}`` for ``pipeline.models["ss_generator"]`` and
    ``["slat_generator"]``, all attached; nothing stays attached if one fails.

    Example::

        stages = attach_pipeline(pipeline)
        ...
        for stage in stages.values():
            stage.detach()
    """
    models = pipeline_models(pipeline, "SAM3D")
    for key in PIPELINE_STAGES.values():
        if key not in models:
            raise ValueError(f"pipeline: {type(pipeline).__name__}.models has no {key!r}")
    return attach_all({name: (lambda key=key: attach_stage(models[key])) for name, key in PIPELINE_STAGES.items()})


def is_pipeline(obj: Any) -> bool:
    """Whether ``obj`` is a SAM 3D Objects ``InferencePipeline`` (the point-map one included), read from its classes' names."""
    return any(c.__name__.startswith("InferencePipeline") and c.__module__.startswith("sam3d_objects.") for c in type(obj).__mro__)


def stages(obj: Any) -> dict[str, Sam3DFlowStage] | None:
    """``{"ss_sampler": ..., "slat_sampler": ..., "sparse_structure": ...}`` (detached) for a SAM 3D Objects pipeline (the
    last where it holds its SS decoder, :class:`~accel3d.integrations.sparse_structure.SparseStructureStage`); None otherwise.

    Example::

        stages(pipeline)["ss_sampler"].token_groups   # {"shape": ("shape",), "layout": (...)}
    """
    if not is_pipeline(obj):
        return None
    models = pipeline_models(obj, "SAM3D")
    found: dict[str, Any] = {name: Sam3DFlowStage(models[key]) for name, key in PIPELINE_STAGES.items() if key in models}
    if "ss_decoder" in models:
        found["sparse_structure"] = SparseStructureStage(obj, "ss_decoder")
    return found
