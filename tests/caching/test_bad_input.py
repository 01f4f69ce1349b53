"""Bad knobs and misuse of the caching package: each error names the argument, and a second Hash3D
on a U-Net that already has one is refused while the first keeps working."""

import pytest
import torch

from accel3d.caching import GridHashTable, Hash3D
from accel3d.caching.hash_table import GridCells
from accel3d.core import PatchConflictError, camera_pose, detach_all
from accel3d.models.sds.unets import build_unet

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("retrieve_prob", NAN),
        ("retrieve_prob", 1.5),
        ("retrieve_prob", "0.9"),
        ("temperature", NAN),
        ("temperature", INF),
        ("temperature", 0.0),
        ("similarity_decay", NAN),
        ("similarity_decay", 1.0),
        ("max_megabytes", INF),
        ("max_megabytes", NAN),
        ("max_megabytes", 0),
        ("num_buckets", 200.0),
        ("num_buckets", 0),
        ("queue_length", "3"),
        ("check_every", 1.5),
        ("check_every", -1),
        ("exact_cells", "false"),
        ("match_conditioning", "no"),
        ("guidance_pairs", 1),
        ("mode", "eps"),
        ("missing_pose", "skip"),
        ("seed", 0.5),
        ("cut", 1.5),
    ],
)
def test_hash3d_knobs_are_refused_by_name(knob, value):
    with pytest.raises((ValueError, TypeError), match=f"^{knob}: expected"):
        Hash3D(**{knob: value})


@pytest.mark.parametrize(
    "grids",
    [
        [[10, 10, NAN, 10]],
        [[10, 10, 0.1]],
        [["10", 10, 0.1, 10]],
        [[10, 10, 0.1, -1]],
        [[10, True, 0.1, 10]],
        "10,10,0.1,10",
        [],
    ],
)
def test_bad_grids_are_refused(grids):
    with pytest.raises(ValueError, match="grids|GridCells"):
        Hash3D(grids=grids)


def test_infinite_cells_still_mean_ignore_the_axis():
    table = GridHashTable(grids=[GridCells(INF, INF, INF, 10)])
    assert table.grids[0].azimuth == INF
    with pytest.raises(ValueError, match="unmeasured_similarity"):
        GridHashTable(unmeasured_similarity=NAN)


def test_review_findings_in_caching():
    with pytest.raises(ValueError, match=r"^grids\[0\]: expected cell sizes >= 1e-06"):
        Hash3D(grids=[[1e-300, 1e-300, 1e-300, 1e-300]])  # indices would overflow into one bucket
    with pytest.raises(ValueError, match="^num_buckets: expected an integer >= 1 and <= 10000000"):
        Hash3D(num_buckets=10**10)
    with pytest.raises(ValueError, match="^max_megabytes: expected a finite number >= 0.001"):
        Hash3D(max_megabytes=1e-7)
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match="^seed: expected an integer >= 0"):
            Hash3D(seed=seed)


@pytest.fixture(scope="module")
def unet():
    return build_unet("tiny", seed=0)


def _unet_call(unet, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 16, 16, generator=gen)
    text = torch.randn(2, 5, 64, generator=gen)
    with torch.no_grad(), camera_pose(azimuth=10.0, elevation=5.0, radius=1.8):
        return unet(torch.cat([x, x]), torch.tensor([500]), encoder_hidden_states=text).sample


def test_a_second_hash3d_on_one_unet_is_refused(unet):
    plain = _unet_call(unet)
    first = Hash3D(retrieve_prob=1.0)
    first.attach(unet)
    try:
        _unet_call(unet)
        # re-running a notebook cell: a new Hash3D on the U-Net that already has one
        with pytest.raises(PatchConflictError, match=r"hash3d: UNet2DConditionModel\.forward is already patched by hash3d"):
            Hash3D().attach(unet)
        _unet_call(unet, seed=1)  # the first one still works (no KeyError: 'sample')
        assert first.stats()["calls"] == 2
    finally:
        assert detach_all(unet) == 1
    assert not first.attached and torch.equal(_unet_call(unet), plain)
