"""Named stacks on Hunyuan3D-2's own classes (hy3dgen 2.0.2) in one call: its ``ShapeVAE`` holding the shipped vecset
weights, and its ``Hunyuan3DDiTFlowMatchingPipeline`` around that VAE and a small random DiT.

The pipeline's image conditioner and preprocessor need torchvision and cv2, so the tests give it two stand-ins
(an image-to-tokens projection and a tensor reader); the DiT, scheduler, sampling loop, VAE, volume decoding
and marching cubes are hy3dgen's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import accel3d
from accel3d.core.validate import ArgumentError
from accel3d.integrations import stages_of
from accel3d.integrations.hunyuan3d import to_shape_vae
from accel3d.models import load_vae
from tests.integrations.hy3dgen_import import INSTALL_HINT, import_hy3dgen_pipeline, tiny_pipeline

hy = import_hy3dgen_pipeline()
pytestmark = [
    pytest.mark.skipif(hy is None, reason=f"hy3dgen 2.0.2 is not installed; {INSTALL_HINT}"),
    pytest.mark.usefixtures("one_thread"),
]
STEPS = 12


@pytest.fixture(scope="module")
def shape_vae() -> Any:
    return to_shape_vae(load_vae(None), hy.ShapeVAE)


@pytest.fixture(scope="module")
def latents(shape_vae: Any) -> torch.Tensor:
    """The bundled bunny's latents (accel3d's encoder), through the ShapeVAE's transformer, as hy3dgen's export does."""
    from accel3d.models.vecset.pipeline import VecsetShapePipeline

    inputs = VecsetShapePipeline(resolution=32).load_inputs()
    with torch.no_grad():
        return shape_vae(load_vae(None).encode(inputs.points[None], inputs.normals[None]))


@pytest.fixture(scope="module")
def pipe(shape_vae: Any) -> Any:
    return tiny_pipeline(hy, shape_vae)


def mesh_of(shape_vae: Any, latents: torch.Tensor, resolution: int) -> Any:
    with torch.no_grad():
        options = {"octree_resolution": resolution, "num_chunks": 8000, "enable_pbar": False, "mc_level": 0.0, "bounds": 1.01}
        return shape_vae.latents2mesh(latents, **options)[0]


def generate(pipe: Any, resolution: int = 96) -> Any:
    image = torch.linspace(0, 1, 3 * 64).reshape(3, 8, 8)
    return pipe(
        image=image, num_inference_steps=STEPS, octree_resolution=resolution, num_chunks=8000,
        enable_pbar=False, generator=torch.Generator().manual_seed(0), output_type="mesh",
    )[0]  # fmt: skip


def same_mesh(a: Any, b: Any) -> bool:
    return np.array_equal(a.mesh_v, b.mesh_v) and np.array_equal(a.mesh_f, b.mesh_f)


def snapshot(*objects: Any) -> list[dict[str, Any]]:
    return [dict(vars(obj)) for obj in objects]


def parts(pipe: Any) -> tuple[Any, ...]:
    vae = pipe.vae
    return pipe, pipe.model, vae, vae.geo_decoder, vae.geo_decoder.cross_attn_decoder.attn.attention


def assert_restored(before: list[dict[str, Any]], objects: tuple[Any, ...]) -> None:
    for old, obj in zip(before, objects):
        now = vars(obj)
        assert set(now) == set(old), (type(obj).__name__, sorted(set(now) ^ set(old)))
        changed = [k for k, v in old.items() if now[k] is not v and k != "count"]  # count: hy3dgen's geo decoder counts its queries
        assert not changed, (type(obj).__name__, changed)


def test_stages_are_named_for_the_vae_and_the_pipeline(shape_vae: Any, pipe: Any) -> None:
    assert sorted(stages_of(shape_vae)) == ["geo_decoder", "volume_decoder"]
    assert sorted(stages_of(pipe)) == ["geo_decoder", "ss_sampler", "volume_decoder"]


def test_hierarchical_through_hy3dgens_own_call_gives_the_dense_mesh(shape_vae: Any, latents: torch.Tensor) -> None:
    dense = mesh_of(shape_vae, latents, 96)
    before = snapshot(shape_vae, shape_vae.geo_decoder)
    stack = accel3d.apply(shape_vae, "hierarchical")
    assert shape_vae.volume_decoder is not before[0]["volume_decoder"]
    refined = mesh_of(shape_vae, latents, 96)
    fraction = stack.summary()["hierarchical"]["query_fraction"]
    assert accel3d.remove(shape_vae) == 1
    assert same_mesh(refined, dense) and fraction < 0.5, fraction
    assert_restored(before, (shape_vae, shape_vae.geo_decoder))
    assert same_mesh(mesh_of(shape_vae, latents, 96), dense)


def test_the_volume_decoder_stage_alone_is_hy3dgens_dense_grid_bit_for_bit(shape_vae: Any, latents: torch.Tensor) -> None:
    with torch.no_grad():
        hy3dgen_grid = shape_vae.volume_decoder(latents, shape_vae.geo_decoder, octree_resolution=48, num_chunks=5000, enable_pbar=False)
    stage = stages_of(shape_vae)["volume_decoder"].attach()
    try:
        ours = shape_vae.volume_decoder(latents, shape_vae.geo_decoder, octree_resolution=48, num_chunks=5000, enable_pbar=False)
    finally:
        stage.detach()
    assert ours.dtype == hy3dgen_grid.dtype and torch.equal(ours, hy3dgen_grid)


def test_adaptive_kv_selects_keys_through_hy3dgens_attention_processor(shape_vae: Any, latents: torch.Tensor) -> None:
    dense = mesh_of(shape_vae, latents, 48)
    stack = accel3d.apply(shape_vae, "flashvdm_mean", adaptive_kv={"topk_ratio": 0.25})
    try:
        selected = mesh_of(shape_vae, latents, 48)
    finally:
        accel3d.remove(shape_vae)
    stats = stack.stats()["adaptive_kv"]
    assert stats["key_fraction"] == pytest.approx(0.25) and not stats.get("dense_fallbacks")
    assert not same_mesh(selected, dense)  # a quarter of the keys moves this VAE's surface: the selection is on the path


def test_one_call_on_the_pipeline_caches_dit_steps_and_remove_restores_it(pipe: Any) -> None:
    objects = parts(pipe)
    before = snapshot(*objects)
    calls: list[int] = []
    hook = pipe.model.latent_in.register_forward_pre_hook(lambda *_: calls.append(1))  # the DiT computes (a cached step does not)
    try:
        untouched = generate(pipe)
        calls.clear()
        stack = accel3d.apply(pipe, "hunyuan3d_fast")
        fast = generate(pipe)
        computed = len(calls)
        assert accel3d.remove(pipe) == 3
        calls.clear()
        again = generate(pipe)
    finally:
        hook.remove()
    stats = stack.stats()
    assert computed == stats["modality_cache"]["full_steps"] < STEPS and len(calls) == STEPS
    assert stats["hierarchical"]["calls"] == 1 and stats["adaptive_kv"]["calls"] > 0
    assert fast.mesh_f.shape[0] > 0 and not same_mesh(fast, untouched)  # cached steps move the random DiT's latents
    assert same_mesh(again, untouched)
    assert_restored(before, objects)


def test_do_nothing_settings_are_bit_exact_on_the_pipeline(pipe: Any) -> None:
    untouched = generate(pipe)
    accel3d.apply(
        pipe, "hunyuan3d_fast",
        modality_cache={"stride": 1}, hierarchical={"min_resolution": 96}, adaptive_kv={"mode": "mean", "topk_ratio": 1.0},
    )  # fmt: skip
    try:
        idle = generate(pipe)
    finally:
        accel3d.remove(pipe)
    assert same_mesh(idle, untouched)


def test_a_stack_for_stages_the_object_lacks_is_refused_before_patching(shape_vae: Any, pipe: Any) -> None:
    objects = parts(pipe)
    before = snapshot(*objects)
    with pytest.raises(ArgumentError, match=r"'fastsam3d' targets stage\(s\) \['slat_sampler', 'sparse_structure'\].*geo_decoder"):
        accel3d.apply(pipe, "fastsam3d")
    with pytest.raises(ArgumentError, match=r"\['ss_sampler'\].*its stages: \['geo_decoder', 'volume_decoder'\]"):
        accel3d.apply(shape_vae, "hunyuan3d_fast")
    assert_restored(before, objects)


def test_the_volume_decoder_stage_refuses_what_it_cannot_decode(shape_vae: Any, latents: torch.Tensor) -> None:
    stage = stages_of(shape_vae)["volume_decoder"].attach()
    try:
        with pytest.raises(ArgumentError, match="octree_resolution: expected a positive int"):
            shape_vae.volume_decoder(latents, shape_vae.geo_decoder, octree_resolution=None)
        with pytest.raises(ArgumentError, match=r"bounds: accel3d decodes a cube centred at 0"):
            shape_vae.volume_decoder(latents, shape_vae.geo_decoder, bounds=[-1, -1, -1, 1, 1, 2], octree_resolution=8)
    finally:
        stage.detach()
    assert type(shape_vae.volume_decoder).__name__ == "VanillaVolumeDecoder"


def test_pipeline_hunyuan3d_runs_the_comparison_job_on_hy3dgens_own_vae(tmp_path) -> None:
    """``accel3d run pipeline=hunyuan3d``: the shipped vecset weights in hy3dgen's ShapeVAE, the bundled bunny, and
    hierarchical decoding through hy3dgen's own latents2mesh, exactly the dense mesh."""
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    args = ["pipeline=hunyuan3d", "pipeline.resolution=96", "pipeline.progress=false", "stack=hierarchical", "repeats=1", "preview=false"]
    proc = subprocess.run(
        [sys.executable, "-m", "accel3d.cli", "run", *args, f"hydra.run.dir={out}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "record.json").read_text())
    run = record["runs"]["hierarchical"]
    assert record["status"] == "completed" and record["pipeline_info"]["decoder"] == "hy3dgen ShapeVAE.latents2mesh"
    assert run["fidelity"]["iou"] == 1.0 and run["figures"]["faces"] == record["runs"]["baseline"]["figures"]["faces"] > 1000
    assert run["summary"]["hierarchical"]["query_fraction"] < 0.6


def small_shape_vae() -> Any:
    torch.manual_seed(1)
    return hy.ShapeVAE(num_latents=32, embed_dim=8, width=64, heads=4, num_decoder_layers=1).eval()


def test_a_second_stack_on_the_same_object_is_refused_and_remove_only_takes_off_what_is_still_there() -> None:
    import gc
    import weakref

    first, second = small_shape_vae(), small_shape_vae()
    stack = accel3d.apply(first, "hierarchical")
    with pytest.raises(ArgumentError, match=r"already has stack\(s\) \['hierarchical'\] applied; accel3d.remove"):
        accel3d.apply(first, "flashvdm")
    stack.detach()  # taken off by hand, then onto another object
    assert type(first.volume_decoder).__name__ == "VanillaVolumeDecoder"
    accel3d.apply(second, stack)
    assert accel3d.remove(first) == 0 and stack.attached  # the stack is on `second` now: removing `first` leaves it
    assert accel3d.remove(second) == 1 and not stack.attached

    third = small_shape_vae()
    dropped = accel3d.apply(third, "hierarchical")
    dropped.detach()
    gone = weakref.ref(third)
    del third, dropped
    gc.collect()
    assert gone() is None  # neither accel3d's registry nor the detached accelerator keeps the object alive


def test_removing_a_part_takes_the_whole_stack_off_its_holder(pipe: Any) -> None:
    objects = parts(pipe)
    before = snapshot(*objects)
    stack = accel3d.apply(pipe, "hunyuan3d_fast")
    assert accel3d.remove(pipe.vae) == 3 and not stack.attached  # the DiT's step cache too: the stack spans the pipeline
    assert_restored(before, objects)
    assert accel3d.remove(pipe) == 0
