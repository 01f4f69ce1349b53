"""The Fast-SAM3D stack on the image_to_3d pipeline (a tiny random-init checkpoint): do-nothing settings are exact,
detach restores, active settings cut the work the pipeline counts, and the job layer refuses a pipeline without
the stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from accel3d.api import load_stack
from accel3d.core.validate import ArgumentError
from accel3d.jobs.configs import config_dir
from accel3d.jobs.run import prepare_job
from accel3d.models.image_to_3d.pipeline import ImageTo3DPipeline
from accel3d.pruning.extrapolation import full_steps
from tests.pruning.fakes import ss_model_calls

IDLE = {"modality_cache": {"stride": 1}, "token_carving": {"ratio": 0.0, "skip_threshold": 0.0}, "spectral_aggregation": {"factor": 1.0}}


def _same(a, b) -> bool:
    return (
        np.array_equal(a.mesh.vertices, b.mesh.vertices)
        and np.array_equal(a.mesh.faces, b.mesh.faces)
        and torch.equal(a.tokens, b.tokens)
        and all(torch.equal(x[k], y[k]) for x, y in zip(a.ss_velocities, b.ss_velocities) for k in x)
        and all(torch.equal(x, y) for x, y in zip(a.slat_velocities, b.slat_velocities))
        and torch.equal(a.layout.translation, b.layout.translation)
    )


@pytest.fixture
def pipe(tiny_image_to_3d_weights):
    torch.set_num_threads(1)
    return ImageTo3DPipeline(weights=str(tiny_image_to_3d_weights), ss_steps=8, slat_steps=8, progress=False)


def test_the_do_nothing_stack_reproduces_the_pipeline_and_detach_restores_it(pipe):
    inputs = pipe.load_inputs()
    baseline = pipe.run(inputs)
    idle = load_stack("fastsam3d", **IDLE)
    with idle.applied(pipe):
        assert _same(pipe.run(inputs), baseline)
    active = load_stack("fastsam3d", spectral_aggregation={"factor": 1.5, "min_tokens": 0, "scale_factors": False})
    with active.applied(pipe):
        changed = pipe.run(inputs)
    assert not _same(changed, baseline)
    assert _same(pipe.run(inputs), baseline)


def test_the_active_stack_cuts_the_model_calls_and_tokens_the_pipeline_counts(pipe):
    inputs = pipe.load_inputs()
    baseline = pipe.run(inputs)
    stack = load_stack(
        "fastsam3d", spectral_aggregation={"factor": 1.5, "min_tokens": 0, "scale_factors": False}, token_carving={"skip_threshold": 0.0}
    )
    with stack.applied(pipe):
        result = pipe.run(inputs)
    assert baseline.work["ss_model_calls"] == ss_model_calls(8) == 2 * 8 - 1  # no guidance at t > 0.5: the last step
    assert result.work["ss_model_calls"] == ss_model_calls(8, full_steps(8, 2, 3))
    assert result.structure.factor == 1.5 and result.structure.tokens < baseline.structure.tokens
    stats = stack.stats()["token_carving"]
    assert result.work["slat_tokens"] == stats["tokens_computed"] < 8 * result.structure.tokens
    assert stats["tokens_carved"] == 5 * int(0.1 * result.structure.tokens)  # steps 3-7 carve a tenth each


def test_the_job_layer_names_the_stages_a_pipeline_lacks():
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("run", overrides=["pipeline=vecset_shape", "stack=fastsam3d"])
    expected = r"^stack: 'fastsam3d' targets stage\(s\) \['slat_sampler', 'sparse_structure', 'ss_sampler'\], which pipeline 'vecset_shape'"
    with pytest.raises(ArgumentError, match=expected):
        prepare_job(cfg)
