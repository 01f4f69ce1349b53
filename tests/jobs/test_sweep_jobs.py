"""The sweep's job list follows Hydra's rule: a command-line value for a key an experiment sweeps replaces that sweep."""

from hydra import compose, initialize_config_dir

from accel3d.jobs.configs import config_dir
from accel3d.jobs.sweep import sweep_jobs


def _jobs(*overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return sweep_jobs(compose("run", overrides=list(overrides), return_hydra_config=True))


def test_an_experiments_sweep_runs_every_combination():
    jobs = _jobs("+experiment=decoding_ablation")
    assert len(jobs) == 10
    assert jobs[0] == ["stack=none", "pipeline.resolution=128", "+experiment=decoding_ablation"]  # Hydra's order
    assert jobs[1] == ["stack=none", "pipeline.resolution=256", "+experiment=decoding_ablation"]


def test_a_command_line_value_replaces_the_experiments_sweep_of_that_key():
    jobs = _jobs("+experiment=decoding_ablation", "pipeline.resolution=64")
    stacks = ("none", "hierarchical", "hierarchical_flashvdm", "flashvdm", "flashvdm_merge")
    assert [j[:2] for j in jobs] == [[f"stack={s}", "pipeline.resolution=64"] for s in stacks]
