"""Shared core: the Accelerator protocol and its config, stacks, reversible hooks, statistics, per-call
camera poses, the pipeline and flow-stage contracts.

Names load on first use, so that a torch-free module (an accelerator's config) can import
``accel3d.core.config`` without importing torch.
"""

from accel3d.core.lazy import lazy_exports

_EXPORTS = {
    "Accelerator": "accelerator",
    "BaseAccelerator": "accelerator",
    "AcceleratorConfig": "config",
    "accelerator_configs": "config",
    "knob": "config",
    "CameraPose": "context",
    "camera_pose": "context",
    "current_camera_pose": "context",
    "PatchConflictError": "hooks",
    "PatchSet": "hooks",
    "detach_all": "hooks",
    "patch_owners": "hooks",
    "Pipeline": "pipeline",
    "Stack": "stack",
    "StackConflictError": "stack",
    "build_stack": "stack",
    "Statistics": "stats",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
