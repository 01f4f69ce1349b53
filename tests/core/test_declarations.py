"""One declaration per accelerator: its config dataclass. The registry, the YAML file and the class agree
by construction, and these tests check every accelerator that exists."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class
from omegaconf import OmegaConf

from accel3d.core.config import AcceleratorConfig
from accel3d.core.stack import build_stack
from accel3d.core.validate import ArgumentError
from accel3d.jobs.configs import SCHEMA_GROUP, compose_run, config_dir, discover

DECLARED = sorted(discover())


def test_every_yaml_file_has_a_declaration_and_every_declaration_a_yaml_file():
    files = sorted(p.stem for p in (config_dir() / "accelerator").glob("*.yaml"))
    assert files == DECLARED
    assert {"hierarchical", "adaptive_kv", "hash3d", "modality_cache", "token_carving", "spectral_aggregation"} <= set(DECLARED)


@pytest.mark.parametrize("name", DECLARED)
def test_name_stage_class_and_file_agree(name):
    config = discover()[name]
    assert config.NAME == name and config.STAGE
    cls = get_class(config._target_)  # the dataclass's default _target_: the accelerator class
    assert cls.Config is config and cls.name == name and cls.stage == config.STAGE
    accelerator = cls()
    assert accelerator.name == name and accelerator.config == config()
    # the file extends the dataclass: Hydra composes a node of that type, with the dataclass's defaults
    node = compose_run(["stack=none", f"+accelerator@stack.accelerators.{name}={name}"]).stack.accelerators[name]
    assert OmegaConf.get_type(node) is config
    built = build_stack("one", {name: node}).accelerators[0]
    assert type(built) is cls and built.config.knobs().keys() == config().knobs().keys()


@pytest.mark.parametrize("name", DECLARED)
def test_the_yaml_file_writes_no_default_again(name):
    """Knobs, defaults and limits are written once, in the dataclass: a file keeps only the run's interpolations."""
    raw = OmegaConf.to_container(OmegaConf.load(config_dir() / "accelerator" / f"{name}.yaml"), resolve=False)
    assert raw.pop("defaults") == [f"/{SCHEMA_GROUP}/{name}@_here_", "_self_"]
    assert all(isinstance(v, str) and v.startswith("${") for v in raw.values()), raw


@pytest.mark.parametrize("name", DECLARED)
def test_every_knob_is_documented_checked_and_frozen(name):
    config = discover()[name]
    assert dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen
    for f in config.knob_fields():
        assert f.metadata.get("doc"), f"{name}.{f.name} has no documentation"
        assert f.metadata.get("check") is not None, f"{name}.{f.name} has no check"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config().enabled = False  # type: ignore[misc]


def test_a_bad_value_and_an_unknown_knob_are_refused_naming_them():
    config = discover()["hierarchical"]
    with pytest.raises(ArgumentError, match=r"^band: expected a finite number > 0 or None, got nan"):
        config(band=math.nan)
    with pytest.raises(ArgumentError, match=r"^hierarchical: unknown knob\(s\) \['bnd'\]; its knobs are \['band'"):
        config.from_knobs({"bnd": 1.0})
    with pytest.raises(ArgumentError, match=r"^stack.accelerators.h: band: expected"):
        build_stack("s", {"h": {"_target_": config._target_, "band": -1.0}})


def test_hydra_refuses_a_misspelled_knob_by_itself():
    """The YAML extends the dataclass, so Hydra's struct mode refuses a key the dataclass does not declare."""
    with pytest.raises(ConfigCompositionException, match="bnd"):
        compose_run(["stack=hierarchical", "stack.accelerators.hierarchical.bnd=1"])
    with pytest.raises(ConfigCompositionException, match="min_resolution"):  # typed: an int knob takes no text
        compose_run(["stack=hierarchical", "stack.accelerators.hierarchical.min_resolution=abc"])


def test_a_second_declaration_of_a_name_is_refused():
    with pytest.raises(ValueError, match="'hierarchical' is already declared"):

        @dataclasses.dataclass(frozen=True)
        class Impostor(AcceleratorConfig):
            NAME = "hierarchical"


def test_constants_copied_into_torch_free_configs_match_their_sources():
    from accel3d.decoding.config import BACKENDS, DEFAULT_BOUND
    from accel3d.geometry.grid import DEFAULT_BOUND as GRID_BOUND
    from accel3d.kernels.dispatch import BACKENDS as KERNEL_BACKENDS

    assert BACKENDS == KERNEL_BACKENDS and DEFAULT_BOUND == GRID_BOUND


def test_enabled_is_read_by_stacks_and_refused_on_an_accelerator_built_directly():
    from accel3d.decoding import HierarchicalDecoding

    assert build_stack("s", {"h": {"_target_": "accel3d.decoding.HierarchicalDecoding", "enabled": False}}).is_empty
    with pytest.raises(ArgumentError, match="^hierarchical: enabled=false leaves an accelerator out of a stack"):
        HierarchicalDecoding(enabled=False)


def test_load_stack_takes_enabled_and_names_a_knob_no_accelerator_declares():
    import accel3d

    assert accel3d.load_stack("hierarchical", enabled=False).is_empty
    with pytest.raises(ArgumentError, match=r"several accelerators \(\['hierarchical', 'adaptive_kv'\]\)"):
        accel3d.load_stack("flashvdm", enabled=False)  # ambiguous: say which
    assert accel3d.load_stack("flashvdm", adaptive_kv={"enabled": False}).names == ["hierarchical"]


def test_a_baseline_reuses_its_modules_knob_declarations():
    from accel3d.pruning.config import RandomDropConfig, TaylorSeerConfig, TokenCarvingConfig

    for base, baseline, name in (
        (TokenCarvingConfig, RandomDropConfig, "max_stale"),
        (discover()["modality_cache"], TaylorSeerConfig, "stride"),
    ):
        ours, theirs = baseline.__dataclass_fields__[name], base.__dataclass_fields__[name]
        assert ours.default == theirs.default and ours.metadata["check"] is theirs.metadata["check"]
