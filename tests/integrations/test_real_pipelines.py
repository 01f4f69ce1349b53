"""Named stacks on TRELLIS v1's own ``TrellisImageTo3DPipeline`` and on SAM 3D Objects' generators, in one call.

TRELLIS: the real pipeline class (built as its ``from_pretrained`` builds it, with small random models), its
``sample_sparse_structure`` and ``sample_slat``. SAM 3D Objects: its pipeline module imports torchvision, utils3d
and more, so the pipeline is a holder of the real ``ShortCut`` / ``FlowMatching`` generators under the pipeline's
class name; the generators, backbones and the call with the voxels last (as its ``sample_slat`` makes it) are its own.

Token carving reaches both real SLaT samplers as tensor-plus-coordinates and cuts the tokens the backbone sees by
the expected amount; attaching and removing leaves the objects exactly as they were, and the do-nothing settings
are bit-exact.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import accel3d
from accel3d.core.validate import ArgumentError
from accel3d.integrations import stages_of
from tests.integrations import real_models
from tests.integrations.real_models import SAM3D_INSTALL, TRELLIS_INSTALL, keep_sparse_convs_training
from tests.integrations.test_real_model_adapters import (
    randomized,
    sam3d_slat_backbone,
    sam3d_ss_backbone,
    trellis_slat_model,
    trellis_ss_model,
    voxel_coords,
)

pytestmark = pytest.mark.filterwarnings("ignore:'locale.getdefaultlocale' is deprecated:DeprecationWarning")
CARVING = {"ratio": 0.5, "warmup": 2, "skip_threshold": 0.0, "max_stale": 100}  # carve every computed step after the warm-up


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trellis() -> Iterator[types.SimpleNamespace]:
    with real_models.trellis_modules() as loaded:
        if loaded is None:
            pytest.skip(TRELLIS_INSTALL)
        yield loaded


@pytest.fixture(scope="module")
def sam3d() -> Iterator[types.SimpleNamespace]:
    with real_models.sam3d_modules() as loaded:
        if loaded is None:
            pytest.skip(SAM3D_INSTALL)
        yield loaded


def token_sizes(model: torch.nn.Module) -> tuple[list[int], Any]:
    """The number of tokens of each forward of a SLaT backbone (its state is its first argument)."""
    sizes: list[int] = []

    def record(_: Any, args: tuple) -> None:
        x = args[0]
        sizes.append(int(x.feats.shape[0] if hasattr(x, "feats") else x.shape[1]))

    return sizes, model.register_forward_pre_hook(record)


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
    decoder = trellis.SparseStructureDecoder(out_channels=1, latent_channels=4, num_res_blocks=1, channels=[16, 8], num_res_blocks_middle=1)
    pipe = trellis.TrellisImageTo3DPipeline()  # as from_pretrained builds it: empty, then its attributes
    pipe.models = {
        "sparse_structure_flow_model": trellis_ss_model(trellis),
        "sparse_structure_decoder": randomized(decoder, seed=1).eval(),
        "slat_flow_model": trellis_slat_model(trellis),
    }
    pipe.sparse_structure_sampler = trellis.FlowEulerGuidanceIntervalSampler(sigma_min=1e-5)
    pipe.slat_sampler = trellis.FlowEulerGuidanceIntervalSampler(sigma_min=1e-5)
    pipe.sparse_structure_sampler_params = {"steps": 8, "cfg_strength": 7.5, "cfg_interval": (0.5, 1.0), "rescale_t": 3.0}
    pipe.slat_sampler_params = {"steps": 8, "cfg_strength": 3.0, "cfg_interval": (0.5, 1.0), "rescale_t": 3.0}
    pipe.slat_normalization = {"mean": [0.0] * 8, "std": [1.0] * 8}
    return pipe


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
    stack = accel3d.apply(trellis_pipe, "token_carving", **CARVING)
    sizes, hook = token_sizes(model)
    try:
        carved = trellis_slat(trellis_pipe)
    finally:
        hook.remove()
        accel3d.remove(trellis_pipe)
    stats = stack.stats()["token_carving"]
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


def sam3d_pipeline(sam3d: types.SimpleNamespace) -> Any:
    """A holder of the real generators under SAM 3D Objects' pipeline class name (see the module docstring)."""
    ss_backbone = sam3d_ss_backbone(sam3d)
    ss = sam3d.ShortCut(reverse_fn=sam3d.cfg.ClassifierFreeGuidance(backbone=ss_backbone), inference_steps=4).eval()
    guided = sam3d.cfg.ClassifierFreeGuidance(
        backbone=sam3d_slat_backbone(sam3d), strength=5.0, interval=[0, 1000], unconditional_handling="zeros"
    )
    slat = keep_sparse_convs_training(sam3d.FlowMatching(reverse_fn=guided, inference_steps=8, rescale_t=3.0).eval())
    holder = type("InferencePipeline", (), {"__module__": "sam3d_objects.pipeline.inference_pipeline"})()
    holder.models = torch.nn.ModuleDict({"ss_generator": ss, "slat_generator": slat})
    return holder


def sam3d_slat(pipe: Any) -> torch.Tensor:
    coords = voxel_coords([64], resolution=16, seed=7)
    cond = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(42)  # SAM3D draws its noise from the global RNG
    with torch.no_grad():  # as its sample_slat calls it: the voxels last, as numpy
        return pipe.models["slat_generator"]((1, coords.shape[0], 8), torch.device("cpu"), cond, coords.cpu().numpy())


def test_token_carving_cuts_sam3d_tokens_passed_with_their_voxels_in_one_call(sam3d: types.SimpleNamespace) -> None:
    pipe = sam3d_pipeline(sam3d)
    assert sorted(stages_of(pipe)) == ["slat_sampler", "ss_sampler"]
    generator = pipe.models["slat_generator"]
    untouched = sam3d_slat(pipe)
    before = dict(vars(generator))
    stack = accel3d.apply(pipe, "token_carving", **CARVING)
    sizes, hook = token_sizes(generator.reverse_fn.backbone)
    try:
        carved = sam3d_slat(pipe)
    finally:
        hook.remove()
        accel3d.remove(pipe)
    stats = stack.stats()["token_carving"]
    assert stats["carved_steps"] == 6 and stats["tokens_carved"] == 6 * 32
    assert only_halves_after_the_warmup(sizes, 64)
    assert not torch.equal(carved, untouched)
    assert same_dict(generator, before)
    assert torch.equal(sam3d_slat(pipe), untouched)

    accel3d.apply(pipe, "token_carving", ratio=0.0, skip_threshold=0.0)  # do nothing: bit-exact
    try:
        assert torch.equal(sam3d_slat(pipe), untouched)
    finally:
        accel3d.remove(pipe)


# ---------------------------------------------------------------- without the real packages


def test_the_sparse_structure_stage_scales_sam3d_layouts_by_the_merge_factor() -> None:
    """SAM 3D Objects' ``sample_sparse_structure`` returns a dict whose ``downsample_factor`` its ``run`` multiplies the
    layout scale by: the stage multiplies it by the merge factor. (Its pipeline module cannot be imported here, so a
    holder returns that dict from a fixed occupancy; the stage's handling of it is what is tested.)"""

    class Decoder(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z

    def sample_sparse_structure(self: Any, ss_input_dict: dict, inference_steps: Any = None) -> dict:
        occupancy = torch.zeros(1, 1, 16, 16, 16)
        occupancy[0, 0, 4:12, 4:12, 4:12] = 1.0  # a cube of 512 voxels
        ss = self.models["ss_decoder"](occupancy)
        coords = torch.argwhere(ss > 0)[:, [0, 2, 3, 4]].int()
        return {"coords": coords, "downsample_factor": 1.0, "shape": torch.zeros(1)}

    namespace = {"__module__": "sam3d_objects.pipeline.inference_pipeline", "sample_sparse_structure": sample_sparse_structure}
    holder_class = type("InferencePipeline", (), namespace)
    pipe = holder_class()
    pipe.models = {"ss_decoder": Decoder()}
    assert sorted(stages_of(pipe)) == ["sparse_structure"]
    made = pipe.sample_sparse_structure({"image": torch.zeros(1)})
    stack = accel3d.apply(pipe, "uniform_merge", factor=2.0, min_tokens=0, scale_factors=False)
    try:
        merged = pipe.sample_sparse_structure({"image": torch.zeros(1)})
    finally:
        accel3d.remove(pipe)
    assert merged["downsample_factor"] == 2.0 and len(merged["coords"]) == 64 and merged["shape"] is not made["shape"]
    assert stack.stats()["uniform_merge"]["tokens_before"] == 512
    assert vars(pipe) == {"models": pipe.models} and "forward" not in vars(pipe.models["ss_decoder"])
