"""Named stacks on TRELLIS v1's own ``TrellisImageTo3DPipeline`` and on SAM 3D Objects' generators, in one call.

TRELLIS and SAM 3D Objects: the real pipeline classes (built as their loaders build them, with small random models:
TRELLIS's ``from_pretrained`` sets the attributes of an empty pipeline, SAM 3D Objects' constructor loads checkpoints,
so the same attributes are set here), their own ``sample_sparse_structure`` and ``sample_slat``. The image
encoders are stand-ins (one token per pixel); SAM 3D Objects' pipeline module imports rendering and
post-processing packages that the test loader stands in for (``tests/integrations/real_models.py``).

Token carving reaches both real SLaT samplers as tensor-plus-coordinates and cuts the tokens the backbone sees by
the expected amount; attaching and removing leaves the objects exactly as they were, and the do-nothing settings
are bit-exact.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch

import accel3d
from accel3d.core.validate import ArgumentError
from accel3d.integrations import stages_of
from tests.integrations import tiny_pipelines
from tests.integrations.test_real_model_adapters import (
    POSE_KEYS,
    voxel_coords,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:'locale.getdefaultlocale' is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]
CARVING = {"ratio": 0.5, "warmup": 2, "skip_threshold": 0.0, "max_stale": 100}  # carve every computed step after the warm-up


def token_sizes(model: torch.nn.Module) -> tuple[list[int], Any]:
    """The number of tokens of each forward of a SLaT backbone (its state is its first argument)."""
    sizes: list[int] = []

    def record(_: Any, args: tuple) -> None:
        x = args[0]
        sizes.append(int(x.feats.shape[0] if hasattr(x, "feats") else x.shape[1]))

    return sizes, model.register_forward_pre_hook(record)


def carving_run(pipe: Any, model: torch.nn.Module, run: Any) -> tuple[Any, dict[str, Any], list[int]]:
    """``run(pipe)`` under ``token_carving`` with CARVING, applied and removed in one call each: its result, the
    carving's statistics and the token count of each forward of the SLaT backbone ``model``."""
    stack = accel3d.apply(pipe, "token_carving", **CARVING)
    sizes, hook = token_sizes(model)
    try:
        result = run(pipe)
    finally:
        hook.remove()
        accel3d.remove(pipe)
    return result, stack.stats()["token_carving"], sizes


def only_halves_after_the_warmup(sizes: list[int], n: int) -> bool:
    """The backbone saw every token in the warm-up's forwards, then half of them in each of the 6 carved steps'
    (one forward each, two where CFG guides)."""
    first = sizes.index(n // 2) if n // 2 in sizes else len(sizes)
    return set(sizes[:first]) == {n} and set(sizes[first:]) == {n // 2} and len(sizes) - first >= 6


def same_dict(obj: Any, before: dict[str, Any]) -> bool:
    now = vars(obj)
    return set(now) == set(before) and all(now[k] is v for k, v in before.items())


# ---------------------------------------------------------------- TRELLIS


@pytest.fixture(scope="module")
def trellis_pipe(trellis: types.SimpleNamespace) -> Any:
    return tiny_pipelines.trellis_pipeline(trellis)


def trellis_cond() -> dict[str, torch.Tensor]:
    cond = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(3))
    return {"cond": cond, "neg_cond": torch.zeros_like(cond)}


def trellis_slat(pipe: Any) -> Any:
    torch.manual_seed(0)
    with torch.no_grad():
        return pipe.sample_slat(trellis_cond(), voxel_coords([64], resolution=16, seed=2))


def trellis_structure(pipe: Any) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.no_grad():
        return pipe.sample_sparse_structure(trellis_cond())


def test_trellis_pipeline_stages_are_its_samplers_and_where_it_makes_its_voxels(trellis_pipe: Any) -> None:
    stages = stages_of(trellis_pipe)
    assert sorted(stages) == ["slat_sampler", "sparse_structure", "ss_sampler"]
    assert stages["slat_sampler"].sampler is trellis_pipe.slat_sampler and stages["slat_sampler"].token_groups == {"slat": ()}


def test_token_carving_cuts_trellis_sparse_tensor_tokens_in_one_call(trellis_pipe: Any) -> None:
    untouched = trellis_slat(trellis_pipe)
    sampler_before = dict(vars(trellis_pipe.slat_sampler))
    pipe_before = dict(vars(trellis_pipe))
    model = trellis_pipe.models["slat_flow_model"]
    carved, stats, sizes = carving_run(trellis_pipe, model, trellis_slat)
    assert stats["carved_steps"] == 6 and stats["tokens_carved"] == 6 * 32  # steps 2..7, half of 64 tokens each
    assert only_halves_after_the_warmup(sizes, 64)
    assert not torch.equal(carved.feats, untouched.feats)
    assert same_dict(trellis_pipe.slat_sampler, sampler_before) and same_dict(trellis_pipe, pipe_before)
    assert torch.equal(trellis_slat(trellis_pipe).feats, untouched.feats)


def test_do_nothing_settings_are_bit_exact_on_the_trellis_pipeline(trellis_pipe: Any) -> None:
    slat, structure = trellis_slat(trellis_pipe), trellis_structure(trellis_pipe)
    accel3d.apply(trellis_pipe, "token_carving", ratio=0.0, skip_threshold=0.0)
    try:
        assert torch.equal(trellis_slat(trellis_pipe).feats, slat.feats)
    finally:
        accel3d.remove(trellis_pipe)
    accel3d.apply(trellis_pipe, "modality_cache", stride=1)
    try:
        assert torch.equal(trellis_structure(trellis_pipe), structure)
    finally:
        accel3d.remove(trellis_pipe)


def test_the_step_cache_saves_trellis_sparse_structure_steps_in_one_call(trellis_pipe: Any) -> None:
    stack = accel3d.apply(trellis_pipe, "modality_cache")
    try:
        trellis_structure(trellis_pipe)
    finally:
        accel3d.remove(trellis_pipe)
    stats = stack.stats()["modality_cache"]
    assert stats["full_steps"] + stats["cached_steps"] == 8 and stats["cached_steps"] > 0


def test_spectral_aggregation_merges_the_voxels_trellis_makes(trellis_pipe: Any) -> None:
    made = trellis_structure(trellis_pipe)
    decoder = trellis_pipe.models["sparse_structure_decoder"]
    before = [dict(vars(trellis_pipe)), dict(vars(decoder))]
    stack = accel3d.apply(trellis_pipe, "uniform_merge", factor=2.0, min_tokens=0, scale_factors=False)
    try:
        merged = trellis_structure(trellis_pipe)
        stage_factor = stack.accelerators[0].statistics.counters["factor"]
    finally:
        accel3d.remove(trellis_pipe)
    stats = stack.stats()["uniform_merge"]
    assert stats["tokens_before"] == len(made) and stats["tokens_after"] == len(merged) < len(made)
    assert stage_factor == 2.0 and merged.dtype == made.dtype and not merged[:, 0].any()
    # the merged voxels are the made ones shrunk by 2 about the grid's centre (side 16)
    shrunk = torch.unique(torch.floor((made[:, 1:].double() + 0.5 - 8) / 2 + 8).long(), dim=0)
    assert torch.equal(merged[:, 1:].long(), shrunk)
    assert same_dict(trellis_pipe, before[0]) and same_dict(decoder, before[1])
    assert torch.equal(trellis_structure(trellis_pipe), made)

    accel3d.apply(trellis_pipe, "uniform_merge", factor=1.0)  # do nothing: the pipeline's own voxels
    try:
        assert torch.equal(trellis_structure(trellis_pipe), made)
    finally:
        accel3d.remove(trellis_pipe)


def test_fastsam3d_runs_on_the_trellis_pipeline_in_one_call(trellis_pipe: Any) -> None:
    stack = accel3d.apply(trellis_pipe, "fastsam3d", spectral_aggregation={"factor": 2.0, "min_tokens": 0, "scale_factors": False})
    try:
        coords = trellis_structure(trellis_pipe)
        torch.manual_seed(0)
        with torch.no_grad():
            slat = trellis_pipe.sample_slat(trellis_cond(), coords)
    finally:
        accel3d.remove(trellis_pipe)
    stats = stack.stats()
    assert stats["modality_cache"]["cached_steps"] > 0
    assert stats["spectral_aggregation"]["tokens_after"] == len(coords) == slat.feats.shape[0]
    assert stats["token_carving"]["steps"] == 8 and stats["token_carving"]["tokens_computed"] < 8 * len(coords)


def test_a_stack_for_stages_trellis_lacks_is_refused_before_patching(trellis_pipe: Any) -> None:
    before = {name: dict(vars(getattr(trellis_pipe, name))) for name in ("sparse_structure_sampler", "slat_sampler")}
    with pytest.raises(ArgumentError, match=r"\['geo_decoder', 'volume_decoder'\].*its stages: \['slat_sampler', 'sparse_structure'"):
        accel3d.apply(trellis_pipe, "flashvdm")
    assert all(same_dict(getattr(trellis_pipe, name), snapshot) for name, snapshot in before.items())


# ---------------------------------------------------------------- SAM 3D Objects


@pytest.fixture(scope="module")
def sam3d_pipe(sam3d: types.SimpleNamespace) -> Any:
    return tiny_pipelines.sam3d_pipeline(sam3d)


SAM3D_IMAGE = {"image": torch.linspace(0, 1, 48).reshape(1, 3, 4, 4)}


def sam3d_structure(pipe: Any) -> dict[str, Any]:
    torch.manual_seed(0)  # SAM 3D Objects draws its noise from the global RNG
    with torch.no_grad():
        return pipe.sample_sparse_structure(dict(SAM3D_IMAGE))


def sam3d_slat(pipe: Any, coords: torch.Tensor | None = None) -> Any:
    coords = voxel_coords([64], resolution=16, seed=7) if coords is None else coords
    torch.manual_seed(42)
    with torch.no_grad():  # its sample_slat passes the voxels last, as numpy
        return pipe.sample_slat(dict(SAM3D_IMAGE), coords, inference_steps=8)


def test_sam3d_pipeline_stages_are_its_generators_and_where_it_makes_its_voxels(sam3d_pipe: Any) -> None:
    stages = stages_of(sam3d_pipe)
    assert sorted(stages) == ["slat_sampler", "sparse_structure", "ss_sampler"]
    assert stages["ss_sampler"].token_groups == {"shape": ("shape",), "layout": tuple(POSE_KEYS)}


def test_token_carving_cuts_sam3d_tokens_passed_with_their_voxels_in_one_call(sam3d_pipe: Any) -> None:
    generator = sam3d_pipe.models["slat_generator"]
    untouched = sam3d_slat(sam3d_pipe)
    before = dict(vars(generator))
    carved, stats, sizes = carving_run(sam3d_pipe, generator.reverse_fn.backbone, sam3d_slat)
    assert stats["carved_steps"] == 6 and stats["tokens_carved"] == 6 * 32
    assert only_halves_after_the_warmup(sizes, 64)
    assert not torch.equal(carved.feats, untouched.feats)
    assert same_dict(generator, before)
    assert torch.equal(sam3d_slat(sam3d_pipe).feats, untouched.feats)

    accel3d.apply(sam3d_pipe, "token_carving", ratio=0.0, skip_threshold=0.0)  # do nothing: bit-exact
    try:
        assert torch.equal(sam3d_slat(sam3d_pipe).feats, untouched.feats)
    finally:
        accel3d.remove(sam3d_pipe)


def test_spectral_aggregation_merges_sam3d_voxels_and_scales_its_layout(sam3d_pipe: Any) -> None:
    made = sam3d_structure(sam3d_pipe)
    assert made["downsample_factor"] == 1 and 200 < len(made["coords"]) < 42000  # under SAM3D's own cap
    before = [dict(vars(sam3d_pipe)), dict(vars(sam3d_pipe.models["ss_decoder"]))]
    stack = accel3d.apply(sam3d_pipe, "uniform_merge", factor=2.0, min_tokens=0, scale_factors=False)
    try:
        merged = sam3d_structure(sam3d_pipe)
    finally:
        accel3d.remove(sam3d_pipe)
    stats = stack.stats()["uniform_merge"]
    assert merged["downsample_factor"] == 2.0  # SAM3D's run() multiplies the layout scale by it
    assert stats["tokens_before"] == len(made["coords"]) and stats["tokens_after"] == len(merged["coords"]) < len(made["coords"])
    shrunk = torch.unique(torch.floor((made["coords"][:, 1:].double() + 0.5 - 32) / 2 + 32).long(), dim=0)
    assert torch.equal(merged["coords"][:, 1:].long(), shrunk) and merged["coords"].dtype == made["coords"].dtype
    assert torch.equal(merged["shape"], made["shape"])  # the flow itself is untouched
    assert same_dict(sam3d_pipe, before[0]) and same_dict(sam3d_pipe.models["ss_decoder"], before[1])
    assert torch.equal(sam3d_structure(sam3d_pipe)["coords"], made["coords"])


def test_fastsam3d_runs_on_the_sam3d_pipeline_in_one_call(sam3d_pipe: Any) -> None:
    ss_calls, hook = token_sizes(sam3d_pipe.models["ss_generator"].reverse_fn.backbone)
    hook.remove()
    stack = accel3d.apply(sam3d_pipe, "fastsam3d", spectral_aggregation={"factor": 2.0, "min_tokens": 0, "scale_factors": False})
    try:
        structure = sam3d_structure(sam3d_pipe)
        slat = sam3d_slat(sam3d_pipe, structure["coords"])
    finally:
        accel3d.remove(sam3d_pipe)
    stats = stack.stats()
    assert stats["modality_cache"]["cached_steps"] > 0 and stats["modality_cache"]["full_steps"] < 6
    assert stats["spectral_aggregation"]["tokens_after"] == len(structure["coords"]) == slat.feats.shape[0]
    assert structure["downsample_factor"] == 2.0
    assert stats["token_carving"]["tokens_computed"] < 8 * len(structure["coords"])


def test_a_detached_stack_does_not_keep_the_pipeline_alive(trellis: types.SimpleNamespace) -> None:
    import gc
    import weakref

    pipe = tiny_pipelines.trellis_pipeline(trellis)
    stack = accel3d.apply(pipe, "fastsam3d")
    stack.detach()
    gone = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert gone() is None and not stack.attached  # the stack lives on; its accelerators hold no reference to their stages
