"""Peak memory per stage (accel3d.core.memory): a stage that allocates shows it, the next stage starts afresh."""

from __future__ import annotations

import pytest
import torch

from accel3d.core.memory import StageClock, memory_measure


def test_each_stage_has_its_own_peak():
    if memory_measure() != "process_peak_rss":
        pytest.skip(f"the peak cannot be reset per stage on this machine ({memory_measure()})")
    clock = StageClock()
    with clock("big_s"):
        block = torch.ones(64 * 2**20 // 4 * 4)  # 256 MiB, touched
        del block
    with clock("small_s"):
        torch.zeros(16)
    assert clock.peaks["big_s"] - clock.peaks["small_s"] > 200 * 2**20  # reset between stages: the big one does not linger
    assert clock.timings["big_s"] > 0 and set(clock.peaks) == {"big_s", "small_s"}


def test_a_repeated_stage_keeps_its_highest_peak_and_adds_its_time():
    clock = StageClock()
    with clock("step_s"):
        pass
    first_time, first_peak = clock.timings["step_s"], clock.peaks["step_s"]
    with clock("step_s"):
        kept = torch.ones(32 * 2**20)  # 128 MiB, kept past the stage
    assert clock.timings["step_s"] > first_time and clock.peaks["step_s"] >= first_peak
    del kept
