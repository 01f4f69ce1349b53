import pytest
import torch

from accel3d.core import BaseAccelerator, PatchSet, Pipeline, Stack, StackConflictError
from accel3d.core.validate import ArgumentError
from accel3d.decoding import HierarchicalDecoding
from accel3d.jobs.configs import accelerator_config


class Scale(BaseAccelerator):
    name, stage, composable = "scale", "denoiser", False

    def __init__(self, factor=2.0, composable=False):
        super().__init__()
        self.factor = factor
        self.composable = composable

    def _attach(self, target):
        self.patches.wrap(target, "forward", lambda f: lambda x: f(x) * self.factor)


class Toy(Pipeline):
    name = "toy"

    def __init__(self):
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 4)
        self.stages = {"denoiser": self.net}


def test_patchset_restores_absent_instance_attribute():
    net = torch.nn.Linear(2, 2)
    assert "forward" not in vars(net)
    patches = PatchSet()
    patches.wrap(net, "forward", lambda f: lambda x: f(x) + 1)
    assert "forward" in vars(net)
    patches.restore()
    assert "forward" not in vars(net) and len(patches) == 0


def test_attach_changes_and_detach_restores_outputs_bit_for_bit():
    pipe, x = Toy(), torch.randn(3, 4)
    before = pipe.net(x)
    acc = Scale()
    with acc.applied(pipe.net):
        assert torch.equal(pipe.net(x), before * 2)
    assert torch.equal(pipe.net(x), before)


def test_attach_twice_is_refused():
    net = torch.nn.Linear(2, 2)
    acc = Scale()
    acc.attach(net)
    with pytest.raises(RuntimeError, match="already attached"):
        acc.attach(net)
    acc.detach()


def test_stack_composes_in_order_and_removes_exactly():
    pipe, x = Toy(), torch.randn(3, 4)
    before = pipe.net(x)
    stack = Stack([Scale(2.0, composable=True), Scale(3.0, composable=True)], name="both")
    with stack.applied(pipe):
        assert torch.allclose(pipe.net(x), before * 6)
    assert torch.equal(pipe.net(x), before)


def test_stack_conflict_on_same_stage_is_a_clear_error():
    with pytest.raises(StackConflictError, match="stage 'denoiser'"):
        Stack([Scale(), Scale()])


def test_stack_with_unknown_stage_patches_nothing():
    class Elsewhere(Scale):
        name, stage = "elsewhere", "mesh_decoder"

    pipe, x = Toy(), torch.randn(3, 4)
    before = pipe.net(x)
    stack = Stack([Scale(composable=True), Elsewhere()])
    with pytest.raises(KeyError, match="no stage 'mesh_decoder'.*denoiser"):
        stack.attach(pipe)
    assert torch.equal(pipe.net(x), before)


def test_stack_rejects_non_accelerators():
    with pytest.raises(TypeError, match="accelerators"):
        Stack([object()])


def test_configs_are_found_by_name_and_unknown_names_are_listed():
    config = accelerator_config("hierarchical")(min_resolution=8)
    assert HierarchicalDecoding(config).decoder.min_resolution == 8
    with pytest.raises(ArgumentError, match="unknown name 'nope'.*hierarchical"):
        accelerator_config("nope")


def test_patchset_restores_module_children_and_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    child, weight = net[0], net[0].weight
    patches = PatchSet()
    patches.set(net, "0", torch.nn.Identity())
    patches.set(net[1], "inplace", True)
    patches.set(child, "weight", torch.nn.Parameter(torch.zeros(2, 2)))
    assert isinstance(net[0], torch.nn.Identity) and net[1].inplace
    patches.restore()
    assert net[0] is child and child.weight is weight and net[1].inplace is False
    assert "inplace" not in vars(net[1]) or vars(net[1])["inplace"] is False


def test_failed_setattr_is_not_recorded():
    net = torch.nn.Linear(2, 2)
    patches = PatchSet()
    with pytest.raises(TypeError):
        patches.set(net, "weight", "not a parameter")
    assert len(patches) == 0 and isinstance(net.weight, torch.nn.Parameter)


def test_stack_rolls_back_when_a_later_attach_fails():
    class Broken(Scale):
        name = "broken"

        def _attach(self, target):
            self.patches.wrap(target, "forward", lambda f: f)
            raise RuntimeError("cannot attach")

    pipe, x = Toy(), torch.randn(3, 4)
    before = pipe.net(x)
    first = Scale(composable=True)
    stack = Stack([first, Broken(composable=True)])
    with pytest.raises(RuntimeError, match="cannot attach"):
        stack.attach(pipe)
    assert not first.attached and "forward" not in vars(pipe.net)
    assert torch.equal(pipe.net(x), before)
