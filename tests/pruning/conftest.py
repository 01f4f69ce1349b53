"""Fixtures of the pruning tests: the real-model ones (TRELLIS v1, SAM 3D Objects; skipped with the install line
where absent, one thread) and the tiny random-init image_to_3d checkpoint of the pipeline tests."""

from tests.integrations.test_real_model_adapters import one_thread, sam3d, trellis  # noqa: F401 (pytest fixtures)
from tests.models.image_to_3d.conftest import tiny_image_to_3d_config, tiny_image_to_3d_models, tiny_image_to_3d_weights  # noqa: F401
