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
    mine = [o for o in overrides if o.split("=", 1)[0].removeprefix("stack.accelerators.").split(".", 1)[0] in keys]
    nodes = compose_run([f"stack={name}", *mine]).stack.accelerators
    return {key: accelerator_config_of(f"stack.accelerators.{key}", node) for key, node in nodes.items()}


def kv_config(mode: str, args: argparse.Namespace) -> AcceleratorConfig:
    """The adaptive KV config of ``mode``'s stack (``KV_STACKS``: flashvdm, flashvdm_mean, flashvdm_merge), with ``--set``."""
    return stack_configs(KV_STACKS[mode], args.set)["adaptive_kv"]


def kv_cells(args: argparse.Namespace) -> int:
    """The cells per axis of the default adaptive KV stack, for the attention-sparsity figures."""
    return kv_config("mass", args).cells
