"""High-frequency energy ratios (HFER) of a 2D mask and a 3D occupancy, and the factor they route to.

Fast-SAM3D reads an object's complexity from its spectrum: a simple silhouette keeps its
energy at low frequencies, a complex one spreads it out. ``HFER = energy outside a radius
/ all energy``, of the centred (``fftshift``-ed) power spectrum ``|F|^2``:

- 2D: the mask cropped to its bounding box, resized to 256^2, times a 2D Hann window;
  radius ``0.15 * 256``;
- 3D: the occupancy grid (1 occupied, 0 empty), radius ``8 / 64`` of its side.

The mix ``H = w H_2D / s_2D + (1 - w) H_3D / s_3D`` picks the aggregation factor: ``H >= tau_high``
(a complex object) -> the gentlest factor, ``H > tau_low`` -> the middle one, else the strongest.
The two ratios live on different scales (a binary mask's is of order 1e-3, a 3D shell's of order
0.1), so each is divided by its median over a calibration set before mixing, and the thresholds
are that set's terciles of ``H`` (:func:`calibrate_routing`; the paper calibrates ``w`` and ``tau``
per dataset). :data:`CALIBRATED_SCALES` and :data:`CALIBRATED_TAU` come from
``scripts/calibrate_spectral.py`` (``docs/results/spectral_calibration.json``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# scripts/calibrate_spectral.py on the reference pipeline's training meshes (docs/results/spectral_calibration.json)
# (132 renders of the 33 training meshes, 4 views each: the 2D ratio spans 2e-8 (a box) to 8e-4 (a ring))


def calibrate_routing(
    hfer_2d: Sequence[float], hfer_3d: Sequence[float], mask_weight: float = 0.9, shares: Sequence[float] = (1 / 3, 2 / 3)
) -> dict[str, tuple[float, float]]:
    """``{"hfer_scales": (median 2D, median 3D), "tau": (tau_low, tau_high)}`` from a calibration set's ratios.

    ``shares`` are the quantiles of the mixed score the thresholds sit at: by default a third of
    the set routes to each factor. Example::

        calibrate_routing([1e-3, 2e-3, 4e-3], [0.1, 0.2, 0.3])["tau"]   # the terciles of the mixed score
    """
    if len(hfer_2d) != len(hfer_3d) or len(hfer_2d) < 3:
        raise ValueError(f"hfer_2d, hfer_3d: expected equal lengths of at least 3, got {len(hfer_2d)} and {len(hfer_3d)}")
    h2 = torch.tensor(list(hfer_2d), dtype=torch.float64)
    h3 = torch.tensor(list(hfer_3d), dtype=torch.float64)
    scales = (float(h2.median()), float(h3.median()))
    if min(scales) <= 0.0:
        raise ValueError(f"hfer_2d, hfer_3d: expected positive medians, got {scales}")
    score = mask_weight * h2 / scales[0] + (1 - mask_weight) * h3 / scales[1]
    low, high = (float(q) for q in torch.quantile(score, torch.tensor(list(shares), dtype=torch.float64)))
    return {"hfer_scales": scales, "tau": (low, high)}


def _outside_radius(shape: Sequence[int], radius: float, device: torch.device) -> Tensor:
    """Boolean mask of the frequencies farther than ``radius`` from the centre of a shifted spectrum."""
    axes = [torch.arange(n, device=device, dtype=torch.float32) - (n // 2) for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")
    return sum(g.square() for g in grids) > radius**2


def energy_ratio(x: Tensor, radius: float) -> float:
    """The share of ``|fftshift(fftn(x))|^2`` outside ``radius`` (index units from the centre); 0 for an all-zero ``x``."""
    power = torch.fft.fftshift(torch.fft.fftn(x.double()), dim=tuple(range(x.ndim))).abs().square()
    total = float(power.sum())
    if total == 0.0:
        return 0.0
    return float(power[_outside_radius(x.shape, radius, x.device)].sum()) / total


def mask_hfer(mask: Tensor, size: int = 256, radius_fraction: float = 0.15) -> float:
    """HFER of a 2D object mask ``[H, W]`` (or ``[1, H, W]``, ``[1, 1, H, W]``): crop, resize to ``size^2``, Hann window.

    Example::

        disc = (torch.cartesian_prod(...) ...)          # a filled circle: low HFER
        mask_hfer(disc) < mask_hfer(star)                # a star's spikes carry high frequencies
    """
    m = mask.reshape(mask.shape[-2:]).float()
    rows, cols = torch.nonzero(m > 0.5, as_tuple=True)
    if len(rows) == 0:
        raise ValueError("mask: expected an object mask with at least one pixel set, got an empty mask")
    crop = m[int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]
    resized = F.interpolate(crop[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    window = torch.hann_window(size, periodic=False, dtype=torch.float32, device=m.device)
    return energy_ratio(resized * torch.outer(window, window), radius_fraction * size)


def occupancy_hfer(occupancy: Tensor, radius_fraction: float = 8 / 64) -> float:
    """HFER of a 3D occupancy ``[R, R, R]`` (bool or 0/1), radius ``radius_fraction * R`` (8 of 64 in Fast-SAM3D)."""
    if occupancy.ndim != 3:
        raise ValueError(f"occupancy: expected an [R, R, R] grid, got shape {tuple(occupancy.shape)}")
    return energy_ratio(occupancy.float(), radius_fraction * occupancy.shape[0])


def route_factor(score: float, tau_high: float, tau_low: float, factors: Sequence[float]) -> float:
    """``factors`` = (gentle, middle, strong): ``score >= tau_high`` -> gentle, ``> tau_low`` -> middle, else strong."""
    gentle, middle, strong = factors
    if score >= tau_high:
        return gentle
    return middle if score > tau_low else strong


def quantise_about_centre(coords: Tensor, factor: float, resolution: int) -> Tensor:
    """Voxel indices of the structure shrunk by ``factor`` about the grid centre: ``floor((p + 1/2 - R/2) / S + R/2)``.

    The object frame's origin is the grid centre, so a layout scale times ``factor`` puts the
    shrunk structure back at the same size and place. (Fast-SAM3D's code takes ``floor(p / S)``,
    which also moves the object towards the grid corner; see docs/pruning.md.)
    """
    centre = resolution / 2
    shrunk = torch.floor((coords.double() + 0.5 - centre) / factor + centre)
    return shrunk.clamp(0, resolution - 1).to(coords.dtype)


def is_valid_factor(factor: float) -> bool:
    return math.isfinite(factor) and factor >= 1.0
