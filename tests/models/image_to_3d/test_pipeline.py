"""The ``image_to_3d`` pipeline on a tiny random-init checkpoint: the job layer writes its mesh, record and
preview; runs are bit-identical; fidelity is perfect against itself and measures what an accelerator changed;
stages and token groups are exposed; an identity wrapper changes nothing; every bad input is named."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import trimesh
from hydra import compose, initialize_config_dir
from PIL import Image

from accel3d.core import BaseAccelerator
from accel3d.core.hooks import PatchSet
from accel3d.core.stack import Stack
from accel3d.geometry.render import Camera, crop_intrinsics
from accel3d.jobs.compare import compare
from accel3d.jobs.configs import config_dir
from accel3d.jobs.run import prepare_job, run_job
from accel3d.models.image_to_3d import FlowSampler
from accel3d.models.image_to_3d.fidelity import slat_velocity_error, ss_velocity_errors
from accel3d.models.image_to_3d.inputs import load_image_to_3d_inputs, render_mesh_inputs
from accel3d.models.image_to_3d.pipeline import ImageTo3DPipeline
from accel3d.models.image_to_3d.stages import FlowSpace, rotation_angle_degrees

FAST = {"ss_steps": 3, "slat_steps": 3, "progress": False}
FAST_OVERRIDES = ["pipeline.ss_steps=3", "pipeline.slat_steps=3", "pipeline.progress=false"]
PERFECT = {
    "ss_vel_error": 0.0,
    "ss_vel_error_shape": 0.0,
    "ss_vel_error_layout": 0.0,
    "slat_vel_error": 0.0,
    "occupancy_iou": 1.0,
    "rotation_deg": 0.0,
    "translation_error": 0.0,
    "scale_ratio": 1.0,
    "chamfer": 0.0,
    "fscore": 1.0,
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("run", overrides=["pipeline=image_to_3d", "stack=none", *overrides])


def _pipe(weights, **knobs) -> ImageTo3DPipeline:
    return ImageTo3DPipeline(weights=str(weights), **{**FAST, **knobs})


def _same(a, b) -> bool:
    return (
        np.array_equal(a.mesh.vertices, b.mesh.vertices)
        and np.array_equal(a.mesh.faces, b.mesh.faces)
        and torch.equal(a.occupancy, b.occupancy)
        and torch.equal(a.tokens, b.tokens)
        and all(torch.equal(x[k], y[k]) for x, y in zip(a.ss_velocities, b.ss_velocities) for k in x)
        and all(torch.equal(x, y) for x, y in zip(a.slat_velocities, b.slat_velocities))
        and len(a.ss_velocities) == len(b.ss_velocities)
        and len(a.slat_velocities) == len(b.slat_velocities)
    )


def _save_rgba(path, rgb: torch.Tensor, alpha: np.ndarray):
    pixels = (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(np.dstack([pixels, (alpha * 255).astype(np.uint8)]), "RGBA").save(path)
    return path


# ---------------------------------------------------------------------- the job layer
def test_default_shaped_run_writes_mesh_record_and_preview(tmp_path, tiny_image_to_3d_weights, capsys):
    cfg = _compose(f"pipeline.weights={tiny_image_to_3d_weights}", *FAST_OVERRIDES, "repeats=1", "threads=1", "export_formats=[glb]")
    record = run_job(cfg, tmp_path)
    assert record["status"] == "completed" and record["pipeline"] == "image_to_3d" and record["stack"] == "none"
    assert record["headline"] == {"timing": "total_s", "fidelity_metric": "fscore", "higher_is_better": True}
    assert record["input"] == "the bundled bunny rendered at the default pose (128 px)"
    base = record["runs"]["baseline"]
    assert {"ss_s", "structure_s", "slat_s", "decode_s", "total_s"} <= set(base["timings"])
    parts = sum(base["timings"][k]["median"] for k in ("ss_s", "structure_s", "slat_s", "decode_s"))
    assert parts <= base["timings"]["total_s"]["median"]
    mesh = trimesh.load(tmp_path / "mesh.glb", force="mesh", process=False)
    assert len(mesh.faces) == base["figures"]["faces"] > 0
    assert base["figures"]["tokens"] == base["figures"]["occupied"] > 0
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    layout = json.loads((tmp_path / "layout.json").read_text())
    assert np.allclose(np.asarray(layout["rotation"]) @ np.asarray(layout["rotation"]).T, np.eye(3), atol=1e-6)
    assert json.loads((tmp_path / "record.json").read_text())["status"] == "completed"
    assert "ss speedup" in capsys.readouterr().out  # the table shows the stage timings


def test_preview_shows_both_runs_with_the_job_captions(tmp_path, tiny_image_to_3d_weights, monkeypatch):
    import accel3d.models.image_to_3d.pipeline as module

    seen = {}
    real = module.save_preview

    def spy(image, mask, meshes, path, captions=None, **kw):
        seen.update(titles=list(meshes), captions=captions, image=tuple(image.shape), mask=tuple(mask.shape))
        return real(image, mask, meshes, path, captions=captions, **kw)

    monkeypatch.setattr(module, "save_preview", spy)
    pipe = _pipe(tiny_image_to_3d_weights)
    result = pipe.run(pipe.load_inputs())
    captions = {"baseline": "total 1.00 s", "accelerated": "total 0.50 s (2.00x) · fscore 1"}
    files = pipe.write_artefacts(result, result, tmp_path, {"export_formats": ["glb", "ply"], "stack": "x", "captions": captions})
    assert seen["titles"] == ["unaccelerated", "stack: x"] and seen["image"] == (3, 16, 16) and seen["mask"] == (16, 16)
    assert seen["captions"] == {"unaccelerated": "total 1.00 s", "stack: x": "total 0.50 s (2.00x) · fscore 1"}
    assert files == {
        "mesh_glb": "mesh.glb",
        "mesh_ply": "mesh.ply",
        "mesh_baseline": "mesh_baseline.glb",
        "layout": "layout.json",
        "preview": "preview.png",
    }


# ---------------------------------------------------------------------- determinism and fidelity
def test_same_seed_is_bit_identical_and_perfect_against_itself(tiny_image_to_3d_weights):
    pipe = _pipe(tiny_image_to_3d_weights)
    inputs = pipe.load_inputs()
    first, second = pipe.run(inputs), pipe.run(inputs)
    assert _same(first, second)
    assert len(first.ss_velocities) == len(first.slat_velocities) == 3
    assert pipe.fidelity(first, second) == PERFECT
    other = _pipe(tiny_image_to_3d_weights, seed=1).run(inputs)
    assert not np.array_equal(first.tokens.numpy(), other.tokens.numpy())


class _ScaleVelocity(BaseAccelerator):
    """A test accelerator: the SLaT sampler's velocity times (1 + eps)."""

    name, stage = "scale", "slat_sampler"

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def _attach(self, sampler):
        self.patches.wrap(sampler, "velocity", lambda velocity: lambda *a, **k: velocity(*a, **k) * (1 + self.eps))


def test_fidelity_measures_the_velocity_change_an_accelerator_makes(tiny_image_to_3d_weights):
    pipe = _pipe(tiny_image_to_3d_weights, slat_steps=1)  # one step: the error is exactly eps
    comparison = compare(pipe, Stack([_ScaleVelocity(0.01)], name="scale"), pipe.load_inputs(), repeats=1, warmup=False, log=lambda s: None)
    fidelity = comparison.rows["scale"]["fidelity"]
    assert fidelity["slat_vel_error"] == pytest.approx(0.01, rel=1e-4)
    assert fidelity["ss_vel_error"] == 0.0 and fidelity["occupancy_iou"] == 1.0 and fidelity["rotation_deg"] == 0.0
    assert 0.0 <= fidelity["fscore"] <= 1.0 and set(fidelity) == set(PERFECT)
    assert not pipe.stage("slat_sampler").__dict__.get("velocity")  # detached again


def test_velocity_errors_match_their_definitions():
    groups = {"shape": ("shape",), "layout": ("rotation", "translation")}
    base = [{"shape": torch.tensor([3.0, 4.0]), "rotation": torch.tensor([1.0]), "translation": torch.tensor([0.0])}]
    other = [{"shape": torch.tensor([3.0, 4.0]), "rotation": torch.tensor([2.0]), "translation": torch.tensor([0.0])}]
    errors = ss_velocity_errors(base, other, groups)
    assert errors["shape"] == 0.0 and errors["layout"] == 1.0 and errors["all"] == pytest.approx(1 / math.sqrt(26))
    # SLaT tokens matched by voxel; a voxel one run lacks has a zero velocity there
    coords_b, coords_o = torch.tensor([[0, 0, 0], [0, 0, 1]]), torch.tensor([[0, 0, 1], [0, 0, 2]])
    vb, vo = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [5.0, 0.0]])
    assert slat_velocity_error([vb], coords_b, [vo], coords_o, 4) == pytest.approx(math.sqrt(13))
    assert slat_velocity_error([vb, vb], coords_b, [vb, 2 * vb], coords_b, 4) == pytest.approx(0.5)
    assert slat_velocity_error([], coords_b[:0], [], coords_b[:0], 4) == 0.0
    quarter = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    assert rotation_angle_degrees(torch.eye(3), quarter) == pytest.approx(90.0)
    assert rotation_angle_degrees(quarter, quarter) == 0.0


def test_flow_space_reads_the_checkpoint_normalization():
    identity = FlowSpace({}, 4, 4)
    x = {"rotation": torch.tensor([[[1.0, 0, 0, 0, 1, 0]]]), "translation": torch.zeros(1, 1, 3), "scale": torch.zeros(1, 1, 3)}
    assert torch.equal(identity.layout(x).scale, torch.ones(3, dtype=torch.float64))  # log scale 0 -> 1
    spec = {"normalization": {"translation": {"mean": [0, 0, 3], "std": 2.0}, "scale": {"log": False, "mean": 0.8}}}
    layout = FlowSpace(spec, 4, 4).layout({**x, "translation": torch.ones(1, 1, 3)})
    assert layout.translation.tolist() == [2.0, 2.0, 5.0] and layout.scale.tolist() == pytest.approx([0.8] * 3)
    with pytest.raises(ValueError, match=r"^weights: metadata normalization\['scale'\]\['std'\] must be positive"):
        FlowSpace({"normalization": {"scale": {"std": 0}}}, 4, 4)
    with pytest.raises(ValueError, match=r"^weights: metadata normalization has unknown entries \['shift'\]"):
        FlowSpace({"normalization": {"shift": {}}}, 4, 4)


def test_crop_relative_translations_map_back_to_the_camera_frame():
    """The trainer's convention: (a, b, log d) of the object origin in the crop, mapped back with the crop's intrinsics."""
    inputs = render_mesh_inputs(None, image_size=32, render_size=96)
    K, half = inputs.crop_intrinsics, 16.0
    assert np.allclose(K, crop_intrinsics(Camera(size=96), inputs.box, 32))
    x, y, z = 0.2, -0.1, 3.5
    a, b = (K[0, 0] * x / z + K[0, 2] - half) / half, (K[1, 1] * y / z + K[1, 2] - half) / half
    token = torch.tensor([a, b, math.log(z * half / K[0, 0])])
    metadata = {"conventions": {"translation": "(a, b, log d), standardised: ..."}, "normalization": {"translation": {"std": 2.0}}}
    space = FlowSpace(metadata, 4, 4)
    assert space.translation_frame == "crop"
    x6 = {"rotation": torch.tensor([[[1.0, 0, 0, 0, 1, 0]]]), "translation": (token / 2)[None, None], "scale": torch.zeros(1, 1, 3)}
    assert space.layout(x6, K, 32).translation.tolist() == pytest.approx([x, y, z])
    with pytest.raises(ValueError, match="^inputs: this checkpoint predicts crop-relative translations"):
        space.layout(x6)


def test_the_checkpoints_camera_is_the_default_render_camera(tmp_path, tiny_image_to_3d_models):
    tiny_image_to_3d_models.save(tmp_path / "cam.pt", metadata={"camera": {"size": 48, "fov_degrees": 40.0}})
    pipe = _pipe(tmp_path / "cam.pt")
    assert (pipe.render_size, pipe.fov_degrees) == (48, 40.0)
    inputs = pipe.load_inputs()
    assert inputs.source.endswith("(48 px)") and inputs.intrinsics[0, 2] == 24.0
    assert _pipe(tmp_path / "cam.pt", render_size=64, fov_degrees=50.0).render_size == 64


# ---------------------------------------------------------------------- stages
def test_stages_and_token_groups_are_exposed(tiny_image_to_3d_weights):
    pipe = _pipe(tiny_image_to_3d_weights)
    assert tuple(pipe.stages) == pipe.stage_names == ("ss_sampler", "slat_sampler", "sparse_structure", "mesh_decoder")
    assert isinstance(pipe.stage("ss_sampler"), FlowSampler) and isinstance(pipe.stage("slat_sampler"), FlowSampler)
    assert pipe.stage("ss_sampler").steps == 3 and pipe.stage("ss_sampler").cfg_strength == 7.0
    assert pipe.token_groups == {"shape": ("shape",), "layout": ("rotation", "translation", "scale")}
    assert pipe.stage_token_groups["slat_sampler"] == {"slat": ()}
    assert callable(pipe.stage("sparse_structure").coords) and callable(pipe.stage("mesh_decoder").decode)
    assert pipe.stage("mesh_decoder").decoder is pipe.models.slat_decoder


def test_identity_wrappers_on_every_stage_give_bit_identical_output(tiny_image_to_3d_weights):
    pipe = _pipe(tiny_image_to_3d_weights)
    inputs = pipe.load_inputs()
    plain = pipe.run(inputs)
    calls = {}

    def identity(key):
        def wrapper(original):
            def call(*args, **kwargs):
                calls[key] = calls.get(key, 0) + 1
                return original(*args, **kwargs)

            return call

        return wrapper

    patches = PatchSet("identity")
    methods = {"ss_sampler": "velocity", "slat_sampler": "velocity", "sparse_structure": "coords", "mesh_decoder": "decode"}
    for stage, method in methods.items():
        patches.wrap(pipe.stage(stage), method, identity(stage))
    try:
        wrapped = pipe.run(inputs)
    finally:
        patches.restore()
    assert calls == {"ss_sampler": 3, "slat_sampler": 3, "sparse_structure": 1, "mesh_decoder": 1}
    assert _same(plain, wrapped)


def test_warmup_overrides_are_small_and_restored(tiny_image_to_3d_weights):
    pipe = _pipe(tiny_image_to_3d_weights)
    assert pipe.warmup_overrides() == {"ss_steps": 2, "slat_steps": 2}
    result = pipe.run(pipe.load_inputs(), **pipe.warmup_overrides())
    assert len(result.ss_velocities) == len(result.slat_velocities) == 2
    assert pipe.ss_sampler.steps == pipe.slat_sampler.steps == 3
    with pytest.raises(ValueError, match="^ss_steps"):
        pipe.run(pipe.load_inputs(), ss_steps=0)
    assert pipe.ss_sampler.steps == 3


# ---------------------------------------------------------------------- inputs
def test_an_rgba_image_and_an_image_with_a_mask_file_give_the_same_crop(tmp_path, tiny_image_to_3d_weights):
    from accel3d.geometry.meshes import BUNDLED_MESH, load_mesh, normalize_mesh
    from accel3d.geometry.render import Camera, default_pose, render

    view = render(normalize_mesh(load_mesh(BUNDLED_MESH)), default_pose(), Camera(size=48))
    alpha = view.mask.numpy().astype(float)
    rgba = _save_rgba(tmp_path / "bunny.png", view.rgb, alpha)
    Image.fromarray((view.rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "bunny.jpg", quality=100)
    Image.fromarray((alpha * 255).astype(np.uint8), "L").save(tmp_path / "mask.png")
    a = load_image_to_3d_inputs(rgba, image_size=16)
    b = load_image_to_3d_inputs(tmp_path / "bunny.jpg", image_size=16, mask=tmp_path / "mask.png")
    assert torch.equal(a.mask, b.mask) and (a.image - b.image).abs().max() < 0.05  # JPEG is lossy
    result = _pipe(tiny_image_to_3d_weights, input=str(rgba)).run(a)
    assert len(result.mesh.faces) > 0


def test_an_empty_mask_is_refused(tmp_path):
    path = _save_rgba(tmp_path / "empty.png", torch.rand(3, 20, 20), np.zeros((20, 20)))
    with pytest.raises(ValueError, match=r"^mask: the alpha channel of '.*empty\.png' is empty"):
        load_image_to_3d_inputs(path, image_size=16)


def test_mask_and_image_of_different_sizes_are_refused(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    Image.fromarray(np.full((20, 20), 255, dtype=np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(ValueError, match=r"^mask: '.*mask\.png' is 20x20 pixels but the image '.*image\.png' is 30x20"):
        load_image_to_3d_inputs(tmp_path / "image.png", image_size=16, mask=tmp_path / "mask.png")


def test_an_image_with_no_object_in_the_mask_is_refused(tmp_path):
    alpha = np.zeros((20, 20))
    alpha[5:15, 5:15] = 1.0
    path = _save_rgba(tmp_path / "flat.png", torch.full((3, 20, 20), 0.5), alpha)
    with pytest.raises(ValueError, match=r"^image: '.*flat\.png' shows no object inside the mask: all 100 masked pixels"):
        load_image_to_3d_inputs(path, image_size=16)


def test_an_image_without_alpha_needs_a_mask_and_a_mesh_takes_none(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"^mask: '.*rgb\.png' has no alpha channel; pass mask="):
        load_image_to_3d_inputs(tmp_path / "rgb.png", image_size=16)
    with pytest.raises(ValueError, match="^mask: a mask goes with an image input"):
        load_image_to_3d_inputs(None, image_size=16, mask=tmp_path / "rgb.png")
    with pytest.raises(FileNotFoundError, match="^mask: no file at"):
        load_image_to_3d_inputs(tmp_path / "rgb.png", image_size=16, mask=tmp_path / "missing.png")


def test_a_mesh_file_that_cannot_be_read_is_refused(tmp_path):
    (tmp_path / "broken.ply").write_text("ply\nthis is not a mesh\n")
    with pytest.raises(ValueError, match=r"^input: could not read '.*broken\.ply' as a triangle mesh"):
        render_mesh_inputs(tmp_path / "broken.ply", image_size=16)
    with pytest.raises(FileNotFoundError, match="^input: no file at"):
        render_mesh_inputs(tmp_path / "missing.obj", image_size=16)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"^input: could not read '.*broken\.png' as an image"):
        load_image_to_3d_inputs(tmp_path / "broken.png", image_size=16)


# ---------------------------------------------------------------------- structures
def test_zero_occupied_voxels_give_an_empty_mesh_and_a_warning(tmp_path, empty_structure_weights, capsys):
    cfg = _compose(
        f"pipeline.weights={empty_structure_weights}", *FAST_OVERRIDES, "repeats=1", "warmup=false", "threads=1", "export_formats=[glb]"
    )
    with pytest.warns(UserWarning, match="zero occupied voxels"):
        record = run_job(cfg, tmp_path)
    base = record["runs"]["baseline"]
    counts = {"ss_model_calls": 2 * 3, "ss_tokens": 2 * 3 * (4**3 + 3), "slat_model_calls": 0, "slat_tokens": 0}  # CFG: 2 passes
    assert base["figures"] == {"occupied": 0, "tokens": 0, "faces": 0, "mesh": "empty", **counts}
    assert "empty" in capsys.readouterr().out  # the table says so
    assert not (tmp_path / "mesh.glb").exists() and (tmp_path / "preview.png").exists()
    pipe = _pipe(empty_structure_weights)
    with pytest.warns(UserWarning, match="zero occupied voxels"):
        result = pipe.run(pipe.load_inputs())
    assert result.slat_velocities == [] and result.notes == ["empty structure"]
    assert pipe.fidelity(result, result) == PERFECT  # empty against empty: the same output


def test_more_voxels_than_max_tokens_are_downsampled_with_a_warning(tiny_image_to_3d_weights):
    pipe = _pipe(tiny_image_to_3d_weights, max_tokens=64)
    with pytest.warns(UserWarning, match=r"sparse_structure: \d+ occupied voxels exceed max_tokens=64; .* downsampled by 2"):
        result = pipe.run(pipe.load_inputs())
    assert result.structure.occupied > 64 and 0 < result.structure.tokens <= 64 and result.structure.factor == 2.0
    assert pipe.result_figures(result)["shrunk by"] == 2.0
    assert result.slat_velocities[0].shape == (result.structure.tokens, 4)
    full = _pipe(tiny_image_to_3d_weights).run(pipe.load_inputs())
    assert full.structure.tokens == full.structure.occupied == result.structure.occupied


# ---------------------------------------------------------------------- weights and knobs
def test_a_checkpoint_of_the_wrong_architecture_names_weights(tmp_path, tiny_weights, tiny_image_to_3d_models):
    with pytest.raises(ValueError, match=r"^weights: '.*tiny_vae\.pt' is not an accel3d image-to-3D checkpoint"):
        ImageTo3DPipeline(weights=str(tiny_weights))
    state = tiny_image_to_3d_models.state_dict()
    state.pop("ss_vae.decoder_out.2.bias")
    payload = torch.load(_saved(tiny_image_to_3d_models, tmp_path), weights_only=True)
    torch.save({**payload, "state_dict": state}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"^weights: .* does not match the image-to-3D architecture .*missing keys \(1\)"):
        ImageTo3DPipeline(weights=str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match=r"weights: '.*tiny_vae\.pt' is not an accel3d image-to-3D checkpoint"):
        prepare_job(_compose(f"pipeline.weights={tiny_weights}"))


def _saved(models, tmp_path):
    models.save(tmp_path / "good.pt")
    return tmp_path / "good.pt"


def test_missing_shipped_weights_say_how_to_get_them(tmp_path, monkeypatch):
    import accel3d.models.image_to_3d.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "DEFAULT_WEIGHTS", tmp_path / "image_to_3d.pt")
    with pytest.raises(FileNotFoundError, match=r"^weights: no weights file .*not installed\); train them with scripts/train_image"):
        ImageTo3DPipeline(weights=None)


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("ss_steps", 0, "^ss_steps: expected an integer >= 1"),
        ("slat_cfg", -1.0, "^slat_cfg: expected a finite number >= 0"),
        ("ss_rescale", 0.0, "^ss_rescale: expected a finite number > 0"),
        ("max_tokens", 0, "^max_tokens: expected an integer >= 1"),
        ("ss_cfg_interval", (0.6, 0.2), "^ss_cfg_interval"),
        ("fscore_threshold", 0.0, "^fscore_threshold"),
        ("mask", "", "^mask: expected null"),
        ("progress", "yes", "^progress"),
    ],
)
def test_knobs_are_checked_before_the_checkpoint_is_read(knob, value, message):
    with pytest.raises(ValueError, match=message):
        ImageTo3DPipeline(weights="/nonexistent/weights.pt", **{knob: value})


def test_accel3d_list_shows_the_pipeline_and_its_stages(capsys):
    from accel3d.cli import main

    main(["list"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("image_to_3d"))
    assert "ImageTo3DPipeline; stages: ss_sampler, slat_sampler, sparse_structure, mesh_decoder" in line
