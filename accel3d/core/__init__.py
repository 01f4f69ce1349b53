"""Shared core: the Accelerator protocol, stacks, reversible hooks, statistics, per-call camera poses."""

from accel3d.core.accelerator import Accelerator, BaseAccelerator
from accel3d.core.context import CameraPose, camera_pose, current_camera_pose
from accel3d.core.hooks import PatchConflictError, PatchSet, detach_all, patch_owners
from accel3d.core.pipeline import Pipeline
from accel3d.core.registry import available_accelerators, create_accelerator, register_accelerator
from accel3d.core.stack import Stack, StackConflictError, build_stack
from accel3d.core.stats import Statistics

__all__ = [
    "Accelerator",
    "BaseAccelerator",
    "CameraPose",
    "PatchConflictError",
    "PatchSet",
    "Pipeline",
    "Stack",
    "StackConflictError",
    "Statistics",
    "available_accelerators",
    "build_stack",
    "camera_pose",
    "create_accelerator",
    "current_camera_pose",
    "detach_all",
    "patch_owners",
    "register_accelerator",
]
