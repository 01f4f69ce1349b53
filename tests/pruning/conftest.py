"""The real-model fixtures (TRELLIS v1, SAM 3D Objects; skipped with the install line where absent), one thread."""

from tests.models.test_real_model_adapters import one_thread, sam3d, trellis  # noqa: F401 (pytest fixtures)
