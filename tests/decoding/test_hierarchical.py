import pytest
import torch

from accel3d.decoding import DenseVolumeDecoder, HierarchicalDecoding, HierarchicalVolumeDecoder, coarse_to_fine_levels
from accel3d.decoding.hierarchical import upsample
from accel3d.geometry import shapes
from accel3d.geometry.mesh_fields import FIELD_FAMILIES as FAMILIES
from accel3d.geometry.metrics import volume_iou
from tests.fields import offset_thin_plate, truncated

RES = 128


def decode_both(field, **kwargs):
    dense = DenseVolumeDecoder(progress=False).decode(field, RES)
    fast = HierarchicalVolumeDecoder(min_resolution=32, progress=False, **kwargs).decode(field, RES)
    return dense, fast


@pytest.mark.parametrize("name", ["sphere", "torus", "thin_plate"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_default_rule_is_exact_on_every_field_family(name, family):
    sdf = offset_thin_plate() if name == "thin_plate" else shapes.SHAPES[name]()
    dense, fast = decode_both(FAMILIES[family](sdf))
    assert (dense.values > 0).sum() > 1000
    assert volume_iou(dense.values > 0, fast.values > 0) == 1.0
    assert not torch.isnan(fast.values).any()
    # Every point it queried holds exactly the dense value.
    assert torch.equal(fast.values[fast.decoded], dense.values[fast.decoded])
    if family in ("raw", "clamped_0.1"):  # a ramp wide enough to read distances from: a real saving
        assert fast.queries < 0.2 * dense.queries


def test_the_speed_tuned_field_units_rule_loses_volume_where_the_default_does_not():
    field = FAMILIES["clamped_0.01"](offset_thin_plate())
    dense, tuned = decode_both(field, band=0.3, band_units="field", dilation=0)
    assert volume_iou(dense.values > 0, tuned.values > 0) < 0.5  # the plate is lost
    occupancy = FAMILIES["occupancy"](offset_thin_plate())
    dense, flashvdm = decode_both(occupancy, band=0.95, band_units="field", dilation=1)  # FlashVDM's settings
    assert volume_iou(dense.values > 0, flashvdm.values > 0) < 0.5


def test_each_level_reports_what_each_part_of_the_rule_flagged():
    _, fast = decode_both(FAMILIES["clamped_0.1"](shapes.torus()), slope="global")
    first = fast.levels[1]["flagged"]
    assert first["rule"] == "band+dilation" and first["sign_change"] > 0 and first["band"] > 0 and first["dilation"] > 0
    global_band = 3**0.5 * (2 * 1.01 / 32) * 1.25 * first["slope"]
    assert first["band_field_units"] == pytest.approx(global_band, rel=1e-6)
    _, local = decode_both(FAMILIES["clamped_0.1"](shapes.torus()))  # the largest per-sample band: a gradient norm
    assert 0 < local.levels[1]["flagged"]["band_field_units"] <= 3**0.5 * global_band * (1 + 1e-6)
    _, occupancy = decode_both(FAMILIES["occupancy"](shapes.torus()))
    assert occupancy.levels[1]["flagged"] == {"rule": "dense", "reason": "no ramp between samples"}
    assert occupancy.queries == occupancy.dense_queries  # exact, and no more queries than dense


def test_thin_plate_needs_the_band():
    field = truncated(offset_thin_plate())
    dense, without = decode_both(field, band=None, band_units="field", dilation=1)
    assert (dense.values > 0).sum() > 1000
    assert (without.values > 0).sum() == 0  # thinner than a coarse voxel: lost
    _, with_band = decode_both(field, band=0.95, band_units="field", dilation=1)
    assert volume_iou(dense.values > 0, with_band.values > 0) == 1.0


def test_dilation_recovers_a_spike_the_coarse_level_misses():
    # A thin spike pokes 0.05 (1.6 coarse voxels) out of a ball, between coarse samples.
    # With the band off, only dilation carries the refinement from the ball's surface
    # cells out to the spike's tip.
    ball, spike = shapes.sphere(0.5), shapes.box((0.275, 0.006, 0.006))
    centre = torch.tensor([0.275, 0.0158, 0.0158])
    field = lambda p: torch.maximum(ball(p), spike(p - centre))
    dense = DenseVolumeDecoder(progress=False).decode(field, RES)
    kwargs = dict(min_resolution=64, band=None, band_units="field", progress=False)
    without = HierarchicalVolumeDecoder(dilation=0, **kwargs).decode(field, RES)
    dilated = HierarchicalVolumeDecoder(dilation=1, **kwargs).decode(field, RES)
    assert volume_iou(dense.values > 0, without.values > 0) < 1.0
    assert volume_iou(dense.values > 0, dilated.values > 0) == 1.0


def test_levels_halve_down_to_the_minimum():
    assert coarse_to_fine_levels(256, 63) == [64, 128, 256]
    assert coarse_to_fine_levels(384, 63) == [96, 192, 384]
    assert coarse_to_fine_levels(250, 63) == [125, 250]
    assert coarse_to_fine_levels(63, 63) == [63]


def test_fast_interpolation_matches_the_separable_reference():
    from accel3d.decoding.hierarchical import interpolate

    x = torch.randn(9, 9, 9)
    fast = interpolate(x)
    assert torch.equal(fast[::2, ::2, ::2], x)
    assert torch.allclose(fast, upsample(x, "mean"), atol=1e-6)


def test_nested_upsampling_keeps_coarse_samples_and_interpolates():
    x = torch.arange(8, dtype=torch.float32).view(2, 2, 2)
    up = upsample(x, "mean")
    assert up.shape == (3, 3, 3)
    assert torch.equal(up[::2, ::2, ::2], x)
    assert up[1, 1, 1] == x.mean()


def test_inside_negative_and_level_are_honoured():
    sdf = shapes.sphere(0.5)
    flipped = lambda p: 0.25 - sdf(p)  # inside is below 0.25
    dense = DenseVolumeDecoder(progress=False).decode(flipped, 64)
    fast = HierarchicalVolumeDecoder(min_resolution=16, level=0.25, inside="negative", progress=False).decode(flipped, 64)
    assert volume_iou(dense.values < 0.25, fast.values < 0.25) == 1.0
    assert fast.queries < dense.queries


def test_accelerator_at_full_resolution_reproduces_dense_exactly():
    field = truncated(shapes.torus())
    decoder = DenseVolumeDecoder(progress=False)
    baseline = decoder.decode(field, 64)
    with HierarchicalDecoding(min_resolution=64).applied(decoder) as acc:  # one level: every point computed
        with pytest.warns(UserWarning, match="decodes densely"):
            same = decoder.decode(field, 64)
    assert torch.equal(same.values, baseline.values)
    assert acc.stats()["query_fraction"] == 1.0


def test_accelerator_attach_detach_restores_the_decoder():
    field = FAMILIES["clamped_0.1"](shapes.sphere())
    decoder = DenseVolumeDecoder(progress=False)
    before = decoder.decode(field, 64)
    acc = HierarchicalDecoding(min_resolution=16)
    acc.attach(decoder)
    fast = decoder.decode(field, 64)
    assert fast.queries < before.queries and acc.stats()["calls"] == 1
    acc.detach()
    after = decoder.decode(field, 64)
    assert torch.equal(after.values, before.values) and after.queries == before.queries
    acc.reset()
    assert acc.stats() == {}


def test_accelerator_refuses_a_target_without_decode():
    with pytest.raises(TypeError, match="decode"):
        HierarchicalDecoding().attach(torch.nn.Linear(2, 2))


def test_the_local_slope_bounds_every_gradient_within_its_radius():
    from accel3d.decoding.refinement import local_slope

    values = torch.randn(23, 23, 23, generator=torch.Generator().manual_seed(0))
    bound = local_slope(values, spacing=0.5, radius=2)
    steep = torch.zeros_like(values)  # the brute-force per-point estimate: norm of the steeper face difference per axis
    for dim in range(3):
        d = values.diff(dim=dim).abs()
        forward = torch.cat([d, torch.zeros_like(d.narrow(dim, 0, 1))], dim)
        backward = torch.cat([torch.zeros_like(d.narrow(dim, 0, 1)), d], dim)
        steep += torch.maximum(forward, backward).square()
    steep = steep.sqrt() / 0.5
    window = torch.nn.functional.max_pool3d(steep[None, None], 5, stride=1, padding=2)[0, 0]
    assert (bound >= window).all()
    assert bound.max() == steep.max() and bound.min() < steep.max()  # a bound per point, not the global one


def test_a_steep_region_far_from_the_surface_does_not_widen_the_band_everywhere():
    sphere = shapes.sphere(0.4)

    def field(p):  # a sphere, and far outside it a slope 40 times steeper that crosses no surface
        return sphere(p) - 40.0 * torch.relu(p[:, 0].abs() - 0.8)

    dense, local = decode_both(field)
    _, global_ = decode_both(field, slope="global")
    for grid in (local, global_):
        assert volume_iou(dense.values > 0, grid.values > 0) == 1.0
    assert local.queries < 0.5 * global_.queries
