"""Image output of the SDS scene: latent renders as RGB, written as a turntable PNG grid or a looping GIF."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from accel3d.core.io import atomic_write


def to_rgb(images: Tensor) -> np.ndarray:
    """Map C-channel images (n, C, H, W) to uint8 RGB (n, H, W, 3) for looking at.

    This is a visualisation of the first three latent channels (cycled when
    C < 3: C = 2 shows channels 0, 1, 0), not a decoded image: each channel is stretched to [0, 1] by its
    min/max over all frames together, so frames stay comparable.
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images: expected a tensor of shape (n, C, H, W) with n >= 1, got {tuple(images.shape)}")
    channels = images.shape[1]
    rgb = images.detach().float().cpu()[:, [i % channels for i in range(3)]]
    low = rgb.amin(dim=(0, 2, 3), keepdim=True)
    span = rgb.amax(dim=(0, 2, 3), keepdim=True) - low
    rgb = (rgb - low) / torch.where(span > 0, span, torch.ones_like(span))  # a constant channel maps to 0
    return (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_turntable(images: Tensor, path: str | Path, columns: int = 4) -> Path:
    """Write the frames (n, C, H, W) as a PNG grid, ``columns`` per row (see :func:`to_rgb`), atomically."""
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns: expected a positive int, got {columns!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = to_rgb(images)
    cols = min(columns, len(frames))
    rows = math.ceil(len(frames) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows), squeeze=False)
    try:
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < len(frames):
                ax.imshow(frames[i], interpolation="nearest")
        fig.tight_layout()
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def save_gif(images: Tensor, path: str | Path, duration_ms: int = 120) -> Path:
    """Write the frames (n, C, H, W) as a looping GIF, ``duration_ms`` per frame (see :func:`to_rgb`), atomically."""
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 1:
        raise ValueError(f"duration_ms: expected a positive int, got {duration_ms!r}")
    from PIL import Image

    frames = [Image.fromarray(frame) for frame in to_rgb(images)]
    with atomic_write(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return Path(path)
