"""The pictures of an SDS job carry their numbers: turntable.png captions, a GIF big enough to see."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from accel3d.models.sds.images import save_gif, save_turntable


def _frames(n=3, size=40, seed=0):
    return torch.randn((n, 4, size, size), generator=torch.Generator().manual_seed(seed))


def test_gif_is_enlarged_to_at_least_256_pixels_and_shows_both_runs(tmp_path):
    path = save_gif(_frames(), tmp_path / "t.gif", beside=_frames(seed=1), labels=("unaccelerated", "stack: x"))
    with Image.open(path) as gif:
        assert gif.n_frames == 3
        width, height = gif.size
    scale = 7  # ceil(256 / 40): a whole factor, so voxels stay square
    assert (width, height) == (2 * 40 * scale, 40 * scale + 22)
    single = save_gif(_frames(size=300), tmp_path / "big.gif")
    with Image.open(single) as gif:
        assert gif.size == (300, 300)  # already large enough: kept as rendered


def test_gif_halves_must_match(tmp_path):
    with pytest.raises(ValueError, match="^beside: expected frames of shape"):
        save_gif(_frames(), tmp_path / "t.gif", beside=_frames(n=2))


def test_turntable_needs_one_label_per_row(tmp_path):
    save_turntable(_frames(n=4), tmp_path / "ok.png", columns=2, row_labels=["unaccelerated · total 1 s", "stack: x"])
    with pytest.raises(ValueError, match="^row_labels: expected 2 labels"):
        save_turntable(_frames(n=4), tmp_path / "bad.png", columns=2, row_labels=["only one"])
    assert not (tmp_path / "bad.png").exists()
