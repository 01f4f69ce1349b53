"""Peak memory of each stage of a run, beside its time: what users of 3D generators ask about most.

For a stage on a CUDA device it is CUDA's ``max_memory_allocated``, reset before each stage. On a CPU it is the process's
peak resident set size (Linux's ``VmHWM``), reset before each stage by writing ``5`` to ``/proc/self/clear_refs``:
the whole process's memory (the models, the libraries) at its highest during the stage, not only what the stage
allocated. Where the reset is not possible (another OS), it is the peak since the process started, and
:func:`memory_measure` says so. Every record names the measure it holds.

Example::

    clock = StageClock()
    with clock("decode_s"):
        grid = decoder.decode(field, 256)
    clock.timings["decode_s"], clock.peaks["decode_s"]   # seconds, bytes
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


MEASURES = {
    "cuda_max_allocated": "CUDA's peak allocated memory during each stage",
    "process_peak_rss": "the process's peak resident memory during each stage (VmHWM, reset per stage)",
    "process_peak_rss_since_start": "the process's peak resident memory since it started (no per-stage reset here)",
}


def _cuda(device: torch.device | str | None) -> bool:
    """CUDA's measure only for a stage that runs on a CUDA device (accel3d's own pipelines run on the CPU)."""
    return device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()


def _can_reset_rss() -> bool:
    return _STATUS.is_file() and os.access(_CLEAR_REFS, os.W_OK)


def memory_measure(device: torch.device | str | None = None) -> str:
    """What :func:`peak_bytes` reports on this machine for ``device`` (its name in the records; no device: the CPU's)."""
    if _cuda(device):
        return "cuda_max_allocated"
    return "process_peak_rss" if _can_reset_rss() else "process_peak_rss_since_start"


def reset_peak(device: torch.device | str | None = None) -> None:
    """Start a new peak: CUDA's peak statistics, or the process's ``VmHWM`` (where Linux allows)."""
    if _cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


def peak_bytes(device: torch.device | str | None = None) -> int:
    """The peak since the last :func:`reset_peak`, in bytes (see the module for what it counts)."""
    if _cuda(device):
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    try:
        found = re.search(r"VmHWM:\s+(\d+) kB", _STATUS.read_text())
    except OSError:
        found = None
    if found:
        return int(found[1]) * 1024
    import resource  # no /proc: the peak since the process started (ru_maxrss is in KiB on Linux, bytes on macOS)

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


class StageClock:
    """Wall time and peak memory of each stage of one run, under the stage's timing key.

    Example::

        clock = StageClock()
        with clock("encode_s"):
            latents = vae.encode(points, normals)
        result = ShapeResult(grid, mesh, clock.timings)
        result.memory = clock.peaks
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = device
        self.timings: dict[str, float] = {}
        self.peaks: dict[str, int] = {}

    @contextlib.contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        reset_peak(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            peak = peak_bytes(self.device)  # first: on a GPU it waits for the stage's queued work
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start
            self.peaks[key] = max(self.peaks.get(key, 0), peak)
