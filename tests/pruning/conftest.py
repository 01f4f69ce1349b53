"""Fixtures of the pruning tests: the real-model ones (TRELLIS v1, SAM 3D Objects; skipped with the install line
where absent), one thread for every pruning test, and the tiny random-init image_to_3d checkpoint of the pipeline tests."""

import pytest

from tests.integrations.conftest import one_thread, sam3d, trellis  # noqa: F401 (pytest fixtures)
from tests.models.image_to_3d.conftest import tiny_image_to_3d_config, tiny_image_to_3d_models, tiny_image_to_3d_weights  # noqa: F401


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:  # noqa: F811 (the imported fixture, requested by name)
    """Bit-identical comparisons run on one thread."""
