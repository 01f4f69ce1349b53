"""Where the configs are, which accelerators exist, and the settings a named stack gives them.

Each strategy declares its accelerators in ``accel3d/<strategy>/config.py`` (torch-free dataclasses,
:mod:`accel3d.core.config`). :func:`discover` imports those modules, so a new strategy folder is found
without editing anything; :func:`register_configs` stores each dataclass in Hydra's ConfigStore as
``schema/accelerator/<NAME>``, which ``configs/accelerator/<NAME>.yaml`` extends. Benchmarks and
scripts read a stack's settings through :func:`accelerator_settings`, so they use the same values as
`accel3d run` (one source of truth).

Example::

    from accel3d.jobs.configs import accelerator_settings, discover

    sorted(discover())                                              # ["adaptive_kv", "easycache", ...]
    accelerator_settings("hierarchical_flashvdm", "hierarchical")   # {"min_resolution": 63, "band": 0.95, ...}
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from accel3d.core.config import AcceleratorConfig, accelerator_configs

SCHEMA_GROUP = "schema/accelerator"  # where the dataclasses live in Hydra's ConfigStore


def config_dir() -> Path:
    """The packaged configs (wheel install) or the repository's ``configs/`` (editable install)."""
    packaged = Path(__file__).resolve().parents[1] / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "configs"


def discover() -> dict[str, type[AcceleratorConfig]]:
    """Every accelerator's config class by name, after importing each ``accel3d/<package>/config.py``."""
    import accel3d

    for path in sorted(Path(accel3d.__file__).resolve().parent.glob("*/config.py")):
        import_module(f"accel3d.{path.parent.name}.config")
    return accelerator_configs()


def accelerator_config(name: str) -> type[AcceleratorConfig]:
    """The config class of the accelerator called ``name`` (an unknown name lists the known ones)."""
    from accel3d.core.validate import ArgumentError

    configs = discover()
    if name not in configs:
        raise ArgumentError(f"accelerator: unknown name {name!r}; expected one of {sorted(configs)}")
    return configs[name]


def register_configs() -> None:
    """Store every accelerator's dataclass in Hydra's ConfigStore (before Hydra composes a config)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    for name, cls in discover().items():
        node = OmegaConf.structured(cls)
        OmegaConf.set_readonly(node, False)  # frozen in Python; overridable from the command line
        store.store(group=SCHEMA_GROUP, name=name, node=node)


def compose_run(overrides: list[str]) -> Any:
    """``configs/run.yaml`` composed with ``overrides``, as `accel3d run` would (without running it)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("run", overrides=overrides)


def accelerator_settings(stack: str, key: str, pipeline: str | None = None) -> dict[str, Any]:
    """The knobs of accelerator ``key`` in the named ``stack`` config, resolved (without ``_target_``/``enabled``)."""
    from omegaconf import OmegaConf

    cfg = compose_run([f"stack={stack}"] + ([f"pipeline={pipeline}"] if pipeline else []))
    node = cfg.stack.get("accelerators", {}).get(key)
    if node is None:
        raise KeyError(f"stack '{stack}' has no accelerator '{key}'; it has {sorted(cfg.stack.get('accelerators', {}))}")
    settings = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in settings.items() if not k.startswith("_") and k != "enabled"}
