"""Bad knobs, fields and misuse of the decoding package: each error names the argument, a NaN names
the level it appeared at, and a second adaptive_kv on one geo decoder is refused."""

import pytest
import torch

from accel3d.core import PatchConflictError
from accel3d.decoding import AdaptiveKVSelection, DenseVolumeDecoder, HierarchicalDecoding, HierarchicalVolumeDecoder, KVSelector
from accel3d.geometry import shapes
from accel3d.models.vecset.vae import VecsetVAE
from tests.fields import truncated

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("band", NAN),
        ("band", INF),
        ("band", -0.1),
        ("band", 0.0),
        ("band", "0.3"),
        ("band_units", "mm"),
        ("slope_margin", 0.5),
        ("slope_margin", NAN),
        ("verify", 1.5),  # a verification sample larger than the grid
        ("verify", 0.0),
        ("verify", NAN),
        ("verify_tolerance", 0.0),
        ("verify_tolerance", -0.01),
        ("verify_refine", "yes"),
        ("level", NAN),
        ("level", INF),
        ("level", "0"),
        ("min_resolution", 48.0),
        ("min_resolution", 1),
        ("min_resolution", True),
        ("dilation", 1.0),
        ("dilation", -1),
        ("inside", "up"),
        ("inside", True),
        ("chunk_size", 0),
        ("chunk_size", 1024.0),
        ("progress", "false"),
        ("max_memory_bytes", 0),
    ],
)
def test_hierarchical_knobs_are_refused_by_name(knob, value):
    with pytest.raises((ValueError, TypeError), match=f"^{knob}: expected"):
        HierarchicalVolumeDecoder(**{knob: value})
    if knob in ("level", "inside"):  # the stage's conventions, never the accelerator's knobs
        with pytest.raises((ValueError, TypeError), match=f"unknown knob.*'{knob}'.*its knobs are"):
            HierarchicalDecoding(**{knob: value})
        return
    with pytest.raises((ValueError, TypeError), match=f"^{knob}: expected"):
        HierarchicalDecoding(**{knob: value})  # the accelerator checks at construction, not at decode time


def test_nan_band_no_longer_loses_a_thin_plate_silently():
    # Before: band=nan compared False everywhere, acted as "no band" and lost the plate, with exit code 0.
    with pytest.raises(ValueError, match="band"):
        HierarchicalVolumeDecoder(min_resolution=16, band=NAN)
    plate = truncated(shapes.box((0.7, 0.7, 0.005)))
    grid = HierarchicalVolumeDecoder(min_resolution=16, band=0.95, band_units="field", dilation=1, progress=False).decode(plate, 64)
    dense = DenseVolumeDecoder(progress=False).decode(plate, 64)
    assert (dense.values > 0).sum() > 1000 and torch.equal(grid.values > 0, dense.values > 0)  # the valid band keeps all of it


@pytest.mark.parametrize("bound", [NAN, INF, 0.0, -1.0, "1"])
def test_decode_bound_is_checked(bound):
    for decoder in (DenseVolumeDecoder(progress=False), HierarchicalVolumeDecoder(min_resolution=8, progress=False)):
        with pytest.raises((ValueError, TypeError), match="^bound: expected a finite number > 0"):
            decoder.decode(truncated(shapes.sphere()), 16, bound)


def test_a_field_that_turns_nan_names_the_level():
    sdf = truncated(shapes.sphere(0.5))
    # NaN only near z = 0.016, where no sample of the 16^3..64^3 levels lies but the 128^3 grid has z = 0.0158
    field = lambda p: torch.where((p[:, 2] - 0.016).abs() < 0.012, NAN, sdf(p))
    with pytest.raises(ValueError, match=r"field: .*NaN or inf .* at level 128\^3"):
        HierarchicalVolumeDecoder(min_resolution=16, progress=False).decode(field, 128)
    with pytest.raises(TypeError, match="field: expected a query function"):
        DenseVolumeDecoder(progress=False).decode("sphere", 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"topk": 1.0}, "^topk: expected an integer >= 1"),  # was read as a count of 1
        ({"topk": 0.5}, "^topk: expected an integer"),  # a share goes in topk_ratio
        ({"topk": 0}, "^topk: expected an integer >= 1"),
        ({"topk": "all"}, "^topk: expected an integer"),
        ({"topk_ratio": 0.0}, "^topk_ratio: expected a finite number > 0 and <= 1"),
        ({"topk_ratio": 1.5}, "^topk_ratio: expected"),
        ({"topk_ratio": NAN}, "^topk_ratio: expected"),
        ({"topk": 8, "topk_ratio": 0.5}, "not both"),
        ({"per_head": "false"}, "^per_head: expected true or false"),  # was read as True
        ({"per_head": 0}, "^per_head: expected true or false"),
        ({"threshold": NAN}, "^threshold: expected"),
        ({"threshold": 1.0}, "^threshold: expected"),
        ({"sample_every": 2.0}, "^sample_every: expected an integer"),
        ({"cells": 6.0}, "^cells: expected an integer"),
        ({"cells": 0}, "^cells: expected an integer >= 1"),
        ({"bound": NAN}, "^bound: expected a finite number > 0"),
        ({"bound": INF}, "^bound: expected"),
        ({"scale": INF}, "^scale: expected"),
        ({"scale": NAN}, "^scale: expected"),
        ({"scale": -1.0}, "^scale: expected"),
        ({"mode": "max"}, "^mode: expected one of"),
        ({"backend": "cuda"}, "^backend: expected one of"),
    ],
)
def test_adaptive_kv_knobs_are_refused_by_name(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AdaptiveKVSelection(**kwargs)


def test_topk_ratio_one_keeps_every_key():
    k = torch.randn(2, 12, 8)
    q = torch.randn(2, 30, 8)
    sel = KVSelector("mean", topk_ratio=1.0).select(q, k, torch.tensor([0, 30]))
    assert sel.keys_per_query == 12


def test_cell_planning_and_selection_check_their_arguments():
    from accel3d.decoding import plan_cells

    points = torch.rand(10, 3)
    with pytest.raises(ValueError, match="^bound: expected a finite number > 0"):
        plan_cells(points, 4, bound=NAN)
    with pytest.raises(ValueError, match="^points: NaN or inf"):
        plan_cells(torch.tensor([[0.0, NAN, 0.0]]), 4)
    with pytest.raises(ValueError, match="^points: expected a floating-point"):
        plan_cells(torch.zeros(4, 3, dtype=torch.long), 4)
    q, k = torch.randn(1, 10, 8), torch.randn(1, 6, 8)
    with pytest.raises(ValueError, match="^scale: expected a finite number > 0"):
        KVSelector("merge").select(q, k, torch.tensor([0, 10]), scale=NAN)


def test_review_findings_in_decoding():
    from accel3d.decoding import plan_cells
    from accel3d.decoding.hierarchical import coarse_to_fine_levels
    from accel3d.decoding.refinement import refinement_mask
    from accel3d.decoding.sparsity import attention_sparsity

    with pytest.raises(ValueError, match="^cells: expected an integer >= 1 and <= 64"):
        AdaptiveKVSelection(cells=100_000)  # was accepted, then failed in the allocator after the baseline
    with pytest.raises(ValueError, match="^cells"):
        plan_cells(torch.rand(5, 3), 2000)
    with pytest.raises(ValueError, match=r"^hierarchical: unknown knob\(s\) \['bandd'\]; its knobs are .*'band'"):
        HierarchicalDecoding(bandd=0.3)
    with pytest.raises(ValueError, match="min_resolution"):
        coarse_to_fine_levels(32, 0)
    for kwargs in ({"level": NAN}, {"band": NAN}, {"dilation": -1}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            refinement_mask(torch.zeros(4, 4, 4), **{"level": 0.0, "band": 0.1, "dilation": 0, **kwargs})
    with pytest.raises(ValueError, match="num_keys"):
        from accel3d.decoding import resolve_topk

        resolve_topk(3, -5)
    with pytest.raises(ValueError, match="^KVSelector.select: expected at least one key"):
        KVSelector().select(torch.randn(1, 4, 8), torch.randn(1, 0, 8), torch.tensor([0, 4]))
    for masses in ((NAN,), 0.9, (1.5,), ()):
        with pytest.raises(ValueError, match="masses"):
            attention_sparsity(None, (None, None), torch.zeros(1, 3), masses=masses)


def test_hierarchical_refuses_an_object_whose_decode_is_not_a_volume_decoder(tiny_config):
    from accel3d.models.vecset.vae import VecsetVAE

    with pytest.raises(TypeError, match=r"expected a volume decoder with a decode\(fn, resolution, bound\)"):
        HierarchicalDecoding().attach(VecsetVAE(tiny_config))  # its decode(latents) is not one


def test_two_adaptive_kv_on_one_geo_decoder_is_refused(tiny_config):
    torch.manual_seed(0)
    vae = VecsetVAE(tiny_config).eval()
    gen = torch.Generator().manual_seed(3)
    points = torch.rand(1, 64, 3, generator=gen) - 0.5
    normals = torch.nn.functional.normalize(torch.randn(1, 64, 3, generator=gen), dim=-1)
    decode = lambda: DenseVolumeDecoder(progress=False).decode(vae.field(vae.encode(points, normals)), 16).values
    plain = decode()
    first = AdaptiveKVSelection(mode="mean", topk=4, cells=2)
    first.attach(vae.geo_decoder)
    accelerated = decode()
    with pytest.raises(PatchConflictError, match="adaptive_kv: CrossAttentionDecoder.query is already patched by adaptive_kv"):
        AdaptiveKVSelection(mode="mean", topk=8).attach(vae.geo_decoder)
    assert torch.equal(decode(), accelerated)
    first.detach()
    assert torch.equal(decode(), plain)


DECODERS = [DenseVolumeDecoder(progress=False), HierarchicalVolumeDecoder(min_resolution=8, progress=False)]


@pytest.mark.parametrize("decoder", DECODERS, ids=["dense", "hierarchical"])
@pytest.mark.parametrize(
    ("field", "error", "match"),
    [
        (lambda p: torch.zeros(len(p), 1), ValueError, r"shape \(\d+,\)"),
        (lambda p: torch.zeros(len(p), dtype=torch.long), TypeError, "floating-point"),
        (lambda p: p.norm(dim=-1).numpy(), TypeError, "return a Tensor"),
        (lambda p: torch.where(p[:, 0] > 0.5, float("nan"), 1.0), ValueError, "NaN"),
    ],
    ids=["shape", "dtype", "type", "nan"],
)
def test_bad_query_functions_are_named(decoder, field, error, match):
    with pytest.raises(error, match=f"field: .*{match}"):
        decoder.decode(field, 16)


def test_nan_appearing_only_at_fine_levels_is_caught():
    # NaN only near z = 0.016: no sample of the 16^3..64^3 levels lies there, but the 128^3 grid has z = 0.0158.
    sdf = truncated(shapes.sphere(0.5))
    field = lambda p: torch.where((p[:, 2] - 0.016).abs() < 0.012, float("nan"), sdf(p))
    coarse = DenseVolumeDecoder(progress=False).decode(field, 64)  # the coarser levels are clean
    assert torch.isfinite(coarse.values).all()
    with pytest.raises(ValueError, match="field: .*NaN"):
        HierarchicalVolumeDecoder(min_resolution=16, progress=False).decode(field, 128)


def test_single_level_resolution_warns_that_it_decodes_densely():
    with pytest.warns(UserWarning, match="decodes densely"):
        grid = HierarchicalVolumeDecoder(min_resolution=63, progress=False).decode(truncated(shapes.sphere()), 65)
    assert grid.query_fraction == 1.0


def test_resolution_below_minimum():
    with pytest.raises(ValueError, match="resolution: expected an integer >= 63, got 32"):
        HierarchicalVolumeDecoder(min_resolution=63, progress=False).decode(truncated(shapes.sphere()), 32)
    with pytest.raises(TypeError, match="resolution"):
        DenseVolumeDecoder(progress=False).decode(truncated(shapes.sphere()), 32.0)


@pytest.mark.parametrize("kwargs", [{"min_resolution": 1}, {"band": -1.0}, {"dilation": -1}, {"inside": "up"}])
def test_bad_decoder_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        HierarchicalVolumeDecoder(**kwargs)


def test_a_band_of_none_is_refused_in_voxels_and_turns_the_band_off_in_field_units():
    with pytest.raises(ValueError, match=r"^band: expected a positive number of voxels, got None"):
        HierarchicalVolumeDecoder(band=None)
    assert HierarchicalVolumeDecoder(band=None, band_units="field").band is None
