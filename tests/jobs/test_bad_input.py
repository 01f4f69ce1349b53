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
        ("export_formats=5", "^export_formats: expected a list of"),
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


# ---------------------------------------------------------------- a pipeline's own knobs are named as the pipeline's


@pytest.mark.parametrize("override", ["pipeline.level=nan", "pipeline.inside=1"])
def test_the_volume_stages_level_and_inside_are_named_as_pipeline_knobs(override, tiny_weights):
    """The hierarchical accelerator refines around its stage's level and sign; a bad one is the pipeline's knob."""
    knob = override.split("=")[0].removeprefix("pipeline.")
    with pytest.raises(ValueError) as info:
        prepare_job(config(f"pipeline.weights={tiny_weights}", override))
    message = str(info.value)
    assert message.startswith("pipeline") and re.match(rf"pipeline(\.|: ){knob}: expected", message), message
    assert "stack.accelerators" not in message and "hierarchical" not in message


# ---------------------------------------------------------------- jobs stopped by a signal (SIGTERM: schedulers)


def _status(record_path):
    try:
        return json.loads(record_path.read_text()).get("status")
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize(("sig", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_job_stopped_by_a_signal_is_recorded_as_interrupted_with_its_wall_time(tmp_path, tiny_weights, sig, code):
    import signal
    import time

    out = tmp_path / "run"
    args = [f"pipeline.weights={tiny_weights}", "pipeline.resolution=128", *TINY[1:], "repeats=5", f"hydra.run.dir={out}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "accel3d.cli", "run", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while _status(out / "record.json") != "running":  # the job has started (a 128^3 run lasts far longer)
            assert proc.poll() is None and time.monotonic() < deadline, "the job ended or never started"
            time.sleep(0.05)
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err[-3000:]
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "interrupted" and record["signal"] == sig, record.get("error")
    assert 0 < record["wall_s"] < 60 and "runs" not in record
    assert not list(out.rglob("*.part")) and not list(out.rglob(".*.part"))
    assert f"record is in {out}" in err and "Traceback" not in err


def test_an_interruption_that_a_library_swallows_is_raised_again():
    """trimesh catches BaseException around optional imports; a signal landing there must not be lost."""
    code = (
        "import os, signal, time\n"
        "from accel3d.jobs.interrupt import cleaning_up, signals_interrupt\n"
        "with signals_interrupt():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(1)\n"
        "    except BaseException:\n"
        "        print('swallowed', flush=True)\n"
        "    try:\n"
        "        time.sleep(10)\n"
        "    except KeyboardInterrupt as exc:\n"
        "        cleaning_up()\n"
        "        print('raised again:', exc.signal_name, flush=True)\n"
        "print('handler back:', signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split("\n")[:3] == ["swallowed", "raised again: SIGTERM", "handler back: True"], proc.stdout + proc.stderr


def test_an_interrupted_job_removes_the_partial_files_of_its_exports(tmp_path, monkeypatch):
    import os
    import time

    import accel3d.jobs.run as run_module
    from accel3d.core.io import atomic_write

    old = tmp_path / ".report.csv.older.part"  # another writer's, from before this job: left alone
    old.write_text("x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))

    def interrupted_export(cfg, out_dir, parallel_jobs):
        with atomic_write(out_dir / "mesh.glb") as tmp:
            tmp.write_bytes(b"half a mesh")
            (out_dir / ".mesh.ply.k3j2.part").write_bytes(b"left by a signal between creation and cleanup")
            raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_run", interrupted_export)
    with pytest.raises(KeyboardInterrupt):
        run_job(config(), tmp_path)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "interrupted" and record["signal"] == "SIGINT" and record["wall_s"] >= 0
    assert sorted(p.name for p in tmp_path.glob(".*.part")) == [old.name] and not (tmp_path / "mesh.glb").exists()
    assert record["removed_partial_files"] == [".mesh.ply.k3j2.part"]


# ---------------------------------------------------------------- the report: interrupted jobs, records that hold no result


def _write_record(folder, record):
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record))


def _completed(stack="hierarchical", **changes):
    record = {
        "status": "completed",
        "pipeline": "vecset_shape",
        "stack": stack,
        "accelerators": [stack] if stack != "none" else [],
        "headline": {"timing": "decode_s", "fidelity_metric": "iou", "higher_is_better": True},
        "runs": {
            "baseline": {"timings": {"decode_s": {"median": 8.0}}, "repeats": 1},
            stack: {"timings": {"decode_s": {"median": 2.0}}, "speedups": {"decode_s": 4.0}, "fidelity": {"iou": 0.99}},
        },
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ({"status": "completed"}, "without 'pipeline', 'stack', 'accelerators', 'runs'"),
        (_completed(runs=None), "without 'runs'"),
        (_completed(runs={}), "'runs' has no run 'hierarchical'"),
        (_completed(runs=[]), "'runs' is not an object"),
        (_completed(runs={"baseline": {"timings": {"decode_s": {"median": 8.0}}}}), "'runs' has no run 'hierarchical'"),
        (_completed(runs={"hierarchical": {"fidelity": {"iou": 1.0}}}), "run 'hierarchical' has no timings"),
        (_completed(stack="none", runs={}), "'runs' has no run 'baseline'"),
        (_completed(accelerators=None), "without 'accelerators'"),
    ],
)
def test_a_completed_record_without_its_runs_is_incomplete_not_a_result(tmp_path, record, why):
    from accel3d.jobs.report import collect, write_report

    _write_record(tmp_path / "good", _completed())
    _write_record(tmp_path / "bad", record)
    found = collect(tmp_path)
    assert [r["path"] for r in found.completed] == [str(tmp_path / "good")]
    assert [(p.parent.name, w) for p, w in found.incomplete] == [("bad", found.incomplete[0][1])] and why in found.incomplete[0][1]
    write_report(tmp_path)
    with open(tmp_path / "report.csv") as fh:
        assert [r["path"] for r in csv.DictReader(fh)] == [str(tmp_path / "good")]  # never a row with speedup 1
    md = (tmp_path / "report.md").read_text()
    assert "## 1 job(s) incomplete records (skipped)" in md and why in md


def test_the_report_lists_interrupted_jobs_apart_from_failed_and_running_ones(tmp_path, capsys):
    from accel3d.cli import _main
    from accel3d.jobs.report import collect

    _write_record(tmp_path / "done", _completed())
    _write_record(tmp_path / "stopped", {"status": "interrupted", "signal": "SIGTERM", "wall_s": 12.5})
    _write_record(tmp_path / "ctrl_c", {"status": "interrupted", "signal": "SIGINT", "wall_s": 3.0})
    _write_record(tmp_path / "killed", {"status": "running"})
    _write_record(tmp_path / "broken", {"status": "failed", "error": "ValueError: x"})
    _write_record(tmp_path / "bare", {"status": "completed"})
    found = collect(tmp_path)
    assert [len(x) for x in (found.completed, found.failed, found.interrupted, found.running, found.incomplete)] == [1, 1, 2, 1, 1]
    _main(["report", str(tmp_path)])
    out = capsys.readouterr()
    assert "1 completed, 1 failed, 2 interrupted, 1 running or killed, 0 missing, 0 unreadable, 1 incomplete" in out.out
    assert "skipped incomplete record" in out.err
    md = (tmp_path / "report.md").read_text()
    assert f"## 2 job(s) interrupted\n\n- {tmp_path / 'ctrl_c'}: interrupted by SIGINT after 3.0 s" in md
    assert f"- {tmp_path / 'stopped'}: interrupted by SIGTERM after 12.5 s" in md
    assert f"## 1 job(s) still running or killed\n\n- {tmp_path / 'killed'}\n" in md
