"""Fidelity metrics: volume IoU, Chamfer distance and F-score between meshes."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from accel3d.core.validate import check_float, check_int


def volume_iou(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Intersection over union of two boolean occupancy grids (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"volume_iou: grids differ in shape, {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mesh_distances(a: trimesh.Trimesh, b: trimesh.Trimesh, samples: int = 100_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distances from surface samples of ``a`` to ``b``'s samples, and back."""
    from scipy.spatial import cKDTree

    pa, _ = trimesh.sample.sample_surface(a, samples, seed=seed)
    pb, _ = trimesh.sample.sample_surface(b, samples, seed=seed)  # same seed: identical meshes score 0
    # One worker: scipy's threaded query (workers=-1) segfaults when Ctrl-C arrives mid-query.
    d_ab, _ = cKDTree(pb).query(pa, workers=1)
    d_ba, _ = cKDTree(pa).query(pb, workers=1)
    return d_ab, d_ba


def chamfer_and_fscore(a: trimesh.Trimesh, b: trimesh.Trimesh, threshold: float = 0.01, samples: int = 100_000) -> dict[str, float]:
    """Symmetric Chamfer-L1 distance (mean of both directions) and F-score at ``threshold``.

    Empty meshes give ``chamfer = inf`` and ``fscore = 0`` unless both are empty.
    """
    check_float("fscore_threshold", threshold, low=0.0, low_open=True)
    check_int("samples", samples, low=1)
    if len(a.faces) == 0 or len(b.faces) == 0:
        same = len(a.faces) == len(b.faces) == 0
        return {"chamfer": 0.0 if same else float("inf"), "fscore": 1.0 if same else 0.0}
    d_ab, d_ba = mesh_distances(a, b, samples)
    precision, recall = float((d_ab < threshold).mean()), float((d_ba < threshold).mean())
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"chamfer": float((d_ab.mean() + d_ba.mean()) / 2), "fscore": f}


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    """PSNR (dB) of ``other`` against ``reference``, peak = the reference's value range (inf when identical)."""
    peak = float(reference.max() - reference.min())
    mse = float((reference.double() - other.double()).square().mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def image_scores(truth: torch.Tensor, images: torch.Tensor, value_range: float = 2.0) -> dict[str, float]:
    """Mean PSNR (dB, peak ``value_range``) and SSIM (scikit-image, 7x7 windows) of ``images`` against ``truth``, both (n, C, H, W).

    >>> x = torch.zeros(1, 3, 16, 16)
    >>> image_scores(x, x + 0.2)["psnr"]    # 10 log10(2^2 / 0.04)
    20.0
    """
    from skimage.metrics import structural_similarity

    if truth.shape != images.shape or truth.ndim != 4:
        raise ValueError(f"images: expected two (n, C, H, W) tensors of one shape, got {tuple(truth.shape)} and {tuple(images.shape)}")
    truth, images = truth.detach().double().cpu(), images.detach().double().cpu()
    mse = (truth - images).square().mean(dim=(1, 2, 3))
    psnr_db = 10 * torch.log10(value_range**2 / mse.clamp(min=1e-12))
    side = min(truth.shape[-2:])
    window = min(7, side if side % 2 else side - 1)  # SSIM needs an odd window that fits the image
    ssim = [
        structural_similarity(t.numpy(), x.numpy(), data_range=value_range, channel_axis=0, win_size=window) for t, x in zip(truth, images)
    ]
    return {"psnr": round(float(psnr_db.mean()), 6), "ssim": float(np.mean(ssim))}
