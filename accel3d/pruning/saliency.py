"""Per-token saliency of the SLaT stage (Fast-SAM3D's spatiotemporal token carving).

``J_i = 1/2 (M_i + gamma A_i) + 1/2 S_freq(i)`` (the paper), each term min-max normalised:

- ``M_i = |v_i(t)|``, the update magnitude;
- ``A_i = |v_i(t) - v_i(t+1)|``, the abrupt change since the previous step;
- ``S_freq(i)``, the voxel's high-frequency structure: the 3D FFT of the occupancy with the
  low-frequency sphere zeroed, ``|ifft|`` read at the voxel.

The public code weighs them ``0.3 S_freq + 0.7 (0.7 A + 0.3 M)`` instead (``weighting="code"``);
``weighting="random"`` scores every token uniformly at random (the random-drop baseline).
"""

from __future__ import annotations

import torch
from torch import Tensor


def minmax(x: Tensor) -> Tensor:
    """``(x - min) / (max - min)``; all zeros when ``x`` is constant (no token stands out)."""
    lo, hi = x.min(), x.max()
    if not bool(hi > lo):
        return torch.zeros_like(x)
    return (x - lo) / (hi - lo)


def grid_side(coords: Tensor) -> int:
    """The smallest power of two that holds every coordinate (the structure grid's side when none is given)."""
    extent = int(coords.max()) + 1 if coords.numel() else 1
    side = 1
    while side < extent:
        side *= 2
    return side


def frequency_score(coords: Tensor, resolution: int, radius_fraction: float = 8 / 64) -> Tensor:
    """``S_freq`` of each voxel ``coords`` ``[N, 3]``: high-pass the occupancy (radius ``radius_fraction * R``), ``|ifft|`` at it.

    Example::

        score = frequency_score(coords, 32)   # [N] in [0, 1]; edges and thin parts score high
    """
    occupancy = torch.zeros((resolution,) * 3, dtype=torch.float64, device=coords.device)
    occupancy[coords[:, 0], coords[:, 1], coords[:, 2]] = 1.0
    spectrum = torch.fft.fftshift(torch.fft.fftn(occupancy))
    axes = torch.arange(resolution, device=coords.device, dtype=torch.float64) - resolution // 2
    dist2 = axes[:, None, None] ** 2 + axes[None, :, None] ** 2 + axes[None, None, :] ** 2
    spectrum[dist2 < (radius_fraction * resolution) ** 2] = 0
    high = torch.fft.ifftn(torch.fft.ifftshift(spectrum)).abs()
    return minmax(high[coords[:, 0], coords[:, 1], coords[:, 2]].float())


def token_saliency(
    v: Tensor, v_prev: Tensor, freq: Tensor, gamma: float = 1.0, weighting: str = "paper", generator: torch.Generator | None = None
) -> Tensor:
    """``J`` per token from the latest velocity ``v`` ``[N, C]``, the one before it and ``S_freq`` ``[N]``."""
    if weighting == "random":
        return torch.rand(v.shape[0], generator=generator).to(v.device)
    magnitude = minmax(v.float().norm(dim=-1))
    change = minmax((v - v_prev).float().norm(dim=-1))
    if weighting == "paper":
        return 0.5 * (magnitude + gamma * change) + 0.5 * freq
    return 0.3 * freq + 0.7 * (0.7 * change + 0.3 * magnitude)


def carve(saliency: Tensor, stale: Tensor, ratio: float, max_stale: int) -> Tensor:
    """Boolean ``[N]``: the tokens that keep their previous velocity this step.

    The lowest-scoring ``int(ratio * N)``, among tokens cached fewer than ``max_stale`` steps in a
    row (the others are forced to update); ties go to the lower index.
    """
    n = saliency.shape[0]
    carved = torch.zeros(n, dtype=torch.bool, device=saliency.device)
    count = int(ratio * n)
    eligible = torch.nonzero(stale < max_stale, as_tuple=True)[0]
    count = min(count, len(eligible))
    if count == 0:
        return carved
    order = torch.argsort(saliency[eligible], stable=True)[:count]
    carved[eligible[order]] = True
    return carved
