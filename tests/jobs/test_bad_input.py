"""Bad job configurations and sweeps: the whole configuration is checked before the first model
call, and sweeps summarise exactly their own jobs and keep the results of the jobs that did not fail."""

import csv
import json
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from accel3d.cli import config_dir
from accel3d.geometry.volume import DenseVolumeDecoder
from accel3d.jobs.run import check_job_config, prepare_job, run_job

TINY = ["pipeline.resolution=32", "pipeline.num_points=256", "pipeline.progress=false", "stack.accelerators.hierarchical.min_resolution=8"]


def config(*overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("run", overrides=list(overrides))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("repeats=0", "^repeats: expected an integer >= 1"),
        ("repeats=1.5", "^repeats: expected an integer"),
        ("threads=0", "^threads: expected an integer >= 1"),
        ("export_formats=[stl]", "^export_formats: expected a list of"),
        ("export_formats=obj2", "^export_formats: expected"),
        ("baseline=maybe", "^baseline: expected true or false"),
        ("preview='false'", "^preview: expected true or false"),
        ("seed=0.5", "^seed: expected an integer"),
    ],
)
def test_job_knobs(override, match):
    with pytest.raises((ValueError, TypeError), match=match):
        check_job_config(config(override))


def test_a_single_export_format_is_a_list_of_one():
    assert check_job_config(config("export_formats=glb"))["export_formats"] == ["glb"]
    assert check_job_config(config("export_formats=[]"))["export_formats"] == []


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["stack.accelerators.hierarchical.band=nan"], r"stack.accelerators.hierarchical: band: expected a finite number > 0"),
        (["pipeline.level=nan"], r"level: expected a finite number"),
        (["stack=flashvdm", "stack.accelerators.adaptive_kv.topk=0"], r"topk: expected an integer >= 1"),
        (["pipeline=sds", "stack=hash3d", "pipeline.guidance_scale=nan"], r"pipeline.*guidance_scale: expected a finite number"),
        (["pipeline=sds", "stack=hash3d", "stack.accelerators.hash3d.temperature=inf"], r"temperature: expected"),
        (["pipeline.input=''"], r"input: expected null"),
        (["pipeline.fscore_threshold=-0.01"], r"fscore_threshold: expected a finite number > 0"),
        (["pipeline.fscore_threshold=nan"], r"fscore_threshold: expected"),
        (
            ["+stack.accelerators.hierarchical.bandd=0.3"],
            r"^stack.accelerators.hierarchical: unknown knob\(s\) \['bandd'\]; its knobs are \['band'",
        ),
        (["stack=hash3d", "pipeline=sds", "+stack.accelerators.hash3d.retrieve=0.5"], r"unknown knob\(s\) \['retrieve'\].*'retrieve_prob'"),
    ],
)
def test_bad_knobs_anywhere_in_the_config_fail_before_any_model_call(overrides, match, monkeypatch, tiny_weights):
    monkeypatch.setattr(DenseVolumeDecoder, "decode", lambda *a, **k: pytest.fail("decoded before the config was checked"))
    weights = [f"pipeline.weights={tiny_weights}"] if not any("pipeline=sds" in o for o in overrides) else []
    with pytest.raises((ValueError, TypeError), match=match):
        prepare_job(config(*weights, *overrides))


def test_a_resolution_below_the_stacks_minimum_is_refused_before_the_baseline(tmp_path, monkeypatch, tiny_weights):
    calls = []
    monkeypatch.setattr(DenseVolumeDecoder, "decode", lambda *a, **k: calls.append(1))
    cfg = config(f"pipeline.weights={tiny_weights}", "pipeline.resolution=32", "stack.accelerators.hierarchical.min_resolution=48")
    with pytest.raises(ValueError, match=r"^pipeline.resolution: 32 is below min_resolution 48 of the 'hierarchical' accelerator"):
        run_job(cfg, tmp_path)
    record = json.loads((tmp_path / "record.json").read_text())
    assert calls == [] and record["status"] == "failed" and "below min_resolution 48" in record["error"]


def accel3d(*args, cwd, ok=True):
    proc = subprocess.run([sys.executable, "-m", "accel3d.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


def _rows(sweep):
    with open(sweep / "report.csv") as fh:
        return list(csv.DictReader(fh))


def test_a_reused_sweep_directory_summarises_only_the_new_sweep(tmp_path, tiny_weights):
    sweep = tmp_path / "sweep"
    common = [f"pipeline.weights={tiny_weights}", *TINY, f"hydra.sweep.dir={sweep}", "preview=false", "export_formats=[]"]
    accel3d("run", "-m", "stack=hierarchical,hierarchical_flashvdm", *common, cwd=tmp_path)
    assert [r["stack"] for r in _rows(sweep)] == ["hierarchical", "hierarchical_flashvdm"]
    accel3d("run", "-m", "stack=hierarchical_flashvdm", "stack.accelerators.hierarchical.band=0.5", *common, cwd=tmp_path)
    rows = _rows(sweep)  # job 1's folder from the first sweep is still there, and is left out
    assert [(r["job"], r["stack"]) for r in rows] == [("0", "hierarchical_flashvdm")]
    assert "stack.accelerators.hierarchical.band=0.5" in rows[0]["overrides"]
    assert "2 record(s) of earlier sweeps" in (sweep / "report.md").read_text()


def test_a_failed_job_is_listed_and_the_others_are_summarised(tmp_path, tiny_weights):
    sweep = tmp_path / "sweep"
    proc = accel3d(
        "run",
        "-m",
        "stack.accelerators.hierarchical.band=0.3,-1,0.5",
        f"pipeline.weights={tiny_weights}",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        "preview=false",
        "export_formats=[]",
        cwd=tmp_path,
        ok=False,
    )
    rows = _rows(sweep)
    assert [r["job"] for r in rows] == ["0", "2"] and all(r["iou"] for r in rows)
    md = (sweep / "report.md").read_text()
    assert "## 1 job(s) failed" in md and "band: expected a finite number > 0 or None, got -1" in md
    assert (sweep / "speed_vs_fidelity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 sweep job(s) did not complete" in proc.stderr
    record = json.loads((sweep / "1_hierarchical" / "record.json").read_text())
    assert record["status"] == "failed" and "Traceback" in record["traceback"] and record["job"] == 1


def test_a_stack_for_another_pipeline_is_an_argument_error_so_a_sweep_goes_on(tiny_weights):
    with pytest.raises(ValueError, match=r"^stack: 'hash3d' targets stage\(s\) \['denoiser'\], which pipeline 'vecset_shape'"):
        prepare_job(config(f"pipeline.weights={tiny_weights}", "stack=hash3d"))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            "stack.accelerators.hierarchical.band=abc",
            r"(?s)band=abc.*could not be converted to Float.*full_key: stack.accelerators.hierarchical.band",
        ),
        (
            "stack.accelerators.hierarchical.enabled=maybe",
            r"(?s)enabled=maybe.*not a valid bool.*full_key: stack.accelerators.hierarchical.enabled",
        ),
        ("stack.accelerators.hierarchical.min_resolution=1.5", r"(?s)min_resolution=1.5.*could not be converted to Integer"),
        ("stack.accelerators.hierarchical.bandd=0.3", r"(?s)Could not override 'stack.accelerators.hierarchical.bandd'"),
        ("stack.accelerators.hierarchical.level=0.3", r"(?s)Could not override 'stack.accelerators.hierarchical.level'"),  # the stage's
    ],
)
def test_hydra_refuses_an_override_of_the_wrong_type_or_name_naming_the_knob(override, match):
    """The accelerator configs extend their dataclasses, so Hydra itself checks names and types while composing."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as info:
        config(override)
    assert re.search(match, f"{info.value}\n{info.value.__cause__}"), f"{info.value}\n{info.value.__cause__}"


def test_a_quoted_false_is_read_as_false_never_as_true():
    node = config("stack=flashvdm", "stack.accelerators.adaptive_kv.per_head='false'").stack.accelerators.adaptive_kv
    assert node.per_head is False  # the typed schema converts it; the dataclass then holds a bool


def test_the_on_off_experiment_builds_all_four_subsets():
    from hydra.utils import instantiate

    names = set()
    for h in ("true", "false"):
        for kv in ("true", "false"):
            cfg = config("stack=flashvdm", f"stack.accelerators.hierarchical.enabled={h}", f"stack.accelerators.adaptive_kv.enabled={kv}")
            stack = instantiate(cfg.stack)
            names.add((stack.name, tuple(stack.names)))
    assert names == {
        ("flashvdm", ("hierarchical", "adaptive_kv")),
        ("flashvdm[hierarchical]", ("hierarchical",)),
        ("flashvdm[adaptive_kv]", ("adaptive_kv",)),
        ("flashvdm[none]", ()),
    }


def test_a_top_level_accelerator_config_is_refused(tiny_weights):
    with pytest.raises(ValueError, match=r"^accelerator: a top-level accelerator config is not part of any stack"):
        prepare_job(config(f"pipeline.weights={tiny_weights}", "+accelerator=hash3d"))


def test_a_failed_record_keeps_seed_and_environment(tmp_path, tiny_weights):
    with pytest.raises(ValueError):
        run_job(config(f"pipeline.weights={tiny_weights}", "stack.accelerators.hierarchical.band=-1"), tmp_path)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "failed" and record["seed"] == 0
    assert record["environment"]["versions"]["torch"] and record["environment"]["device"]
