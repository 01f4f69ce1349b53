"""Shared core: the Accelerator protocol, stacks, reversible hooks, statistics."""

from accel3d.core.accelerator import Accelerator, BaseAccelerator
from accel3d.core.hooks import PatchSet
from accel3d.core.pipeline import Pipeline
from accel3d.core.registry import available_accelerators, create_accelerator, register_accelerator
from accel3d.core.stack import Stack, StackConflictError
from accel3d.core.stats import Statistics

__all__ = [
    "Accelerator",
    "BaseAccelerator",
    "PatchSet",
    "Pipeline",
    "Stack",
    "StackConflictError",
    "Statistics",
    "available_accelerators",
    "create_accelerator",
    "register_accelerator",
]
