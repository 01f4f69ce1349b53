"""Flow stages with known velocities, for the pruning tests: a polynomial in the step, per token group."""

from __future__ import annotations

import torch

from accel3d.models.image_to_3d import FlowSampler


class PolynomialStage:
    """A sampler stage whose velocity is ``sum_p coeffs[key][p] * step**p`` (float64), counting calls.

    Example::

        stage = PolynomialStage(order=1)
        stage.sample()          # 25 Euler steps through stage.velocity
        stage.truth(6)["shape"]  # the exact velocity at step 6
    """

    token_groups = {"shape": ("shape",), "layout": ("rotation", "scale")}

    def __init__(self, order: int = 1, steps: int = 25, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        shapes = {"shape": (1, 16, 4), "rotation": (1, 1, 6), "scale": (1, 1, 3)}
        self.coeffs = {k: [torch.randn(s, generator=g, dtype=torch.float64) for _ in range(order + 1)] for k, s in shapes.items()}
        self.shapes = shapes
        self.steps = steps
        self.calls = 0

    def truth(self, step: int) -> dict[str, torch.Tensor]:
        return {k: sum(c * float(step) ** p for p, c in enumerate(cs)) for k, cs in self.coeffs.items()}

    def velocity(self, x, t, cond, step, **kwargs):
        self.calls += 1
        return self.truth(step)

    def sample(self) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        x = {k: torch.zeros(s, dtype=torch.float64) for k, s in self.shapes.items()}
        seen = []
        for step in range(self.steps):
            v = self.velocity(x, step / self.steps, None, step)
            seen.append(v)
            x = {k: x[k] + v[k] / self.steps for k in x}
        return x, seen


def tiny_ss_sampler(cfg_strength: float = 7.0, steps: int = 25) -> FlowSampler:
    """The reference SS flow at a tiny random-weight size, with SAM3D's sampler settings but guidance at every step."""
    from accel3d.models.image_to_3d import ImageTo3DConfig, SSFlowTransformer

    torch.manual_seed(0)
    config = ImageTo3DConfig(
        image_size=16, cond_grid=4, cond_channels=16, structure_resolution=16, ss_latent_resolution=4,
        ss_latent_channels=4, ss_vae_channels=16, ss_flow_width=32, ss_flow_depth=2, ss_flow_heads=2,
    )  # fmt: skip
    return FlowSampler.ss(SSFlowTransformer(config).eval(), steps=steps, cfg_strength=cfg_strength, cfg_interval=(0.0, 1.0))


def cond_tokens(batch: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 16, 16, generator=torch.Generator().manual_seed(seed))


class TokenStage:
    """A SLaT-like stage: state ``[1, N, C]``, ``velocity(x, t, cond, step, coords=)``; ``fn(x, coords)`` the velocity.

    Records, per call, the step, the token count and the coordinates it got.

    Example::

        stage = TokenStage(lambda x, c: x.clone())   # v = x: the rate |dv|/|dx| is exactly 1
        stage.sample()
    """

    token_groups = {"slat": ()}

    def __init__(self, fn, n: int = 64, channels: int = 4, steps: int = 25, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.fn = fn
        self.steps = steps
        self.noise = torch.randn(1, n, channels, generator=g)
        side = 8
        idx = torch.randperm(side**3, generator=g)[:n].sort().values
        self.coords = torch.stack([idx // (side * side), (idx // side) % side, idx % side], dim=1)[None]
        self.calls: list[tuple[int, int, torch.Tensor]] = []

    def velocity(self, x, t, cond, step, coords=None):
        self.calls.append((step, x.shape[1], coords[0].clone()))
        return self.fn(x, coords)

    def sample(self, steps: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Euler with dt = 1/steps; a non-finite velocity moves nothing (so one NaN step stays one)."""
        x, seen = self.noise.clone(), []
        for step in range(steps or self.steps):
            v = self.velocity(x, step / self.steps, None, step, coords=self.coords)
            seen.append(v)
            x = x + torch.nan_to_num(v, nan=0.0) / self.steps
        return x, seen


def tiny_slat_sampler(steps: int = 25):
    """The reference SLaT flow at a tiny random-weight size (no guidance) and coordinates of 40 voxels."""
    from accel3d.models.image_to_3d import FlowSampler, ImageTo3DConfig, SLaTFlowTransformer

    torch.manual_seed(0)
    config = ImageTo3DConfig(
        image_size=16, cond_grid=4, cond_channels=16, structure_resolution=16, ss_latent_resolution=4,
        ss_latent_channels=4, ss_vae_channels=16, slat_channels=4, slat_flow_width=32, slat_flow_depth=2, slat_flow_heads=2,
    )  # fmt: skip
    sampler = FlowSampler.slat(SLaTFlowTransformer(config).eval(), steps=steps)
    g = torch.Generator().manual_seed(2)
    idx = torch.randperm(16**3, generator=g)[:40].sort().values
    coords = torch.stack([idx // 256, (idx // 16) % 16, idx % 16], dim=1)
    return sampler, coords


def ss_model_calls(steps: int, computed: list[int] | None = None, rescale: float = 3.0, guided_until: float = 0.5) -> int:
    """SS flow forward calls of the computed steps: two (CFG) while ``t <= guided_until``, else one."""
    from accel3d.models.image_to_3d import time_schedule

    times = time_schedule(steps, rescale).tolist()[:-1]
    return sum(2 if times[s] <= guided_until else 1 for s in (range(steps) if computed is None else computed))
