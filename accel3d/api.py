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

from typing import Any

from accel3d.core.hooks import detach_all
from accel3d.core.stack import Stack
from accel3d.core.validate import ArgumentError


def available_stacks() -> list[str]:
    """The named stacks in ``configs/stack/``."""
    from accel3d.jobs.configs import config_dir

    return sorted(p.stem for p in (config_dir() / "stack").glob("*.yaml"))


def load_stack(name: str, **overrides: Any) -> Stack:
    """The named stack of ``configs/stack/<name>.yaml``, with knob overrides.

    An override is ``knob=value`` (for the one accelerator of the stack that has the knob) or
    ``<accelerator>={knob: value, ...}`` (for stacks where several accelerators share a knob name).
    Unknown stacks, accelerators and knobs fail with the valid names.
    """
    from hydra import compose, initialize_config_dir

    from accel3d.jobs.configs import config_dir
    from accel3d.jobs.run import build

    stacks = available_stacks()
    if name not in stacks:
        raise ArgumentError(f"load_stack: unknown stack {name!r}; expected one of {stacks}")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("run", overrides=[f"stack={name}"])
    accelerators = cfg.stack.accelerators
    for key, value in overrides.items():
        if key in accelerators:
            if not isinstance(value, dict):
                raise ArgumentError(f"load_stack: {key}: expected a dict of knobs, got {value!r}")
            targets = [(key, knob, v) for knob, v in value.items()]
        else:
            owners = [acc for acc in accelerators if key in accelerators[acc]]
            if len(owners) != 1:
                valid = sorted({k for acc in accelerators for k in accelerators[acc] if not k.startswith("_")})
                why = "no accelerator of" if not owners else f"several accelerators ({owners}) of"
                raise ArgumentError(
                    f"load_stack: {why} stack '{name}' has a knob {key!r}; its knobs are {valid} "
                    f"and its accelerators {list(accelerators)} (pass <accelerator>={{knob: value}})"
                )
            targets = [(owners[0], key, value)]
        for acc, knob, v in targets:
            if knob not in accelerators[acc]:
                valid = sorted(k for k in accelerators[acc] if not k.startswith("_"))
                raise ArgumentError(f"load_stack: accelerator '{acc}' of stack '{name}' has no knob {knob!r}; its knobs are {valid}")
            accelerators[acc][knob] = v
    return build(cfg.stack, "stack")


def apply(target: Any, stack: str | Stack, **overrides: Any) -> Stack:
    """Attach a stack (a name, or a built :class:`Stack`) to a pipeline, or its one accelerator to a module."""
    if isinstance(stack, str):
        stack = load_stack(stack, **overrides)
    elif overrides:
        raise ArgumentError("apply: knob overrides go with a stack name; this stack is already built")
    if isinstance(getattr(target, "stages", None), dict):
        return stack.attach(target)
    if len(stack.accelerators) != 1:
        raise ArgumentError(
            f"apply: stack '{stack.name}' has {len(stack.accelerators)} accelerators for different stages; "
            "apply it to a pipeline, which names its stages"
        )
    stack.accelerators[0].attach(target)
    return stack


def remove(target: Any) -> int:
    """Detach every accelerator from ``target`` (a pipeline, a stage or a module); returns how many."""
    return detach_all(target)
