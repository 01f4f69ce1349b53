"""The accelerators a benchmark runs, taken from the named stacks of ``configs/stack/`` (never from flags of
its own), with ``accel3d run``-style overrides.

Example::

    from accel3d.bench.stacks import stack_configs

    stack_configs("hierarchical", ["stack.accelerators.hierarchical.band=2.5"])["hierarchical"].band   # 2.5
"""

from __future__ import annotations

import argparse

from accel3d.bench.options import KV_STACKS
from accel3d.core.config import AcceleratorConfig
from accel3d.core.stack import accelerator_config_of


def stack_configs(name: str, overrides: list[str]) -> dict[str, AcceleratorConfig]:
    """The accelerators' configs of the named stack, as `accel3d run stack=NAME` builds them, with the
    ``overrides`` (``stack.accelerators.<key>.<knob>=value``) that concern its accelerators."""
    from accel3d.jobs.configs import compose_run

    keys = set(compose_run([f"stack={name}"]).stack.accelerators)
    mine = [o for o in overrides if _accelerator_of(o) in keys]
    nodes = compose_run([f"stack={name}", *mine]).stack.accelerators
    return {key: accelerator_config_of(f"stack.accelerators.{key}", node) for key, node in nodes.items()}


def _accelerator_of(override: str) -> str | None:
    """``hierarchical`` for ``stack.accelerators.hierarchical.band=2.5``; None for anything else."""
    key = override.split("=", 1)[0]
    parts = key.split(".")
    return parts[2] if len(parts) == 4 and parts[:2] == ["stack", "accelerators"] else None


def check_overrides(flag: str, overrides: list[str], stacks: list[str]) -> None:
    """Refuse an override that no stack of the benchmark takes (a typo would otherwise run the defaults)."""
    from accel3d.jobs.configs import compose_run

    keys = {key for name in stacks for key in compose_run([f"stack={name}"]).stack.accelerators}
    unused = [o for o in overrides if _accelerator_of(o) not in keys]
    if unused:
        raise SystemExit(
            f"{flag}: {unused} set(s) no accelerator of the stacks {stacks}; "
            f"expected stack.accelerators.<one of {sorted(keys)}>.<knob>=<value>"
        )


def kv_config(mode: str, args: argparse.Namespace) -> AcceleratorConfig:
    """The adaptive KV config of ``mode``'s stack (``KV_STACKS``: flashvdm, flashvdm_mean, flashvdm_merge), with ``--set``."""
    return stack_configs(KV_STACKS[mode], args.set)["adaptive_kv"]


def kv_cells(args: argparse.Namespace) -> int:
    """The cells per axis of the default adaptive KV stack, for the attention-sparsity figures."""
    return kv_config("mass", args).cells
