"""diffusers objects take a named stack in one call: a ``DiffusionPipeline``, a bare ``UNet2DConditionModel`` and a
threestudio-style guidance object holding ``.unet``; ``accel3d.remove`` gives the exact original back, a stack for
other stages is refused before anything is patched, and a Zero123-shaped U-Net (8 input channels, the camera in its
conditioning) hits Hash3D's cache at the default settings."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline

import accel3d
from accel3d.core import camera_pose, patch_owners
from accel3d.core.validate import ArgumentError
from accel3d.integrations import stages_of
from accel3d.models.sds.unets import build_unet


class TinyPipeline(DiffusionPipeline):
    """A real ``DiffusionPipeline`` (registered modules, ``.unet``) around the tiny U-Net."""

    def __init__(self, unet, scheduler) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)


class Guidance:
    """What threestudio's guidance objects look like to accel3d: a U-Net held as ``.unet``."""

    def __init__(self, unet) -> None:
        self.unet = unet


def _sds_calls(unet, steps: int = 12, fresh_text: bool = False, seed: int = 0) -> list[torch.Tensor]:
    """U-Net calls as an SDS loop makes them: CFG pairs at random poses and timesteps, each under its camera."""
    gen = torch.Generator().manual_seed(seed)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, generator=gen)
    x = torch.randn(1, unet.config.in_channels, 32, 32, generator=gen)
    outs = []
    with torch.no_grad():
        for _ in range(steps):
            t = int(torch.randint(400, 420, (), generator=gen))
            az = float(torch.rand((), generator=gen) * 10)
            emb = torch.randn(text.shape, generator=gen) if fresh_text else text  # fresh: the pose is in the conditioning
            with camera_pose(azimuth=az, elevation=10.0, radius=1.6):
                outs.append(unet(torch.cat([x, x]), t, encoder_hidden_states=emb).sample)
    return outs


@pytest.mark.parametrize("kind", ["pipeline", "unet", "guidance"])
def test_a_diffusers_object_takes_hash3d_in_one_call_and_is_restored_exactly(kind, one_thread):
    unet = build_unet("tiny")
    obj = {"pipeline": lambda: TinyPipeline(unet, DDIMScheduler()), "unet": lambda: unet, "guidance": lambda: Guidance(unet)}[kind]()
    assert stages_of(obj) == {"denoiser": unet}
    before = _sds_calls(unet)
    stack = accel3d.apply(obj, "hash3d", retrieve_prob=1.0)
    hash3d = stack.accelerators[0]
    assert hash3d.attached and patch_owners(unet) == [hash3d]
    cached = _sds_calls(unet)
    assert hash3d.stats()["hits"] > 0 and any(not torch.equal(a, b) for a, b in zip(cached, before))  # it did reuse
    assert accel3d.remove(obj) == 1 and not hash3d.attached and patch_owners(unet) == []
    after = _sds_calls(unet)
    assert all(torch.equal(a, b) for a, b in zip(after, before))  # the exact original back


def test_a_stack_for_stages_the_object_lacks_is_refused_before_anything_is_patched():
    pipe = TinyPipeline(build_unet("tiny"), DDIMScheduler())
    with pytest.raises(ArgumentError, match=r"targets stage\(s\) \['geo_decoder', 'volume_decoder'\].*its stages: \['denoiser'\]"):
        accel3d.apply(pipe, "flashvdm")
    assert patch_owners(pipe.unet) == []
    assert stages_of(object()) is None and stages_of(Guidance(torch.nn.Linear(2, 2))) is None


def test_a_zero123_shaped_unet_hits_the_cache_at_the_default_settings():
    """Its conditioning changes with every pose: matching it (the text U-Nets' default) would never hit."""
    zero123 = build_unet("tiny", in_channels=8)
    stack = accel3d.apply(zero123, "hash3d")
    try:
        _sds_calls(zero123, steps=20, fresh_text=True)
        hash3d = stack.accelerators[0]
        assert hash3d.match_conditioning is False and hash3d.stats()["hits"] > 0
    finally:
        accel3d.remove(zero123)
    text_unet = build_unet("tiny")
    with accel3d.load_stack("hash3d").accelerators[0].applied(text_unet) as strict:
        _sds_calls(text_unet, steps=20, fresh_text=True)
    assert strict.match_conditioning is True and strict.stats()["hits"] == 0  # a new prompt never reuses another's
