"""Pipelines name their stages so that accelerators can find what they patch."""

from __future__ import annotations

from typing import Any


class Pipeline:
    """Base class: a pipeline exposes its stages by name.

    Example::

        class MyPipeline(Pipeline):
            def __init__(self, decoder):
                self.stages = {"volume_decoder": decoder}

        MyPipeline(DenseVolumeDecoder()).stage("volume_decoder")
    """

    name: str = "pipeline"
    stages: dict[str, Any]

    def stage(self, name: str) -> Any:
        if name not in self.stages:
            raise KeyError(f"stage: pipeline '{self.name}' has no stage '{name}'; its stages are {sorted(self.stages)}")
        return self.stages[name]
