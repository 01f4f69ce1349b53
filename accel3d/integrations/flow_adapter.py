"""What the TRELLIS and SAM 3D Objects adapters share: a stage that a real sampler calls once per step.

A real model's sampler computes each step's (guided) velocity in one method of its own (TRELLIS:
``sampler._inference_model``; SAM 3D Objects: ``generator._generate_dynamics``). An adapter installs
a function under that name **on the sampler instance** which calls the adapter's :meth:`FlowStageAdapter.velocity`;
``velocity`` calls the method that was there before. So a patch on the adapter's ``velocity``
(``PatchSet.wrap(stage, "velocity", ...)``, what accelerators do to accel3d's own
:class:`~accel3d.models.image_to_3d.sampler.FlowSampler`) sees every step, and
:meth:`FlowStageAdapter.detach` puts the sampler's instance dictionary back as it was.

The installation goes through :class:`accel3d.core.hooks.PatchSet` with the adapter as the (exclusive)
owner: a second adapter on the same sampler is refused with ``PatchConflictError``, and
``accel3d.core.detach_all(sampler)`` detaches the adapter.

Nothing here imports TRELLIS or SAM 3D Objects; the adapters take the objects they wrap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from accel3d.core.hooks import PatchSet

_Stage = TypeVar("_Stage", bound="FlowStageAdapter")


class FlowStageAdapter:
    """Base of :class:`~accel3d.integrations.trellis.TrellisFlowStage` and :class:`~accel3d.integrations.sam3d.Sam3DFlowStage`.

    Subclasses set :attr:`step_attribute` (the sampler's per-step method), :attr:`entry_attribute`
    (the call that starts a trajectory, where the step counter restarts), build :meth:`_step_function`
    and :meth:`_entry_function`, and implement :meth:`velocity` and :meth:`progress`.

    Attributes:
        target: the wrapped sampler (TRELLIS) or generator (SAM3D).
        model: the velocity network, for accelerators that hook inside it.
        token_groups: stream name -> keys of the state (an empty tuple: the whole tensor), the same
            declaration as ``FlowSampler.token_groups``.
        steps: the step count of the trajectory in progress (or the last one); None before any.
        step: the index of the last step whose velocity was asked for (-1 before any).

    Example::

        with TrellisFlowStage(pipeline.sparse_structure_sampler, flow_model) as stage:
            patches = PatchSet("probe")
            patches.wrap(stage, "velocity", lambda original: lambda *a, **k: original(*a, **k))
            coords = pipeline.sample_sparse_structure(cond)      # every step goes through stage.velocity
            patches.restore()
    """

    name = "flow_stage_adapter"
    composable = False  # one adapter per sampler: a PatchSet owner that is not composable is exclusive
    step_attribute = ""
    entry_attribute = ""

    def __init__(self, target: Any, model: Any, token_groups: Mapping[str, tuple[str, ...]]) -> None:
        self.target = target
        self.model = model
        self.token_groups: dict[str, tuple[str, ...]] = {str(g): tuple(str(k) for k in keys) for g, keys in token_groups.items()}
        if not self.token_groups:
            raise ValueError("token_groups: expected at least one group, e.g. {'shape': ()} for one whole-tensor group")
        self.steps: int | None = None
        self.step = -1
        self._original_step: Callable[..., Any] | None = None
        self._patches: PatchSet | None = None

    # ------------------------------------------------------------------ attaching

    @property
    def attached(self) -> bool:
        """Whether the sampler currently routes its steps through this adapter."""
        return self._patches is not None

    def attach(self: _Stage) -> _Stage:
        """Install the adapter on the sampler (returns ``self``); refused if this adapter is already attached."""
        if self._patches is not None:
            raise RuntimeError(f"{type(self).__name__}: already attached to this {type(self.target).__name__}")
        step_owner = self._step_owner()
        for owner, attr in ((step_owner, self.step_attribute), (self.target, self.entry_attribute)):
            if not callable(getattr(owner, attr, None)):
                raise TypeError(f"sampler: {type(owner).__name__} has no callable {attr!r}, which {type(self).__name__} wraps")
        # what the sampler resolves now (its class's method, or an instance attribute already there)
        original_step = getattr(step_owner, self.step_attribute)
        original_entry = getattr(self.target, self.entry_attribute)
        patches = PatchSet(self.name, owner=self)
        patches.set(step_owner, self.step_attribute, self._step_function())
        try:
            patches.set(self.target, self.entry_attribute, self._entry_function(original_entry))
        except BaseException:
            patches.restore()
            raise
        self._original_step, self._patches = original_step, patches
        self.step = -1
        return self

    def _step_owner(self) -> Any:
        """The object whose :attr:`step_attribute` is the per-step call (the sampler itself, unless a subclass says otherwise)."""
        return self.target

    def detach(self) -> None:
        """Take the adapter off: the sampler's instance dictionary is as it was before :meth:`attach` (no-op if not attached).

        Patches that accelerators put on this adapter's ``velocity`` stay on the adapter (harmless once
        the sampler no longer calls it); ``accel3d.core.detach_all(stage)`` removes them. A reference to
        the installed function kept elsewhere still works after detaching: it calls the original method.
        """
        if self._patches is None:
            return
        patches, self._patches = self._patches, None
        patches.restore()

    def __enter__(self: _Stage) -> _Stage:
        """Attach (unless already attached, as ``attach_stage`` returns it); leaving the block detaches."""
        return self if self.attached else self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    # ------------------------------------------------------------------ steps

    def _begin(self, steps: int | None) -> None:
        """A new trajectory starts: the next velocity is step 0."""
        self.steps = steps
        self.step = -1

    def _next_step(self) -> int:
        self.step += 1
        return self.step

    def _call_original(self, *args: Any, **kwargs: Any) -> Any:
        if self._original_step is None:
            raise RuntimeError(f"{type(self).__name__}: never attached; call attach() (or use it as a context manager) first")
        return self._original_step(*args, **kwargs)

    def _step_function(self) -> Callable[..., Any]:
        """The function installed as the sampler's per-step method: it calls :meth:`velocity` with the step index."""
        raise NotImplementedError

    def _entry_function(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """A stand-in for ``original`` (the sampler's entry call) that calls :meth:`_begin`, then ``original``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the stage interface

    def velocity(self, x: Any, t: Any, cond: Any, step: int, **kwargs: Any) -> Any:
        """The sampler's own velocity at ``(x, t)``; the one call accelerators wrap."""
        raise NotImplementedError

    def progress(self, t: Any) -> float:
        """``t`` in accel3d's convention: 0 at the noise, 1 at the data."""
        raise NotImplementedError

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"{type(self).__name__}({type(self.target).__name__}, groups={self.token_groups}, {state})"


def object_rows(coords: Any) -> Any:
    """One object's voxels ``[n, 3]`` as the ``[n, 4]`` rows ``(0, x, y, z)`` (batch index first) both libraries use."""
    import torch

    return torch.cat([torch.zeros_like(coords[:, :1]), coords], dim=1)


def pipeline_models(pipeline: Any, family: str) -> Any:
    """The ``.models`` mapping of a TRELLIS or SAM3D pipeline (a dict, or an ``nn.ModuleDict``), or a TypeError."""
    models = getattr(pipeline, "models", None)
    if not (hasattr(models, "__getitem__") and hasattr(models, "__contains__")):
        raise TypeError(f"pipeline: expected a {family} pipeline with a .models dict, got {type(pipeline).__name__}")
    return models


def attach_all(makers: Mapping[str, Callable[[], FlowStageAdapter]]) -> dict[str, FlowStageAdapter]:
    """Call every maker (each attaches one stage); if one fails, the stages attached so far are detached again."""
    stages: dict[str, FlowStageAdapter] = {}
    try:
        for name, make in makers.items():
            stages[name] = make()
    except BaseException:
        for stage in stages.values():
            stage.detach()
        raise
    return stages
