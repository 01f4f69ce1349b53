"""Fixtures of the real-library tests: one thread (bit-identical comparisons), and the real TRELLIS and SAM 3D Objects
classes (each test module loads them once; skipped with the install line where absent)."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests.integrations import real_models


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Bit-identical outputs are compared with one thread, as the issue's real-class tests are."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _loaded(loader: Any, install: str) -> Iterator[types.SimpleNamespace]:
    with loader() as loaded:
        if loaded is None:
            pytest.skip(install)
        yield loaded


@pytest.fixture(scope="module")
def trellis() -> Iterator[types.SimpleNamespace]:
    yield from _loaded(real_models.trellis_modules, real_models.TRELLIS_INSTALL)


@pytest.fixture(scope="module")
def sam3d() -> Iterator[types.SimpleNamespace]:
    yield from _loaded(real_models.sam3d_modules, real_models.SAM3D_INSTALL)
