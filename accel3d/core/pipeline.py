"""The pipeline contract: what every pipeline provides, and all that the job layer relies on.

A pipeline names its stages (the objects accelerators patch), loads its inputs,
runs once with per-stage timings, judges an accelerated result against an
unaccelerated one (the metrics of DESIGN.md's "Fidelity" section), and writes
the files a person looks at. The comparison job (``accel3d.jobs.compare``),
``accel3d run``, the benchmarks and ``accel3d report`` use nothing else, so a new
pipeline needs no change to any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class PipelineResult(Protocol):
    """What ``Pipeline.run`` returns: anything with per-stage wall times in seconds (``total_s`` among them)."""

    timings: dict[str, float]


class Pipeline:
    """Base class of pipelines.

    Subclasses set ``name`` and ``stages`` and implement :meth:`load_inputs`,
    :meth:`run`, :meth:`fidelity` and :meth:`write_artefacts`. Class attributes say
    how results are read:

    - ``headline_timing``: the timing whose ratio is the headline speedup;
    - ``fidelity_metric``: the fidelity figure a speed-vs-fidelity plot uses, and
      ``higher_is_better`` for it;
    - ``stage_timings``: the timing key of each stage, so that time an accelerator
      spends only on measuring itself is taken out of its stage;
    - ``caption_metrics``: the fidelity figures the pictures' captions show (empty: all of them);
    - ``table_timings``: timings shown beside the headline and the total in the results table.

    Example::

        class MyPipeline(Pipeline):
            name = "mine"
            headline_timing, fidelity_metric = "decode_s", "iou"

            def __init__(self, decoder):
                self.stages = {"volume_decoder": decoder}

        MyPipeline(DenseVolumeDecoder()).stage("volume_decoder")
    """

    name: str = "pipeline"
    stage_names: tuple[str, ...] = ()  # the stages it will have, for listings before one is built
    stages: dict[str, Any]
    headline_timing: str = "total_s"
    fidelity_metric: str = ""
    higher_is_better: bool = True
    stage_timings: dict[str, str] = {}
    table_timings: tuple[str, ...] = ()
    caption_metrics: tuple[str, ...] = ()

    def stage(self, name: str) -> Any:
        if name not in self.stages:
            raise KeyError(f"stage: pipeline '{self.name}' has no stage '{name}'; its stages are {sorted(self.stages)}")
        return self.stages[name]

    # ------------------------------------------------------------------ the contract
    def load_inputs(self) -> Any:
        """The inputs of one generation (an object with a ``source`` string that says where they came from)."""
        raise NotImplementedError

    def run(self, inputs: Any, **overrides: Any) -> PipelineResult:
        """One generation; ``overrides`` change a knob for this run only (the warm-up uses them)."""
        raise NotImplementedError

    def warmup_overrides(self) -> dict[str, Any]:
        """Overrides of :meth:`run` for a small untimed warm-up (thread pools, allocator, lazy init)."""
        return {}

    def fidelity(self, baseline: Any, result: Any) -> dict[str, float]:
        """How close ``result`` is to the unaccelerated ``baseline`` of the same inputs and seed."""
        raise NotImplementedError

    def write_artefacts(self, result: Any, baseline: Any | None, out_dir: Path, options: dict[str, Any]) -> dict[str, str]:
        """Write the files a person looks at into ``out_dir``; returns ``{role: file name}``.

        ``options`` carries the job's ``export_formats`` and ``preview`` settings, the stack's name, and
        ``captions``: ``{"baseline": ..., "accelerated": ...}``, one line of time, speedup and fidelity
        for each run, to print under its picture."""
        return {}

    def result_figures(self, result: Any) -> dict[str, Any]:
        """Figures of one result for the table and the record beside the timings (queries, faces, ...; default none)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """A few facts for the record and the report table (resolution, backbone, ...)."""
        return {}


class StageMap(Pipeline):
    """The stages of an object that is not an accel3d pipeline (a diffusers pipeline, a bare U-Net), in the form a
    :class:`~accel3d.core.stack.Stack` attaches to: ``stage(name)`` refuses a stage the object lacks, naming those it has.

    Example::

        stack.attach(StageMap(pipe, {"denoiser": pipe.unet}))
    """

    def __init__(self, target: Any, stages: dict[str, Any]) -> None:
        self.name = type(target).__name__
        self.target = target
        self.stages = dict(stages)
        self._installed: list[Any] = []

    def install(self, names: list[str]) -> None:
        """Install the named stages that route a real object's calls through themselves (they have ``attach()``,
        ``detach()`` and ``attached``, as the integrations' adapters do); if one fails, those installed are taken off."""
        try:
            for name in dict.fromkeys(names):
                stage = self.stage(name)
                if callable(getattr(stage, "attach", None)) and getattr(stage, "attached", True) is False:
                    stage.attach()
                    self._installed.append(stage)
        except BaseException:
            self.uninstall()
            raise

    def uninstall(self) -> None:
        """Take off the stages :meth:`install` put on, last first: the object's own attributes are as before."""
        while self._installed:
            self._installed.pop().detach()


def picture_panels(result: Any, baseline: Any | None, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The panels of a job's picture: ``{title: run}`` and ``{title: caption}``, the unaccelerated run first
    ("unaccelerated", then "stack: NAME"), with the captions the job passed in ``options["captions"]``.

    Example::

        runs, captions = picture_panels(result.mesh, baseline.mesh, options)
        render_preview(runs, out_dir / "preview.png", captions=captions)
    """
    given = options.get("captions", {})
    runs, captions = {}, {}
    if baseline is not None:
        runs["unaccelerated"], captions["unaccelerated"] = baseline, given.get("baseline", "")
    title = f"stack: {options.get('stack', 'accelerated')}"
    runs[title], captions[title] = result, given.get("accelerated", "")
    return runs, captions
