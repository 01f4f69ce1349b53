"""Any field ``f(points[N, 3]) -> values[N]`` (an analytic SDF, a VAE's decoder, your own backbone) decoded
to a mesh as a pipeline: :class:`~accel3d.models.fields.pipeline.FieldPipeline` (``pipeline.py``)."""
