"""Bad and unusual use of the core: patches detached in any order, accelerators that must not stack,
non-finite knobs and data, camera poses, and the JSON writer."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from accel3d.core import BaseAccelerator, PatchConflictError, PatchSet, Pipeline, Stack, camera_pose, detach_all, patch_owners
from accel3d.core.io import write_json
from accel3d.core.validate import ArgumentError, check_bool, check_float, check_int, check_pair
from accel3d.decoding import AdaptiveKVSelection, DenseVolumeDecoder, HierarchicalDecoding
from accel3d.models.vecset.vae import VecsetVAE, VecsetVAEConfig


class Affine(BaseAccelerator):
    """A composable toy: forward(x) -> forward(x) * factor + offset."""

    name, stage, composable = "affine", "denoiser", True

    def __init__(self, factor, offset=0.0, attr="forward"):
        super().__init__()
        self.factor, self.offset, self.attr = factor, offset, attr

    def _attach(self, target):
        self.patches.wrap(target, self.attr, lambda f: lambda *a: f(*a) * self.factor + self.offset)


class EncoderAffine(Affine):
    name, stage = "encoder_affine", "encoder"


class Exclusive(Affine):
    name, composable = "exclusive", False


def _net():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 4)


@pytest.mark.parametrize("count", [2, 3])
def test_composable_patches_detach_in_every_order(count):
    x = torch.randn(5, 4)
    factors = [2.0, 3.0, 5.0][:count]
    for order in itertools.permutations(range(count)):
        net = _net()
        plain = net(x)
        accs = [Affine(f, offset=i) for i, f in enumerate(factors)]
        for acc in accs:
            acc.attach(net)
        remaining = list(range(count))
        for i in order:
            accs[i].detach()
            remaining.remove(i)
            expected = plain
            for j in remaining:  # the remaining patches still apply, in attach order
                expected = expected * factors[j] + j
            assert torch.allclose(net(x), expected), (order, remaining)
            assert not accs[i].attached and all(accs[j].attached for j in remaining)
        assert torch.equal(net(x), plain), order
        assert "forward" not in vars(net) and patch_owners(net) == []


def test_a_second_exclusive_patch_is_refused_and_the_first_keeps_working():
    net, x = _net(), torch.randn(3, 4)
    plain = net(x)
    first = Exclusive(2.0)
    first.attach(net)
    for second in (Exclusive(3.0), Affine(3.0)):
        with pytest.raises(PatchConflictError, match=r"Linear\.forward is already patched by exclusive"):
            second.attach(net)
        assert not second.attached
    assert torch.equal(net(x), plain * 2.0)
    first.detach()
    assert torch.equal(net(x), plain)


def test_an_exclusive_patch_on_top_of_a_composable_one_is_refused():
    net = _net()
    Affine(2.0).attach(net)
    with pytest.raises(PatchConflictError, match="already patched by affine"):
        Exclusive(3.0).attach(net)
    assert detach_all(net) == 1 and "forward" not in vars(net)


def test_detach_twice_and_detach_unattached_are_harmless():
    net, x = _net(), torch.randn(3, 4)
    plain = net(x)
    acc = Affine(2.0)
    acc.detach()
    acc.attach(net)
    acc.detach()
    acc.detach()
    assert torch.equal(net(x), plain)


def test_patch_set_restores_parameters_and_children_in_any_order():
    net = _net()
    weight, bias = net.weight, net.bias
    a, b = PatchSet("a"), PatchSet("b")
    a.set(net, "weight", torch.nn.Parameter(torch.zeros(4, 4)))
    b.set(net, "bias", torch.nn.Parameter(torch.ones(4)))
    a.restore()
    assert net.weight is weight and net.bias is not bias
    b.restore()
    assert net.bias is bias and list(net.state_dict()) == ["weight", "bias"]


def test_replacement_made_outside_accel3d_while_patched_is_reported():
    net = _net()
    acc = Affine(2.0)
    acc.attach(net)
    net.forward = lambda x: x
    with pytest.warns(UserWarning, match="replaced outside accel3d"):
        acc.detach()
    assert "forward" not in vars(net)


# ---------------------------------------------------------------- stacks of real accelerators on one pipeline


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VecsetVAE(VecsetVAEConfig(num_latents=16, embed_dim=8, width=32, heads=2, num_decoder_layers=1)).eval()


class ToyShapePipeline(Pipeline):
    name = "toy_shape"

    def __init__(self, vae):
        self.vae = vae
        self.decoder = DenseVolumeDecoder(progress=False)
        self.stages = {"volume_decoder": self.decoder, "geo_decoder": vae.geo_decoder, "encoder": vae}
        gen = torch.Generator().manual_seed(3)
        self.points = torch.rand(1, 64, 3, generator=gen) - 0.5
        self.normals = torch.nn.functional.normalize(torch.randn(1, 64, 3, generator=gen), dim=-1)

    def run(self):
        latents = self.vae.encode(self.points, self.normals)
        return self.decoder.decode(self.vae.field(latents), 16).values


def _stacks():
    return [
        Stack([HierarchicalDecoding(min_resolution=8, band=0.5, progress=False)], name="h"),
        Stack([AdaptiveKVSelection(mode="mean", topk=4, cells=2)], name="kv"),
        Stack([EncoderAffine(1.5, attr="encode")], name="enc"),  # the VAE's encode: a third object
    ]


@pytest.mark.parametrize("count", [2, 3])
def test_stacks_on_one_pipeline_remove_in_every_order(vae, count):
    pipe = ToyShapePipeline(vae)
    plain = pipe.run()
    for attach_order in itertools.permutations(range(count)):
        for detach_order in itertools.permutations(range(count)):
            stacks = _stacks()[:count]
            for i in attach_order:
                stacks[i].attach(pipe)
            for i in detach_order:
                stacks[i].detach()
            assert torch.equal(pipe.run(), plain), (attach_order, detach_order)
            assert patch_owners(pipe) == []


def test_two_stacks_with_the_same_accelerator_conflict_and_leave_the_first_applied(vae):
    pipe = ToyShapePipeline(vae)
    plain = pipe.run()
    first = Stack([HierarchicalDecoding(min_resolution=8, progress=False)], name="first")
    second = Stack([AdaptiveKVSelection(mode="mean", topk=4), HierarchicalDecoding(min_resolution=8, progress=False)], name="second")
    first.attach(pipe)
    with pytest.raises(PatchConflictError, match="hierarchical: DenseVolumeDecoder.decode is already patched by hierarchical"):
        second.attach(pipe)
    assert not second.attached and first.attached  # the second's adaptive_kv was rolled back
    assert [type(o).__name__ for o in patch_owners(pipe)] == ["HierarchicalDecoding"]
    first.detach()
    assert torch.equal(pipe.run(), plain)


def test_detach_all_on_a_pipeline_detaches_every_stage(vae):
    pipe = ToyShapePipeline(vae)
    plain = pipe.run()
    stacks = _stacks()
    for s in stacks:
        s.attach(pipe)
    assert detach_all(pipe) == 3
    assert not any(s.attached for s in stacks)
    assert torch.equal(pipe.run(), plain)
    stacks[0].attach(pipe)  # a stack detached behind its back can be applied again
    stacks[0].detach()


# ---------------------------------------------------------------- argument checks


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "0.5", True, None, [1.0]])
def test_check_float_refuses_non_numbers_and_non_finite(value):
    with pytest.raises((TypeError, ValueError), match="^band: expected a finite number"):
        check_float("band", value, low=0.0)


def test_check_float_bounds():
    assert check_float("p", 1.0, low=0.0, high=1.0) == 1.0
    with pytest.raises(ValueError, match=r"p: expected a finite number > 0 and <= 1, got 0"):
        check_float("p", 0, low=0.0, low_open=True, high=1.0)
    assert check_float("cell", math.inf, low=0.0, allow_inf=True) == math.inf
    assert check_float("x", None, allow_none=True) is None


@pytest.mark.parametrize("value", [2.0, "3", True, float("nan"), 0, -1])
def test_check_int_refuses_floats_strings_bools_and_out_of_range(value):
    with pytest.raises((TypeError, ValueError), match="^repeats: expected an integer >= 1"):
        check_int("repeats", value, low=1)


@pytest.mark.parametrize(
    ("value", "number"),
    [(np.float32(0.5), 0.5), (np.float64(0.25), 0.25), (np.int64(3), 3.0), (np.array(0.75), 0.75)]
    + [(torch.tensor(0.5), 0.5), (torch.tensor(0.5, dtype=torch.float64), 0.5), (torch.tensor(3), 3.0)],
)
def test_check_float_reads_numpy_scalars_and_0d_tensors_as_their_number(value, number):
    checked = check_float("band", value, low=0.0)
    assert checked == number and type(checked) is float


@pytest.mark.parametrize(
    "value",
    [np.bool_(True), np.array(True), torch.tensor(True), torch.tensor([0.5]), torch.tensor([0.5, 0.6]), np.array([0.5])]
    + [torch.tensor(float("nan")), np.float32("inf"), torch.tensor(1 + 2j), torch.empty(0)],
)
def test_check_float_refuses_bool_multi_value_and_non_finite_tensors_and_arrays(value):
    with pytest.raises(ArgumentError, match="^band: expected a finite number >= 0, got"):
        check_float("band", value, low=0.0)


def test_check_float_bounds_and_messages_hold_for_0d_tensors():
    with pytest.raises(ArgumentError, match="^band: expected a finite number >= 0, got -1$"):
        check_float("band", torch.tensor(-1.0), low=0.0)
    with pytest.raises(ArgumentError, match=r"^band: expected a finite number, got tensor\(\[1\., 2\.\]\) \(Tensor\)$"):
        check_float("band", torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("value", [np.int64(3), np.uint8(3), np.array(3), torch.tensor(3), torch.tensor(3, dtype=torch.int16)])
def test_check_int_reads_numpy_integers_and_0d_integer_tensors_as_ints(value):
    checked = check_int("repeats", value, low=1)
    assert checked == 3 and type(checked) is int


@pytest.mark.parametrize(
    "value",
    [np.bool_(True), torch.tensor(True), torch.tensor(2.0), np.float64(2.0), np.array(2.0), torch.tensor([2]), torch.tensor([2, 3])]
    + [torch.tensor(0), np.int64(-1)],
)
def test_check_int_refuses_bool_float_multi_value_and_out_of_range_tensors(value):
    with pytest.raises(ArgumentError, match="^repeats: expected an integer >= 1, got"):
        check_int("repeats", value, low=1)


@pytest.mark.parametrize("value", ["false", "true", 0, 1, "no"])
def test_check_bool_never_reads_a_string_as_true(value):
    with pytest.raises(TypeError, match="^per_head: expected true or false"):
        check_bool("per_head", value)


def test_check_pair():
    assert check_pair("t_range", [0.1, 0.9], low=0, high=1) == (0.1, 0.9)
    for bad in ([0.9, 0.1], [0.1], "ab", [0.1, float("nan")], [-0.1, 0.5]):
        with pytest.raises((TypeError, ValueError), match="t_range"):
            check_pair("t_range", bad, low=0, high=1)


def test_write_json_turns_every_non_finite_into_null(tmp_path):
    data = {
        "a": float("nan"),
        "b": np.float32("inf"),
        "c": np.array([1.0, np.nan, 2.0]),
        "d": torch.tensor([float("-inf"), 3.0]),
        "e": np.int64(4),
        "f": [np.float64("nan"), (1, float("inf"))],
        "g": torch.tensor(float("nan")),
    }
    path = write_json(tmp_path / "r.json", data)
    assert json.loads(path.read_text()) == {
        "a": None,
        "b": None,
        "c": [1.0, None, 2.0],
        "d": [None, 3.0],
        "e": 4,
        "f": [None, [1, None]],
        "g": None,
    }


def test_write_json_keys_and_huge_ints(tmp_path):
    path = write_json(tmp_path / "k.json", {float("nan"): 1, np.int64(3): 2, 4: 3})
    assert json.loads(path.read_text()) == {"None": 1, "3": 2, "4": 3}
    with pytest.raises(ValueError, match="^x: expected a finite number, got an integer too large"):
        check_float("x", 10**400)


@pytest.mark.parametrize("value", [[], True, "front", torch.tensor([True])])
def test_camera_pose_values(value):
    with pytest.raises(ValueError, match="^camera azimuth"):
        with camera_pose(azimuth=value, elevation=0.0, radius=1.5):
            pass


# ---------------------------------------------------------------- output folders and partial files


def test_an_interrupted_atomic_write_leaves_neither_a_part_file_nor_the_target(tmp_path):
    from accel3d.core.io import atomic_write

    for stop in (KeyboardInterrupt, ValueError):
        with pytest.raises(stop):
            with atomic_write(tmp_path / "mesh.glb") as tmp:
                tmp.write_bytes(b"half a mesh")
                raise stop
    assert list(tmp_path.iterdir()) == []


def test_output_folders_that_cannot_be_written_are_named_with_their_knob(tmp_path, monkeypatch):
    import os

    from accel3d.core.io import check_output_folder

    (tmp_path / "file").write_text("x")
    assert check_output_folder(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created
    with pytest.raises(NotADirectoryError, match=r"^--out: cannot write to '.*file/run': '.*file' is a file, not a folder$"):
        check_output_folder(tmp_path / "file" / "run", "--out")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: os.path.abspath(p) != str(tmp_path) and real_access(p, mode, **kw))
    with pytest.raises(PermissionError, match=r"^hydra.run.dir: cannot write to '.*/a/b': '.*', where it would be created, is not"):
        check_output_folder(tmp_path / "a" / "b", "hydra.run.dir")
    with pytest.raises(PermissionError, match=r"^--out: cannot write to '.*': it is not writable$"):
        check_output_folder(tmp_path, "--out")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PermissionError, match=r"^--out: cannot write to the working directory '.*': it is not writable$"):
        check_output_folder(".", "--out")


def test_remove_partial_files_takes_only_part_files_from_since_on(tmp_path):
    import os
    import time

    from accel3d.core.io import remove_partial_files

    (tmp_path / "sub").mkdir()
    fresh = [tmp_path / ".mesh.glb.abc.part", tmp_path / "sub" / ".preview.png.x1.part"]
    old, kept = tmp_path / ".record.json.old.part", tmp_path / "mesh.part"  # too old; not hidden (not atomic_write's)
    for path in [*fresh, old, kept]:
        path.write_text("x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert sorted(remove_partial_files(tmp_path, since=time.time() - 60)) == sorted(fresh)
    assert old.exists() and kept.exists() and remove_partial_files(tmp_path / "missing") == []
