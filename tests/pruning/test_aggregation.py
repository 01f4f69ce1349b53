"""Spectral-aware token aggregation: HFER, routing, the max-merge (both kernel backends), scale compensation, guards."""

from __future__ import annotations

import math
import types

import pytest
import torch

from accel3d.models.image_to_3d.stages import SparseCoords, SparseStructure
from accel3d.pruning import SpectralAggregation
from accel3d.pruning.aggregation import merge_voxels
from accel3d.pruning.spectral import calibrate_routing, mask_hfer, occupancy_hfer, quantise_about_centre, route_factor


def _polar_mask(radius_fn, n: int = 128) -> torch.Tensor:
    ax = torch.arange(n) - n / 2 + 0.5
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return (torch.sqrt(xx**2 + yy**2) < radius_fn(torch.atan2(yy, xx))).float()


def _structure(resolution: int = 32) -> SparseStructure:
    vae = types.SimpleNamespace(config=types.SimpleNamespace(structure_resolution=resolution))
    return SparseStructure(vae, max_tokens=10**6)


def _box_logits(resolution: int = 32, lo: int = 6, hi: int = 27) -> torch.Tensor:
    logits = torch.full((resolution,) * 3, -1.0)
    logits[lo:hi, lo + 2 : hi - 3, lo + 4 : hi - 1] = 2.0
    return logits


def test_a_star_has_a_higher_hfer_than_a_disc():
    disc = _polar_mask(lambda th: torch.full_like(th, 40.0))
    star = _polar_mask(lambda th: 40 * (0.55 + 0.45 * torch.cos(5 * th)))
    assert mask_hfer(star) > 3 * mask_hfer(disc) > 0
    with pytest.raises(ValueError, match=r"^mask: expected an object mask with at least one pixel set"):
        mask_hfer(torch.zeros(16, 16))


def test_occupancy_hfer_is_higher_for_a_thin_shell_than_for_a_solid():
    solid = _box_logits() > 0
    shell = solid.clone()
    shell[7:26, 9:23, 11:25] = False
    assert occupancy_hfer(shell) > occupancy_hfer(solid)
    assert occupancy_hfer(torch.zeros(8, 8, 8)) == 0.0


def test_factor_routing_follows_the_thresholds():
    factors = (1.25, 1.5, 2.0)
    assert [route_factor(h, 0.7, 0.5, factors) for h in (0.9, 0.7, 0.6, 0.5, 0.1)] == [1.25, 1.25, 1.5, 2.0, 2.0]
    aggregation = SpectralAggregation(mask_weight=0.0, hfer_scales=(1.0, 0.5), tau_high=10.0, tau_low=0.0)
    factor, figures = aggregation.choose(_box_logits(), None)
    assert factor == 1.5 and figures["score"] == pytest.approx(occupancy_hfer(_box_logits() > 0) / 0.5)


def test_calibration_puts_both_ratios_on_one_scale_and_routes_a_third_of_the_set_to_each_factor():
    g = torch.Generator().manual_seed(0)
    h2 = (torch.rand(30, generator=g) * 4e-3).tolist()  # masks: of order 1e-3
    h3 = (0.1 + torch.rand(30, generator=g) * 0.2).tolist()  # shells: of order 0.1
    found = calibrate_routing(h2, h3, mask_weight=0.9)
    assert found["hfer_scales"] == (pytest.approx(float(torch.tensor(h2).median())), pytest.approx(float(torch.tensor(h3).median())))
    low, high = found["tau"]
    scores = [0.9 * a / found["hfer_scales"][0] + 0.1 * b / found["hfer_scales"][1] for a, b in zip(h2, h3)]
    routed = [route_factor(s, high, low, (1.25, 1.5, 2.0)) for s in scores]
    assert 9 <= routed.count(2.0) <= 11 and 9 <= routed.count(1.25) <= 11
    with pytest.raises(ValueError, match=r"^hfer_2d, hfer_3d: expected equal lengths"):
        calibrate_routing([1e-3, 2e-3], [0.1, 0.2])


def test_factors_given_at_the_reference_grid_keep_their_coarsening_in_object_units_at_other_sides():
    aggregation = SpectralAggregation()
    assert aggregation.factor_at(2.0, 64) == 2.0 and aggregation.factor_at(2.0, 32) == 1.5
    assert aggregation.factor_at(1.25, 128) == 1.5 and aggregation.factor_at(1.0, 32) == 1.0
    assert SpectralAggregation(scale_factors=False).factor_at(2.0, 32) == 2.0
    with SpectralAggregation(factor=2.0, min_tokens=0).applied(stage := _structure(32)):
        assert stage.coords(_box_logits(32)).factor == 1.5


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_merge_max_pools_the_logits_of_the_voxels_that_land_together(monkeypatch, backend):
    monkeypatch.setenv("ACCEL3D_KERNEL_BACKEND", backend)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 16, 16, generator=g)
    coords = torch.nonzero(logits > 0.5)
    merged, pooled = merge_voxels(coords, logits, 1.5, 16)
    shrunk = quantise_about_centre(coords, 1.5, 16)
    for cell, value in zip(merged.tolist(), pooled.tolist()):
        members = (shrunk == torch.tensor(cell)).all(1)
        assert value == pytest.approx(float(logits[tuple(coords[members].T)].max()))
    assert len(merged) == len({tuple(c) for c in shrunk.tolist()}) < len(coords)


@pytest.mark.parametrize("factor", [1.25, 1.5, 2.0])
def test_the_scale_compensation_keeps_the_bounding_box_within_one_coarse_voxel(factor):
    resolution = 32
    found = _structure(resolution).coords(_box_logits(resolution))
    aggregation = SpectralAggregation(factor=factor, min_tokens=0, scale_factors=False)
    with aggregation.applied(stage := _structure(resolution)):
        shrunk = stage.coords(_box_logits(resolution))
    assert shrunk.factor == factor and shrunk.occupied == found.occupied
    assert len(shrunk.coords) < len(found.coords) / factor**2

    def world_box(coords: torch.Tensor, scale: float) -> torch.Tensor:  # voxel extents, object units, times the layout scale
        lo, hi = coords.min(0).values.double(), coords.max(0).values.double() + 1
        return torch.stack([lo, hi]).sub(resolution / 2).mul(2 / resolution * scale)

    coarse_voxel = 2 / resolution * factor
    assert (world_box(shrunk.coords, factor) - world_box(found.coords, 1.0)).abs().max() <= coarse_voxel


def test_factor_one_and_the_token_guard_leave_the_structure_as_it_was():
    logits = _box_logits()
    found = _structure().coords(logits)
    for aggregation in (SpectralAggregation(factor=1.0), SpectralAggregation(factor=2.0, min_tokens=10**6)):
        with aggregation.applied(stage := _structure()):
            same = stage.coords(logits)
        assert torch.equal(same.coords, found.coords) and same.factor == 1.0
    assert SpectralAggregation().min_tokens_at(32) == 512 and SpectralAggregation().min_tokens_at(64) == 2048


def test_an_empty_structure_and_an_already_capped_one_are_not_aggregated():
    empty = torch.full((32, 32, 32), -1.0)
    with SpectralAggregation(factor=2.0, min_tokens=0).applied(stage := _structure()):
        assert stage.coords(empty).tokens == 0
    capped = SparseCoords(torch.nonzero(_box_logits() > 0)[:100], factor=2.0, occupied=5000)
    stage = types.SimpleNamespace(resolution=32, coords=lambda logits, mask=None: capped)
    with SpectralAggregation(factor=1.5, min_tokens=0).applied(stage):
        assert stage.coords(_box_logits()) is capped


def test_bad_knobs_name_the_argument():
    with pytest.raises(ValueError, match=r"^factor: "):
        SpectralAggregation(factor=0.5)
    with pytest.raises(ValueError, match=r"^tau_low: expected at most tau_high"):
        SpectralAggregation(tau_low=0.8, tau_high=0.7)
    with pytest.raises(ValueError, match=r"^factors: expected three factors"):
        SpectralAggregation(factors=(1.5, 2.0))
    with pytest.raises(ValueError, match=r"^hfer_scales: expected two positive scales"):
        SpectralAggregation(hfer_scales=(1.0,))
    with pytest.raises(ValueError, match=r"^hfer_scales\[1\]: "):
        SpectralAggregation(hfer_scales=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"^scale_factors: expected true or false"):
        SpectralAggregation(scale_factors="yes")
    with pytest.raises(ValueError, match=r"^mask_weight: "):
        SpectralAggregation(mask_weight=math.nan)
    with pytest.raises(TypeError, match=r"^spectral_aggregation: expected a sparse-structure stage"):
        SpectralAggregation().attach(object())
