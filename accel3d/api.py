"""One-call forms: named stacks from the same config files as `accel3d run`, applied and removed in one line.

They mirror what users of diffusers (``pipe.transformer.enable_cache(config)`` /
``disable_cache()``) and tomesd (``tomesd.apply_patch(model, ratio=0.5)`` /
``tomesd.remove_patch(model)``) reach for:

    import accel3d

    stack = accel3d.apply(pipe, "hierarchical", band=0.5)   # same settings as `accel3d run stack=hierarchical`
    result = pipe.run(pipe.load_inputs())
    accel3d.remove(pipe)                                    # outputs bit-identical to before

    stack = accel3d.load_stack("flashvdm", adaptive_kv={"topk": 256})   # build without applying
"""

from __future__ import annotations

import weakref
from typing import Any

from accel3d.core.hooks import detach_all
from accel3d.core.pipeline import StageMap
from accel3d.core.stack import Stack
from accel3d.core.validate import ArgumentError

# The stacks accel3d.apply attached to a real library's object, so that accel3d.remove takes off their stages too.
# Weak references only: a stack the user drops, and the object it was on, are not kept alive by this registry.
_APPLIED: weakref.WeakKeyDictionary[Any, list[weakref.ref[Stack]]] = weakref.WeakKeyDictionary()
_APPLIED_BY_ID: dict[int, list[weakref.ref[Stack]]] = {}  # objects that take no weak reference


def _entries(target: Any) -> list[weakref.ref[Stack]]:
    try:
        return _APPLIED.setdefault(target, [])
    except TypeError:
        return _APPLIED_BY_ID.setdefault(id(target), [])


def _applied_to(target: Any) -> list[Stack]:
    """The stacks ``apply`` attached to ``target`` that are still attached to it (not detached, not moved elsewhere)."""
    stacks = [ref() for ref in _entries(target)]
    return [s for s in stacks if s is not None and isinstance(s._pipeline, StageMap) and s._pipeline.target is target and s.attached]


def available_stacks() -> list[str]:
    """The named stacks in ``configs/stack/``."""
    from accel3d.jobs.configs import config_dir

    return sorted(p.stem for p in (config_dir() / "stack").glob("*.yaml"))


def load_stack(name: str, **overrides: Any) -> Stack:
    """The named stack of ``configs/stack/<name>.yaml``, with knob overrides.

    An override is ``knob=value`` (for the one accelerator of the stack that declares the knob) or
    ``<accelerator>={knob: value, ...}`` (for stacks where several accelerators share a knob name).
    Each accelerator's config dataclass checks its knobs; unknown stacks, accelerators and knobs fail
    with the valid names.
    """
    from accel3d.core.stack import accelerator_config_of, build_stack
    from accel3d.jobs.configs import compose_run

    stacks = available_stacks()
    if name not in stacks:
        raise ArgumentError(f"load_stack: unknown stack {name!r}; expected one of {stacks}")
    nodes = compose_run([f"stack={name}"]).stack.accelerators
    configs = {key: accelerator_config_of(f"stack.accelerators.{key}", node) for key, node in nodes.items()}
    changes: dict[str, dict[str, Any]] = {key: {} for key in configs}
    for key, value in overrides.items():
        if key in configs:
            if not isinstance(value, dict):
                raise ArgumentError(f"load_stack: {key}: expected a dict of knobs, got {value!r}")
            changes[key].update(value)
            continue
        owners = [acc for acc, config in configs.items() if key in ("enabled", *config.knob_names())]
        if len(owners) != 1:
            why = "no accelerator of" if not owners else f"several accelerators ({owners}) of"
            valid = sorted({k for config in configs.values() for k in config.knob_names()})
            raise ArgumentError(
                f"load_stack: {why} stack '{name}' has a knob {key!r}; its knobs are {valid} "
                f"and its accelerators {list(configs)} (pass <accelerator>={{knob: value}})"
            )
        changes[owners[0]][key] = value
    for key, knobs in changes.items():
        if knobs:
            config = configs[key]
            configs[key] = type(config).from_knobs({**vars(config), **knobs}, where=f"load_stack: accelerator '{key}' of stack '{name}'")
    return build_stack(name, configs)


def apply(target: Any, stack: str | Stack, **overrides: Any) -> Stack:
    """Attach a stack (a name, or a built :class:`Stack`) to a pipeline, to a real library's object whose stages an
    integration names (hy3dgen's Hunyuan3D-2 pipeline or ShapeVAE, a TRELLIS or SAM 3D Objects pipeline, a diffusers
    pipeline, U-Net or guidance object: ``accel3d.integrations.stages_of``), or its one accelerator to a module. A stack
    whose stages the object lacks, or a second stack on a real object, is refused before anything is patched."""
    from accel3d.integrations import stages_of

    if isinstance(stack, str):
        stack = load_stack(stack, **overrides)
    elif overrides:
        raise ArgumentError("apply: knob overrides go with a stack name; this stack is already built")
    if isinstance(getattr(target, "stages", None), dict):
        return stack.attach(target)
    found = stages_of(target)
    if found is not None:
        staged = StageMap(target, found)
        stack.check_stages(staged, where="apply: stack", hint="apply it to a pipeline that has them")
        if applied := _applied_to(target):
            names = [s.name for s in applied]
            raise ArgumentError(f"apply: this {type(target).__name__} already has stack(s) {names} applied; accel3d.remove(it) first")
        stack.attach(staged)
        entries = _entries(target)
        entries[:] = [ref for ref in entries if ref() is not None] + [weakref.ref(stack)]
        return stack
    if len(stack.accelerators) != 1:
        raise ArgumentError(
            f"apply: stack '{stack.name}' has {len(stack.accelerators)} accelerators for different stages; "
            "apply it to a pipeline, which names its stages"
        )
    stack.accelerators[0].attach(target)
    return stack


def remove(target: Any) -> int:
    """Detach every accelerator from ``target`` (a pipeline, a real library's object, a stage or a module);
    returns how many. The object is then exactly as it was. A part of an object a stack was applied to
    (``pipe.vae`` after ``accel3d.apply(pipe, ...)``) takes that whole stack off its holder."""
    from accel3d.integrations import stages_of

    count = 0
    holders = [owner for owner in list(_APPLIED.keys()) if owner is not target and any(part is target for part in _parts(owner))]
    for owner in [target, *holders]:  # a part (pipe.vae after apply(pipe)): the stack spans its holder, so it all comes off
        for stack in reversed(_applied_to(owner)):  # its accelerators, then the stages installed on the object
            count += sum(1 for acc in stack.accelerators if acc.attached)
            stack.detach()
    _entries(target).clear()
    count += detach_all(target)
    if not isinstance(getattr(target, "stages", None), dict):  # patches on its parts made some other way
        count += sum(detach_all(stage) for stage in (stages_of(target) or {}).values())
        count += sum(detach_all(part) for part in _parts(target))
    return count


def _parts(target: Any) -> list[Any]:
    """The objects a real library's object holds (its models, samplers, VAE), where stages may have been installed by a
    stack the user no longer holds."""
    try:
        values = list(vars(target).values())
    except TypeError:
        return []
    parts = [v for v in values if not isinstance(v, (str, bytes, int, float, bool, type(None)))]
    return parts + [v for d in parts if isinstance(d, dict) for v in d.values()]
