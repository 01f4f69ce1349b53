"""Image output of the SDS scene: latent renders as RGB, written as a turntable PNG grid or a looping GIF."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from accel3d.core.io import atomic_write
from accel3d.core.validate import check_int


def to_rgb(images: Tensor, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Map C-channel images (n, C, H, W) to uint8 RGB (n, H, W, 3) for looking at.

    With ``value_range`` (an RGB image's, e.g. ``(-1, 1)``) the values map linearly from it to
    [0, 1]. Without it this is a visualisation of the first three latent channels (cycled when
    C < 3: C = 2 shows channels 0, 1, 0), not a decoded image: each channel is stretched to [0, 1] by its
    min/max over all frames together, so frames stay comparable.
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images: expected a tensor of shape (n, C, H, W) with n >= 1, got {tuple(images.shape)}")
    channels = images.shape[1]
    rgb = images.detach().float().cpu()[:, [i % channels for i in range(3)]]
    if value_range is not None:
        low, high = value_range
        return (((rgb - low) / (high - low)).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    low = rgb.amin(dim=(0, 2, 3), keepdim=True)
    span = rgb.amax(dim=(0, 2, 3), keepdim=True) - low
    rgb = (rgb - low) / torch.where(span > 0, span, torch.ones_like(span))  # a constant channel maps to 0
    return (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_turntable(
    images: Tensor,
    path: str | Path,
    columns: int = 4,
    row_labels: list[str] | None = None,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Write the frames (n, C, H, W) as a PNG grid, ``columns`` per row (see :func:`to_rgb`), atomically.

    ``row_labels`` (one per row) are printed left of the rows, " · " starting a new line: which run the
    row shows and its numbers."""
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns: expected a positive int, got {columns!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = to_rgb(images, value_range)
    cols = min(columns, len(frames))
    rows = math.ceil(len(frames) / cols)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels: expected {rows} labels (one per row of {cols} frames), got {len(row_labels)}")
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows), squeeze=False)
    try:
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < len(frames):
                ax.imshow(frames[i], interpolation="nearest")
        for row, label in enumerate(row_labels or []):
            ax = axes[row, 0]
            ax.text(-0.08, 0.5, label.replace(" · ", "\n"), transform=ax.transAxes, ha="right", va="center", fontsize=9)
        fig.tight_layout()
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")  # the labels sit left of the axes
    finally:
        plt.close(fig)
    return Path(path)


def save_gif(
    images: Tensor,
    path: str | Path,
    duration_ms: int = 120,
    min_size: int = 256,
    beside: Tensor | None = None,
    labels: tuple[str, str] | None = None,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Write the frames (n, C, H, W) as a looping GIF, ``duration_ms`` per frame (see :func:`to_rgb`), atomically.

    Frames are enlarged by a whole factor (nearest neighbour: the voxels stay sharp) to at least ``min_size``
    pixels. ``beside``, frames of the same shape, goes on the left of each frame (the unaccelerated run),
    with ``labels`` (left, right) written above the two halves."""
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 1:
        raise ValueError(f"duration_ms: expected a positive int, got {duration_ms!r}")
    check_int("min_size", min_size, low=1)
    from PIL import Image, ImageDraw, ImageFont

    rgb = to_rgb(images if beside is None else torch.cat([beside, images]), value_range)  # one colour scale for both runs
    halves = [rgb] if beside is None else [rgb[: len(beside)], rgb[len(beside) :]]
    if beside is not None and beside.shape != images.shape:
        raise ValueError(f"beside: expected frames of shape {tuple(images.shape)}, got {tuple(beside.shape)}")
    scale = max(1, math.ceil(min_size / min(rgb.shape[1:3])))
    header = 0 if labels is None else 22
    font = ImageFont.load_default(size=14)
    frames = []
    for i in range(len(halves[-1])):
        tiles = [Image.fromarray(h[i]).resize((h.shape[2] * scale, h.shape[1] * scale), Image.NEAREST) for h in halves]
        frame = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height + header), "white")
        for k, tile in enumerate(tiles):
            frame.paste(tile, (k * tile.width, header))
            if labels is not None:
                ImageDraw.Draw(frame).text((k * tile.width + 4, 3), labels[k if beside is not None else -1], fill="black", font=font)
        frames.append(frame)
    with atomic_write(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return Path(path)
