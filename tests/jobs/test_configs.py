from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from accel3d.cli import config_dir
from accel3d.core import Stack

CONFIGS = config_dir()


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_config_dir_is_the_repository_configs():
    assert CONFIGS == Path(__file__).resolve().parents[2] / "configs"
    assert {"pipeline", "stack", "experiment"} <= {p.name for p in CONFIGS.iterdir() if p.is_dir()}


# Every stack composes with every pipeline;
# whether the pipeline has the stage a stack targets is checked when the job starts.
PAIRS = [(pipeline, stack) for stack in group_options("stack") for pipeline in group_options("pipeline")]


@pytest.mark.parametrize(("pipeline", "stack"), PAIRS)
def test_every_pipeline_and_stack_composes_and_builds(pipeline, stack):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("run", overrides=[f"pipeline={pipeline}", f"stack={stack}"])
    built = instantiate(cfg.stack, _convert_="object")
    assert isinstance(built, Stack) and built.name == stack
    if pipeline == "custom":  # the user names the class: pipeline._target_=MODULE.CLASS
        assert OmegaConf.is_missing(cfg.pipeline, "_target_")
    else:
        assert cfg.pipeline._target_


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes(experiment):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("run", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params  # an experiment is a sweep


@pytest.mark.parametrize("group", ["pipeline", "stack"])
def test_unknown_names_list_the_options(group):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        with pytest.raises(MissingConfigException, match=f"Could not find '{group}/nope'") as info:
            compose("run", overrides=[f"{group}=nope"])
    assert group_options(group)[0] in str(info.value)
