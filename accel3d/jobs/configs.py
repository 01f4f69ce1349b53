"""Read accelerator settings from the Hydra configs, so that benchmarks and scripts use the same
values as `accel3d run` (one source of truth).

Example::

    from accel3d.jobs.configs import accelerator_settings

    accelerator_settings("hierarchical_flashvdm", "hierarchical")   # {"min_resolution": 63, "band": 0.95, ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def config_dir() -> Path:
    """The packaged configs (wheel install) or the repository's ``configs/`` (editable install)."""
    packaged = Path(__file__).resolve().parents[1] / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "configs"


def accelerator_settings(stack: str, key: str, pipeline: str | None = None) -> dict[str, Any]:
    """The knobs of accelerator ``key`` in the named ``stack`` config, resolved (without ``_target_``/``enabled``)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    overrides = [f"stack={stack}"] + ([f"pipeline={pipeline}"] if pipeline else [])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("run", overrides=overrides)
    node = cfg.stack.get("accelerators", {}).get(key)
    if node is None:
        raise KeyError(f"stack '{stack}' has no accelerator '{key}'; it has {sorted(cfg.stack.get('accelerators', {}))}")
    settings = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in settings.items() if not k.startswith("_") and k != "enabled"}
