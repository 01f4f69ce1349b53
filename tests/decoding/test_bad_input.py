"""Bad knobs and data for the decoding package and its kernels: each error names the argument."""

import math

import pytest
import torch
from tests.fields import truncated

from accel3d.decoding import AdaptiveKVSelection, DenseVolumeDecoder, HierarchicalDecoding, HierarchicalVolumeDecoder, KVSelector
from accel3d.geometry import shapes
from accel3d.kernels import packed_sparse_attention, scatter_max_rows

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("band", NAN),
        ("band", INF),
        ("band", -0.1),
        ("band", "0.3"),
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
    with pytest.raises((ValueError, TypeError), match=f"^{knob}: expected"):
        HierarchicalDecoding(**{knob: value})  # the accelerator checks at construction, not at decode time


def test_nan_band_no_longer_loses_a_thin_plate_silently():
    # Before: band=nan compared False everywhere, acted as "no band" and lost the plate, with exit code 0.
    with pytest.raises(ValueError, match="band"):
        HierarchicalVolumeDecoder(min_resolution=16, band=NAN)
    plate = truncated(shapes.box((0.7, 0.7, 0.005)))
    grid = HierarchicalVolumeDecoder(min_resolution=16, band=0.95, dilation=1, progress=False).decode(plate, 64)
    assert (grid.values > 0).any()  # the valid band keeps it


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


def _attention_inputs(bad: str, value: float):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 20, 16, generator=gen) for _ in range(3))
    {"q": q, "k": k, "v": v}[bad][:, 3] = value
    cells = torch.tensor([0, 8, 20])
    kv_offsets = torch.tensor([0, 10, 20])
    kv_indices = torch.cat([torch.arange(10), torch.arange(10, 20)])
    return q, k, v, cells, kv_offsets, kv_indices


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("bad", ["q", "k", "v"])
@pytest.mark.parametrize("value", [NAN, INF])
def test_sparse_attention_refuses_non_finite_inputs_on_both_backends(backend, bad, value):
    # Before: all-NaN keys gave 0.0 on the torch path and NaN on the Triton path.
    with pytest.raises(FloatingPointError, match=f"packed_sparse_attention: {bad} contains NaN or inf"):
        packed_sparse_attention(*_attention_inputs(bad, value), backend=backend)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_sparse_attention_on_finite_inputs_agrees_across_backends(backend):
    q, k, v, cells, kvo, kvi = _attention_inputs("q", 0.5)
    ref = packed_sparse_attention(q, k, v, cells, kvo, kvi, backend="torch")
    out = packed_sparse_attention(q, k, v, cells, kvo, kvi, backend=backend)
    assert torch.allclose(out, ref, atol=1e-5) and torch.isfinite(out).all()


def test_scatter_max_refuses_nan_and_a_non_number_empty_value():
    src = torch.tensor([[1.0], [NAN]])
    with pytest.raises(ValueError, match="src contains NaN"):
        scatter_max_rows(src, torch.tensor([0, 0]), 1)
    with pytest.raises(ValueError, match="empty_value"):
        scatter_max_rows(torch.ones(2, 1), torch.tensor([0, 0]), 1, empty_value=math.nan)


def test_surface_extraction_refuses_a_nan_level_instead_of_returning_an_empty_mesh():
    from accel3d.geometry.surface import extract_mesh

    grid = DenseVolumeDecoder(progress=False).decode(truncated(shapes.sphere(0.5)), 16)
    for level in (NAN, INF, "0"):
        with pytest.raises((ValueError, TypeError), match="^level: expected a finite number"):
            extract_mesh(grid, level=level)
    with pytest.raises(ValueError, match="^inside: expected one of"):
        extract_mesh(grid, inside="in")
    grid.values[0, 0, 0] = INF
    with pytest.raises(ValueError, match="^grid: 1 NaN or inf values"):
        extract_mesh(grid)


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
    from accel3d.decoding.hierarchical import coarse_to_fine_levels, refinement_mask
    from accel3d.decoding.sparsity import attention_sparsity

    with pytest.raises(ValueError, match="^cells: expected an integer >= 1 and <= 64"):
        AdaptiveKVSelection(cells=100_000)  # was accepted, then failed in the allocator after the baseline
    with pytest.raises(ValueError, match="^cells"):
        plan_cells(torch.rand(5, 3), 2000)
    with pytest.raises(ValueError, match=r"^hierarchical: unknown knob\(s\) \['bandd'\]; expected some of .*'band'"):
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
    from accel3d.models.vecset_vae import VecsetVAE

    with pytest.raises(TypeError, match=r"expected a volume decoder with a decode\(fn, resolution, bound\)"):
        HierarchicalDecoding().attach(VecsetVAE(tiny_config))  # its decode(latents) is not one


@pytest.mark.parametrize("scale", ["0.5", True, torch.tensor([0.5]), 0.0, NAN])
def test_attention_scale_must_be_a_positive_number(scale):
    with pytest.raises(ValueError, match="scale must be None or a positive finite number"):
        packed_sparse_attention(*_attention_inputs("q", 0.5), scale=scale)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_attention_overflow_is_an_error_not_a_nan_output(backend):
    with pytest.raises(FloatingPointError, match="the output overflowed"):
        packed_sparse_attention(*_attention_inputs("q", 0.5), scale=1e308, backend=backend)


def test_attention_head_dim_and_backend_type():
    q, k, v, cells, kvo, kvi = _attention_inputs("q", 0.5)
    with pytest.raises(ValueError, match=r"head dim must be in \[1, 256\]"):
        packed_sparse_attention(q[..., :0], k[..., :0], v[..., :0], cells, kvo, kvi)
    with pytest.raises(ValueError, match="backend must be one of"):
        packed_sparse_attention(q, k, v, cells, kvo, kvi, backend=123)
