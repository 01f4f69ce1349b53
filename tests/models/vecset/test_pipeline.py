import warnings

import pytest
import torch
from hydra import compose, initialize_config_dir

from accel3d.core import Stack
from accel3d.decoding import HierarchicalDecoding, resolve_topk
from accel3d.jobs.configs import config_dir
from accel3d.jobs.run import run_job
from accel3d.models.vecset.pipeline import VecsetShapePipeline


def test_pipeline_detach_restores_outputs_bit_for_bit():
    pipe = VecsetShapePipeline(resolution=64, progress=False)
    inputs = pipe.load_inputs()
    before = pipe.run(inputs)
    stack = Stack([HierarchicalDecoding(min_resolution=32, band=0.3, band_units="field")], name="hierarchical")
    with stack.applied(pipe):
        fast = pipe.run(inputs)
    after = pipe.run(inputs)
    assert fast.grid.queries < before.grid.queries
    assert torch.equal(after.grid.values, before.grid.values)
    assert (after.mesh.faces == before.mesh.faces).all() and (after.mesh.vertices == before.mesh.vertices).all()
    assert "decode" not in vars(pipe.volume_decoder)


def test_pipeline_stages_are_named():
    pipe = VecsetShapePipeline(resolution=64, progress=False)
    assert set(pipe.stages) == {"encoder", "volume_decoder", "geo_decoder"}


def test_shipped_stacks_keep_the_shipped_models_surface():
    """The named decoding stacks against dense decoding on the shipped model and bunny, at 128^3."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from accel3d.cli import config_dir
    from accel3d.geometry.metrics import volume_iou

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfgs = {
            name: compose("run", overrides=[f"stack={name}", "pipeline.resolution=128", "pipeline.progress=false"])
            for name in ("hierarchical", "hierarchical_fast", "flashvdm", "flashvdm_merge", "flashvdm_mean")
        }
        slope = ["stack=hierarchical", "stack.accelerators.hierarchical.slope=global", "pipeline.resolution=128", "pipeline.progress=false"]
        cfgs["hierarchical_global"] = compose("run", overrides=slope)
    pipe = instantiate(cfgs["hierarchical"].pipeline)
    inputs = pipe.load_inputs()
    dense = pipe.run(inputs)
    ious, stats, stacks, caught = {}, {}, {}, {}
    for name, cfg in cfgs.items():
        stack = stacks[name] = instantiate(cfg.stack, _convert_="object")
        with stack.applied(pipe), warnings.catch_warnings(record=True) as caught[name]:
            warnings.simplefilter("always")
            fast = pipe.run(inputs)
        ious[name], stats[name] = volume_iou(pipe.inside_mask(dense.grid), pipe.inside_mask(fast.grid)), stack.stats()
        if name == "hierarchical":
            levels = dict(zip(stack.names, stack.accelerators))["hierarchical"].last_levels
    assert ious["hierarchical"] > 0.999 and ious["hierarchical_fast"] > 0.999
    # The shipped field saturates at +-1, and its steepest slope (about 35 per unit, 43 with the margin) leaves its
    # saturated samples 0.023 of certain distance, less than half a 64^3 cell's diagonal (0.027), so the rule flags
    # them. Read through the global slope, the band then also covers the whole soft ramp (median slope 7) and the
    # level is refined everywhere (above 0.9 of the queries); read through the slope near each sample (the
    # default), the band stays narrow where the field is soft (measured 0.41).
    assert levels[1]["flagged"]["rule"] == "saturated" and stats["hierarchical"]["hierarchical"]["query_fraction"] < 0.5
    assert ious["hierarchical_global"] > 0.999 and stats["hierarchical_global"]["hierarchical"]["query_fraction"] > 0.9
    assert stats["hierarchical_fast"]["hierarchical"]["query_fraction"] < 0.5
    # The shipped model's attention is diffuse (docs/decoding.md). The flashvdm stack's error-bounded mass mode
    # keeps the surface; merge mode keeps nearly every key, so the surface stays; mean mode keeps FlashVDM's
    # fixed third of the keys, moves the surface, and its check says so at run time.
    assert ious["flashvdm"] > 0.999 and ious["flashvdm_merge"] > 0.999
    assert not [w for w in caught["flashvdm"] if "adaptive_kv" in str(w.message)]
    assert any("move the attention output" in str(w.message) for w in caught["flashvdm_mean"])
    num_keys = pipe.vae.config.num_latents
    selector = dict(zip(stacks["flashvdm_mean"].names, stacks["flashvdm_mean"].accelerators))["adaptive_kv"].selector
    k = resolve_topk(selector.topk, num_keys, selector.topk_ratio)  # the config's null: Hunyuan3D-2's rule, a third here
    assert stats["flashvdm_mean"]["adaptive_kv"]["keys_per_query"] == k
    assert stats["flashvdm_mean"]["adaptive_kv"]["key_fraction"] == pytest.approx(k / num_keys)
    assert ious["flashvdm_mean"] < 0.99


TINY_JOB = [
    "pipeline.resolution=32",
    "pipeline.num_points=256",
    "pipeline.progress=false",
    "stack.accelerators.hierarchical.min_resolution=8",
]


def test_preview_captions_are_the_recorded_time_speedup_and_fidelity(tmp_path, tiny_weights, monkeypatch):
    import accel3d.models.vecset.pipeline as vecset_shape

    seen = {}
    real = vecset_shape.render_preview

    def spy(meshes, path, captions=None, **kw):
        seen.update(captions or {})
        return real(meshes, path, captions=captions, **kw)

    monkeypatch.setattr(vecset_shape, "render_preview", spy)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("run", overrides=[f"pipeline.weights={tiny_weights}", *TINY_JOB, "repeats=1", "export_formats=[]"])
    record = run_job(cfg, tmp_path)
    base, hier = record["runs"]["baseline"], record["runs"]["hierarchical"]
    assert seen["unaccelerated"] == f"decode {base['timings']['decode_s']['median']:.2f} s"
    parts = seen["stack: hierarchical"].split(" · ")
    assert parts[0] == f"decode {hier['timings']['decode_s']['median']:.2f} s ({hier['speedups']['decode_s']:.2f}x)"
    assert parts[1:4] == [
        f"iou {hier['fidelity']['iou']:.4g}",
        f"chamfer {hier['fidelity']['chamfer']:.4g}",
        f"fscore {hier['fidelity']['fscore']:.4g}",
    ]
    assert parts[4].startswith("hierarchical query_fraction ")
    assert (tmp_path / "preview.png").stat().st_size > 0


def test_a_named_stack_refines_around_the_pipelines_own_level_and_sign():
    """The surface level and the inside side are the volume decoder stage's, never copied from a config: a stack
    applied to a pipeline with ``level=0.6`` refines around 0.6, where its mesh is extracted (it once refined around 0)."""
    import accel3d

    pipe = VecsetShapePipeline(level=0.6, resolution=96, progress=False)
    inputs = pipe.load_inputs()
    dense = pipe.run(inputs)
    stack = accel3d.apply(pipe, "hierarchical_fast")  # a narrow band in field units: refining around 0 misses 0.6
    try:
        fast = pipe.run(inputs)
    finally:
        accel3d.remove(pipe)
    decoder = stack.accelerators[0].decoder
    assert (decoder.level, decoder.inside) == (pipe.level, pipe.inside) == (0.6, "positive")
    assert fast.grid.query_fraction < 0.5  # it did skip most of the grid
    assert pipe.fidelity(dense, fast)["iou"] == 1.0 and len(fast.mesh.faces) == len(dense.mesh.faces)
