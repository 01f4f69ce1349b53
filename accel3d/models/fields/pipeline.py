"""``field``: decode any field ``f(points[N, 3]) -> values[N]`` to a mesh, as a pipeline.

It lets the decoding benchmark (and research code) run the comparison job on an
analytic SDF or on a VAE's field directly, without encoding a shape first.

Stages:
    volume_decoder  a DenseVolumeDecoder
    geo_decoder     the VAE's cross-attention decoder behind the field, where there is one

Example::

    from accel3d.geometry import shapes
    pipe = FieldPipeline(lambda p: (shapes.sphere()(p) / 0.03).clamp(-1, 1), resolution=128)
    comparison = compare(pipe, Stack([HierarchicalDecoding()], name="hierarchical"), None)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from accel3d.core.memory import StageClock
from accel3d.core.pipeline import Pipeline
from accel3d.core.validate import check_float, check_int
from accel3d.geometry.grid import DEFAULT_BOUND
from accel3d.geometry.metrics import chamfer_and_fscore, volume_iou
from accel3d.geometry.surface import export_mesh, extract_mesh
from accel3d.geometry.volume import DenseVolumeDecoder, Field
from accel3d.models.vecset.pipeline import ShapeResult


class FieldPipeline(Pipeline):
    """Decode ``field`` on a grid and extract its surface (inside: values above 0)."""

    name = "field"
    stage_names = ("volume_decoder", "geo_decoder")
    headline_timing = "decode_s"
    fidelity_metric = "iou"
    stage_timings = {"volume_decoder": "decode_s", "geo_decoder": "decode_s"}

    def __init__(
        self,
        field: Field,
        resolution: int = 256,
        geo_decoder: Any = None,
        bound: float = DEFAULT_BOUND,
        chunk_size: int = 65536,
        fscore_threshold: float = 0.01,
        warmup_resolution: int = 32,
        source: str = "field",
    ) -> None:
        if not callable(field):
            raise TypeError(f"field: expected a query function f(points[N, 3]) -> values[N], got {type(field).__name__}")
        self.field = field
        self.resolution = check_int("resolution", resolution, low=2)
        self.bound = check_float("bound", bound, low=0.0, low_open=True)
        self.fscore_threshold = check_float("fscore_threshold", fscore_threshold, low=0.0, low_open=True)
        self.warmup_resolution = check_int("warmup_resolution", warmup_resolution, low=2)
        self.source = source
        self.volume_decoder = DenseVolumeDecoder(chunk_size=chunk_size, progress=False)
        self.stages = {"volume_decoder": self.volume_decoder}
        if geo_decoder is not None:
            self.stages["geo_decoder"] = geo_decoder

    def load_inputs(self) -> Any:
        return self

    def run(self, inputs: Any = None, resolution: int | None = None) -> ShapeResult:
        clock = StageClock()
        with clock("decode_s"):
            grid = self.volume_decoder.decode(self.field, resolution or self.resolution, self.bound)
        with clock("surface_s"):
            mesh = extract_mesh(grid)
        timings = {**clock.timings, "total_s": sum(clock.timings.values())}
        return ShapeResult(grid, mesh, timings, {**clock.peaks, "total_s": max(clock.peaks.values())})

    def warmup_overrides(self) -> dict[str, Any]:
        return {"resolution": self.warmup_resolution}

    def fidelity(self, baseline: ShapeResult, result: ShapeResult) -> dict[str, float]:
        scores = chamfer_and_fscore(baseline.mesh, result.mesh, self.fscore_threshold)
        return {"iou": volume_iou(np.asarray(baseline.grid.values > 0), np.asarray(result.grid.values > 0)), **scores}

    def result_figures(self, result: ShapeResult) -> dict[str, Any]:
        return {"queries": result.grid.queries, "query %": round(100 * result.grid.query_fraction, 2)}

    def describe(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "input": self.source}

    def write_artefacts(self, result: ShapeResult, baseline: ShapeResult | None, out_dir: Path, options: dict[str, Any]) -> dict:
        return {f"mesh_{fmt}": export_mesh(result.mesh, out_dir / f"mesh.{fmt}").name for fmt in options.get("export_formats", [])}
