"""What a record says about where it ran: versions, device, commit, threads, load."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(threads: int, parallel_jobs: int = 1) -> dict[str, Any]:
    """Versions of accel3d and its numeric stack, the device, the commit, and the timing conditions."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else _cpu_model()
    return {
        "versions": {p: _version(p) for p in ("accel3d", "torch", "diffusers", "triton", "hydra-core")},
        "python": platform.python_version(),
        "device": device,
        "cuda": torch.cuda.is_available(),
        "git_commit": _git_commit(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "parallel_jobs": parallel_jobs,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def choose_threads(requested: int | None, parallel_jobs: int) -> int:
    """Torch threads for a job: as asked, or the cores shared among the jobs running at once."""
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, parallel_jobs))
