"""Bad knobs and stages of the pruning accelerators, refused before any work with the knob or the stage named:
names given as one string, a carving resolution smaller than the structure, an unbounded mask size, a stage
whose state is not one token tensor, and knobs given as numpy scalars or 0-d tensors (read as the numbers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from accel3d.core.validate import ArgumentError
from accel3d.pruning import EasyCacheSkip, ModalityStepCache, RandomTokenDrop, SpectralAggregation, TokenCarving
from accel3d.pruning.config import SpectralAggregationConfig, TokenCarvingConfig
from tests.pruning.fakes import PolynomialStage, TokenStage


def _carving_stage(**kwargs) -> TokenStage:
    """A token stage (64 tokens of an 8^3 grid) whose velocity is a smooth function of its state."""
    return TokenStage(lambda x, c: torch.sin(3 * x) + c[..., :1].float() / 8, **kwargs)


class SidedTokenStage(TokenStage):
    """A token stage that states the side of the grid its coordinates live in."""

    resolution = 8


class GridStage:
    """A one-group flow stage whose state is a dense [1, C, R, R, R] grid (a TRELLIS-like SS flow), not tokens."""

    token_groups = {"grid": ()}
    steps = 4

    def __init__(self) -> None:
        self.calls = 0

    def velocity(self, x, t, cond, step, **kwargs):
        self.calls += 1
        return -x


# ---------------------------------------------------------------- names


def test_one_string_of_token_kwargs_is_one_name_not_its_letters():
    assert TokenCarving(token_kwargs="coords").config.token_kwargs == ("coords",)
    assert TokenCarving(token_kwargs=["coords", "mask"]).config.token_kwargs == ("coords", "mask")
    assert ModalityStepCache(layout_groups="layout").config.layout_groups == ("layout",)
    for bad in (5, ["coords", ""], ["coords", 3], b"coords"):
        with pytest.raises(ArgumentError, match=r"^token_kwargs: expected a list of names"):
            TokenCarving(token_kwargs=bad)


def test_carving_refuses_per_token_arguments_without_the_coordinates():
    # carving reads the coordinates and must hand the model the kept tokens' rows of them
    with pytest.raises(ArgumentError, match=r"^token_kwargs: expected 'coords' among the per-token arguments when carving"):
        TokenCarving(token_kwargs="mask")
    assert TokenCarving(ratio=0.0, token_kwargs="mask").config.token_kwargs == ("mask",)  # no carving: not read


# ---------------------------------------------------------------- resolution


def test_a_resolution_smaller_than_the_structure_is_refused_before_any_model_call():
    stage = _carving_stage()
    top = int(stage.coords.max())
    assert top >= 4  # the 8^3 grid's coordinates reach past a side of 4
    carving = TokenCarving(ratio=0.25, skip_threshold=0.0, resolution=4)
    with carving.applied(stage):
        with pytest.raises(ArgumentError, match=rf"^resolution: 4 is smaller than the structure of TokenStage: .* reach {top}"):
            stage.sample()
    assert stage.calls == []  # refused at the first step, before the model was called
    with TokenCarving(ratio=0.25, skip_threshold=0.0, resolution=8).applied(stage):
        stage.sample()  # a side that holds them is fine
    assert len(stage.calls) == 25


def test_a_resolution_smaller_than_the_grid_the_stage_states_is_refused_at_attach():
    stage = SidedTokenStage(lambda x, c: x.clone())
    carving = TokenCarving(ratio=0.25, resolution=4)
    with pytest.raises(ArgumentError, match=r"^resolution: 4 is smaller than the structure grid of SidedTokenStage \(side 8\)"):
        carving.attach(stage)
    assert not carving.attached and "velocity" not in vars(stage)
    with TokenCarving(ratio=0.25, resolution=8).applied(stage):
        stage.sample()


@pytest.mark.parametrize("value", [1, 10**6, 2.0, "32", True])
def test_the_resolution_knob_is_an_integer_from_2_to_256(value):
    with pytest.raises(ArgumentError, match=r"^resolution: expected an integer >= 2 and <= 256 or None"):
        TokenCarving(resolution=value)


def test_coordinates_that_are_not_one_row_per_token_or_negative_are_refused_before_any_model_call():
    stage = _carving_stage()
    stage.coords = stage.coords[..., :2]  # [1, N, 2]
    with TokenCarving(ratio=0.25).applied(stage):
        with pytest.raises(ValueError, match=r"^coords: TokenStage passes coordinates of shape \(1, 64, 2\) with 64 tokens"):
            stage.sample()
    stage = _carving_stage()
    stage.coords = stage.coords - 1
    with TokenCarving(ratio=0.25).applied(stage):
        with pytest.raises(ValueError, match=r"^coords: TokenStage passes a negative voxel coordinate \(-1\)"):
            stage.sample()
    assert stage.calls == []


# ---------------------------------------------------------------- stages it cannot carve


@pytest.mark.parametrize("cls", [TokenCarving, EasyCacheSkip, RandomTokenDrop])
def test_a_stage_whose_state_is_several_keyed_groups_is_refused_at_attach(cls):
    stage = PolynomialStage()
    accelerator = cls()
    with pytest.raises(TypeError, match=rf"^{accelerator.name}: cannot carve the state of PolynomialStage: its token groups"):
        accelerator.attach(stage)
    assert not accelerator.attached and "velocity" not in vars(stage)


def test_a_one_key_group_is_refused_too():
    stage = PolynomialStage()
    stage.token_groups = {"shape": ("shape",)}
    with pytest.raises(TypeError, match=r"split it into several groups or keys, so it is not one token tensor"):
        TokenCarving().attach(stage)


def test_a_dense_grid_state_is_refused_at_its_first_step_when_carving():
    stage = GridStage()
    x = torch.ones(1, 2, 4, 4, 4)
    with TokenCarving(ratio=0.25).applied(stage):
        with pytest.raises(TypeError, match=r"^token_carving: cannot carve the state of GridStage: expected a \[B, N, C\] token tensor"):
            stage.velocity(x, 0.0, None, 0)
    assert stage.calls == 0
    with EasyCacheSkip().applied(stage):  # whole-step skipping needs no tokens: any tensor will do
        assert torch.equal(stage.velocity(x, 0.0, None, 0), -x)


def test_a_state_that_is_no_tensor_names_the_stage():
    stage = GridStage()
    with EasyCacheSkip().applied(stage):
        with pytest.raises(TypeError, match=r"^easycache: cannot carve the state of GridStage: expected a torch.Tensor"):
            stage.velocity([1.0, 2.0], 0.0, None, 0)
    assert stage.calls == 0


# ---------------------------------------------------------------- aggregation


@pytest.mark.parametrize("value", [10**12, 4097, 7, 256.0])
def test_the_mask_size_is_bounded(value):
    with pytest.raises(ArgumentError, match=r"^mask_size: expected an integer >= 8 and <= 4096"):
        SpectralAggregation(mask_size=value)
    assert SpectralAggregation(mask_size=4096).config.mask_size == 4096


# ---------------------------------------------------------------- numbers of other types


def test_numpy_scalars_and_0d_tensors_are_read_as_the_numbers_they_hold():
    carving = TokenCarving(ratio=np.float32(0.25), warmup=np.int64(2), resolution=torch.tensor(16), gamma=torch.tensor(0.5))
    assert carving.config.ratio == 0.25 and type(carving.config.ratio) is float
    assert carving.config.warmup == 2 and type(carving.config.warmup) is int
    assert carving.config.resolution == 16 and type(carving.config.resolution) is int
    assert carving.config.gamma == 0.5 and type(carving.config.gamma) is float
    config = SpectralAggregationConfig(mask_size=torch.tensor(128), factor=np.float64(1.5))
    assert (config.mask_size, config.factor) == (128, 1.5)
    assert TokenCarvingConfig(seed=torch.tensor(3)).seed == 3


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("ratio", torch.tensor([0.25])),
        ("ratio", torch.tensor([0.25, 0.5])),
        ("ratio", torch.tensor(True)),
        ("ratio", np.bool_(True)),
        ("warmup", torch.tensor(2.0)),
        ("warmup", np.float64(2.0)),
        ("ratio", torch.tensor(float("nan"))),
        ("ratio", torch.tensor(1.0)),
    ],
)
def test_tensors_of_several_values_bools_floats_for_counts_and_out_of_range_values_are_refused(knob, value):
    with pytest.raises(ArgumentError, match=rf"^{knob}: expected"):
        TokenCarving(**{knob: value})
