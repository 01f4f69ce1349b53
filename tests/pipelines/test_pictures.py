"""The pictures a job writes carry their numbers: preview.png and turntable.png captions, a GIF big enough to see."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from accel3d.jobs.configs import config_dir
from accel3d.jobs.run import run_job
from accel3d.pipelines.scene_images import save_gif, save_turntable

TINY = ["pipeline.resolution=32", "pipeline.num_points=256", "pipeline.progress=false", "stack.accelerators.hierarchical.min_resolution=8"]


def test_preview_captions_are_the_recorded_time_speedup_and_fidelity(tmp_path, tiny_weights, monkeypatch):
    import accel3d.pipelines.vecset_shape as vecset_shape

    seen = {}
    real = vecset_shape.render_preview

    def spy(meshes, path, captions=None, **kw):
        seen.update(captions or {})
        return real(meshes, path, captions=captions, **kw)

    monkeypatch.setattr(vecset_shape, "render_preview", spy)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("run", overrides=[f"pipeline.weights={tiny_weights}", *TINY, "repeats=1", "export_formats=[]"])
    record = run_job(cfg, tmp_path)
    base, hier = record["runs"]["baseline"], record["runs"]["hierarchical"]
    assert seen["unaccelerated"] == f"decode {base['timings']['decode_s']['median']:.2f} s"
    parts = seen["stack: hierarchical"].split(" · ")
    assert parts[0] == f"decode {hier['timings']['decode_s']['median']:.2f} s ({hier['speedups']['decode_s']:.2f}x)"
    assert parts[1:4] == [
        f"iou {hier['fidelity']['iou']:.4g}",
        f"chamfer {hier['fidelity']['chamfer']:.4g}",
        f"fscore {hier['fidelity']['fscore']:.4g}",
    ]
    assert parts[4].startswith("hierarchical query_fraction ")
    assert (tmp_path / "preview.png").stat().st_size > 0


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
