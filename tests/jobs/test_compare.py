"""The comparison job on a toy pipeline: alternation, repeats, speedups, excluded measurement time, and flags."""

from dataclasses import dataclass, field

import pytest

from accel3d.core import BaseAccelerator, Pipeline, Stack
from accel3d.jobs.compare import compare
from accel3d.jobs.table import format_table


@dataclass
class Result:
    value: float
    timings: dict = field(default_factory=dict)


class Clock:
    """A stage whose cost we set: run() 'takes' cost seconds, which the pipeline reports as its timing."""

    def __init__(self):
        self.cost = 1.0

    def work(self):
        return self.cost


class Toy(Pipeline):
    name, headline_timing, fidelity_metric = "toy", "work_s", "closeness"
    stage_timings = {"worker": "work_s"}

    def __init__(self, baseline_costs=None):
        self.clock = Clock()
        self.stages = {"worker": self.clock}
        self.log = []
        self.baseline_costs = list(baseline_costs or [])

    def load_inputs(self):
        return None

    def warmup_overrides(self):
        return {"warm": True}

    def run(self, inputs, warm=False):
        accelerated = "work" in vars(self.clock)
        self.log.append("warm" if warm else ("fast" if accelerated else "base"))
        cost = self.clock.work()
        if not accelerated and not warm and self.baseline_costs:
            cost = self.baseline_costs.pop(0)
        return Result(cost, {"work_s": cost, "total_s": cost + 0.5})

    def fidelity(self, baseline, result):
        return {"closeness": 1.0 - abs(baseline.value - result.value)}


class Halve(BaseAccelerator):
    name, stage = "halve", "worker"

    def __init__(self, ceiling=None, excluded=0.0, fell_back=None):
        super().__init__()
        self._ceiling, self._excluded, self._fell_back = ceiling, excluded, fell_back

    def _attach(self, target):
        self.patches.wrap(target, "work", lambda f: lambda: f() / 2 + self._excluded)

    def summary(self):
        return {"share": 0.5}

    def ceiling(self):
        return self._ceiling

    def excluded_seconds(self):
        return self._excluded

    def fell_back(self):
        return self._fell_back


def test_runs_alternate_after_one_warm_up_and_every_repeat_is_kept():
    pipe = Toy()
    result = compare(pipe, Stack([Halve()], name="half"), None, repeats=3, log=lambda _: None)
    assert pipe.log == ["warm", "base", "fast", "base", "fast", "base", "fast"]
    row = result.rows["half"]
    assert row["timings"]["work_s"]["repeats"] == [0.5, 0.5, 0.5] and row["speedups"]["work_s"] == pytest.approx(2.0)
    assert row["speedups"]["total_s"] == pytest.approx(1.5 / 1.0)
    assert row["fidelity"] == {"closeness": 0.5} and row["summary"] == {"halve": {"share": 0.5}} and row["flags"] == []


def test_measurement_time_is_taken_out_of_its_stage_and_the_total():
    result = compare(Toy(), Stack([Halve(excluded=0.25)], name="half"), None, repeats=1, warmup=False, log=lambda _: None)
    t = result.rows["half"]["timings"]
    assert t["work_s"]["median"] == pytest.approx(0.5) and t["total_s"]["median"] == pytest.approx(1.0)
    assert t["excluded_s"]["median"] == pytest.approx(0.25)


def test_flags_noise_a_speedup_above_its_ceiling_and_a_fallback():
    pipe = Toy(baseline_costs=[1.0, 3.0, 1.0])  # the baseline's repeats disagree 3x
    stack = Stack([Halve(ceiling=1.2, fell_back="did everything after all")], name="half")
    row = compare(pipe, stack, None, repeats=3, warmup=False, log=lambda _: None).rows["half"]
    flags = " | ".join(row["flags"])
    assert "noisy: baseline work_s repeats range 1-3 s" in flags
    assert "work_s speedup 2.00x is more than 25% above the 1.20x that the skipped work alone would give" in flags
    assert "no saving: did everything after all" in flags
    table = format_table(pipe, compare(pipe, stack, None, repeats=1, warmup=False, log=lambda _: None).rows, parallel_jobs=2)
    assert "halve.share" in table and "1.20x" in table and "not comparable with sequential ones" in table


def test_two_accelerators_of_one_class_keep_separate_statistics():
    class Composable(Halve):
        composable = True

    stack = Stack([Composable(), Composable()], name="twice")
    assert stack.names == ["halve", "halve_2"] and set(stack.stats()) == {"halve", "halve_2"}


def test_a_stack_named_baseline_and_zero_repeats_are_refused():
    with pytest.raises(ValueError, match="stack: names must be unique and not 'baseline'"):
        compare(Toy(), Stack([Halve()], name="baseline"), None, repeats=1, log=lambda _: None)
    with pytest.raises(ValueError, match="^repeats: expected an integer >= 1"):
        compare(Toy(), Stack([Halve()], name="half"), None, repeats=0, log=lambda _: None)


def test_the_work_ratio_of_a_stack_is_known_only_when_every_accelerator_states_one():
    class Other(Halve):
        name, stage, composable = "other", "worker", True

    class Bounded(Halve):
        composable = True

    both = compare(Toy(), Stack([Bounded(ceiling=2.0), Other(ceiling=1.5)], name="s"), None, 1, warmup=False, log=lambda _: None)
    assert both.rows["s"]["work_ratio"] == pytest.approx(3.0)
    one = compare(Toy(), Stack([Bounded(ceiling=1.2), Other()], name="s"), None, 1, warmup=False, log=lambda _: None)
    assert one.rows["s"]["work_ratio"] is None and not any("above" in f for f in one.rows["s"]["flags"])


def test_several_stacks_alternate_with_one_baseline():
    class Third(Halve):
        def _attach(self, target):
            self.patches.wrap(target, "work", lambda f: lambda: f() / 3)

    pipe = Toy()
    result = compare(pipe, [Stack([Halve()], name="half"), Stack([Third()], name="third")], None, 2, warmup=False, log=lambda _: None)
    assert pipe.log == ["base", "fast", "fast", "base", "fast", "fast"]
    assert result.rows["half"]["speedups"]["work_s"] == pytest.approx(2.0)
    assert result.rows["third"]["speedups"]["work_s"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="names must be unique"):
        compare(pipe, [Stack([Halve()], name="x"), Stack([Third()], name="x")], None, 1, log=lambda _: None)
