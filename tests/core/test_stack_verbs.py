"""A stack has an accelerator's verbs: attach, detach, attached, applied; the old names still work, with a warning."""

from __future__ import annotations

import pytest
import torch

from accel3d.core import BaseAccelerator, Pipeline, Stack


class Net(torch.nn.Module):
    def forward(self, x):
        return x + 1


class Toy(Pipeline):
    name = "toy"

    def __init__(self):
        self.net = Net()
        self.stages = {"denoiser": self.net}


class Double(BaseAccelerator):
    """Doubles the stage's output."""

    name, stage, composable = "double", "denoiser", True

    def _attach(self, target):
        self.patches.wrap(target, "forward", lambda f: lambda x: 2 * f(x))


def test_stack_and_accelerator_share_one_set_of_verbs():
    verbs = {"attach", "detach", "attached", "applied", "reset", "stats", "summary"}
    assert verbs <= set(dir(Stack)) and verbs <= set(dir(BaseAccelerator))


def test_attach_detach_round_trip_is_exact():
    pipe, x = Toy(), torch.arange(3.0)
    plain = pipe.net(x)
    stack = Stack([Double()])
    assert stack.attach(pipe) is stack and stack.attached
    assert torch.equal(pipe.net(x), 2 * plain)
    stack.detach()
    assert not stack.attached and torch.equal(pipe.net(x), plain) and "forward" not in vars(pipe.net)
    stack.detach()  # a second detach is a no-op, as for an accelerator
    with stack.applied(pipe):
        assert torch.equal(pipe.net(x), 2 * plain)
    assert torch.equal(pipe.net(x), plain)


def test_attaching_twice_is_refused_with_the_verb_to_use():
    pipe, stack = Toy(), Stack([Double()])
    stack.attach(pipe)
    with pytest.raises(RuntimeError, match="already attached; detach it first"):
        stack.attach(pipe)
    stack.detach()
