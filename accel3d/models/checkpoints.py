"""Checkpoint files on disk: finding a Hunyuan3D-2 VAE release and reading its state dict.

No model classes here, so that every model module can use it without import cycles.
"""

from __future__ import annotations

from pathlib import Path

import torch

from accel3d.core.io import load_torch_file

CHECKPOINT_NAMES = ("model.safetensors", "model.ckpt", "model.fp16.safetensors", "model.fp16.ckpt")  # full precision first


def find_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(weights file, config.yaml) for a Hunyuan3D-2 VAE folder or a weights file beside its config.yaml."""
    path = Path(path).expanduser()
    if path.is_dir():
        weights = next((path / n for n in CHECKPOINT_NAMES if (path / n).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"load_hunyuan_vae: no {' / '.join(CHECKPOINT_NAMES)} in '{path}'")
    elif path.is_file():
        weights = path
    else:
        raise FileNotFoundError(f"load_hunyuan_vae: no file or folder at '{path}'")
    config = weights.parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"load_hunyuan_vae: no config.yaml beside '{weights}'")
    return weights, config


def is_hunyuan_checkpoint(path: str | Path) -> bool:
    """True for a folder (or .safetensors/.ckpt file) laid out like a Hunyuan3D-2 VAE release."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix not in (".safetensors", ".ckpt"):
        return False
    try:
        find_checkpoint(path)
    except FileNotFoundError:
        return False
    return True


def read_state_dict(weights: Path) -> dict[str, torch.Tensor]:
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(weights), device="cpu")
        except Exception as exc:  # SafetensorError, OSError, ...
            raise ValueError(f"weights: '{weights}' is not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    state = load_torch_file(weights, "weights")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"weights: '{weights}' holds no state dict")
    return state
