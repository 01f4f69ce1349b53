"""The flow-sampler stage contract: what step caching, token carving and step skipping need of a stage.

A flow stage samples a trajectory with Euler steps and calls one method per step,
``velocity(x, t, cond, step, **kwargs)``, which is what accelerators wrap. Its ``token_groups``
(``{group: (keys, ...)}``; an empty tuple means the whole state) say which parts of the state
belong together (SAM 3D Objects' shape and layout streams), and ``steps`` how many steps the
trajectory has, where it is known. Where a stage has token coordinates (the structured latent's
voxels), they arrive as a keyword argument of ``velocity`` with one row per token (``coords``).

accel3d's :class:`~accel3d.models.image_to_3d.sampler.FlowSampler` and the adapters of the real
TRELLIS and SAM 3D Objects samplers (:mod:`accel3d.integrations`) implement it. A state (or
velocity) leaf is a ``torch.Tensor`` or a sparse tensor with ``.feats`` (TRELLIS / SAM 3D Objects
``SparseTensor``); :func:`state_tensors`, :func:`with_tensor` and :func:`group_tensors` read and
write leaves for whoever handles states of any model.

Example::

    groups = check_flow_stage(stage, "my_cache")          # {"shape": ("shape",), "layout": (...)}
    tensors = group_tensors(x, groups)                    # {"shape": {"shape": s}, "layout": {...}}
    v = with_tensor(x, state_tensors(x) * 0)              # a sparse tensor keeps its coordinates
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor


@runtime_checkable
class FlowStage(Protocol):
    """A flow sampler stage, as the ``ss_sampler`` and ``slat_sampler`` stages are.

    Example::

        isinstance(pipeline.stage("ss_sampler"), FlowStage)   # True
    """

    token_groups: Mapping[str, tuple[str, ...]]
    steps: int | None

    def velocity(self, x: Any, t: Any, cond: Any, step: int, **kwargs: Any) -> Any:
        """The velocity at step ``step`` (0 first) of the trajectory; keyword arguments such as
        ``coords`` hold one row per token."""
        ...


def state_tensors(x: Any) -> Tensor:
    """The tensor of one state: a ``torch.Tensor`` as it is, a sparse tensor (TRELLIS / SAM3D ``SparseTensor``) as its ``feats``."""
    from torch import Tensor

    if isinstance(x, Tensor):
        return x
    feats = getattr(x, "feats", None)
    if isinstance(feats, Tensor):
        return feats
    raise TypeError(f"expected a torch.Tensor or a sparse tensor with .feats, got {type(x).__name__}")


def with_tensor(template: Any, tensor: Tensor) -> Any:
    """``tensor`` in the place of ``template``'s values (a sparse tensor keeps its coordinates via ``replace``)."""
    from torch import Tensor

    if isinstance(template, Tensor):
        return tensor
    return template.replace(tensor)


def group_tensors(state: Any, token_groups: Mapping[str, tuple[str, ...]]) -> dict[str, dict[str, Tensor]]:
    """The tensors of each token group, ``{group: {key: tensor}}``; a whole-state group uses the key ``""``.

    Example::

        group_tensors({"shape": s, "rotation": r}, {"shape": ("shape",), "layout": ("rotation",)})
        # {"shape": {"shape": s}, "layout": {"rotation": r}}
    """
    out: dict[str, dict[str, Tensor]] = {}
    for group, keys in token_groups.items():
        if keys:
            if not isinstance(state, Mapping):
                raise ValueError(f"token_groups: group {group!r} names keys {list(keys)} but the state is not a dict")
            missing = [k for k in keys if k not in state]
            if missing:
                raise ValueError(f"token_groups: group {group!r} names {missing}, not keys of the state {sorted(state)}")
            out[group] = {k: state_tensors(state[k]) for k in keys}
        else:
            out[group] = {"": state_tensors(state)}
    return out


def check_flow_stage(target: Any, who: str) -> dict[str, tuple[str, ...]]:
    """The target's declared token groups, or an error naming ``who`` (the accelerator) and what is missing."""
    groups = getattr(target, "token_groups", None)
    if not isinstance(groups, Mapping) or not groups:
        raise TypeError(f"{who}: expected a flow sampler stage with token_groups (the pipeline's), got {type(target).__name__}")
    if not callable(getattr(target, "velocity", None)):
        raise TypeError(f"{who}: expected a flow sampler stage with a velocity(x, t, cond, step, ...) method, got {type(target).__name__}")
    return {str(g): tuple(keys) for g, keys in groups.items()}


def stage_steps(target: FlowStage) -> int | None:
    """The step count of the trajectory the stage samples, if it is known (a positive int)."""
    steps = target.steps
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None
