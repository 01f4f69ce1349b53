"""accel3d's own VecsetVAE checkpoints: ``{"config", "state_dict", "metadata"}`` files, written and read.

:meth:`VecsetVAE.save <accel3d.models.vecset_vae.VecsetVAE.save>` and
:meth:`VecsetVAE.from_pretrained <accel3d.models.vecset_vae.VecsetVAE.from_pretrained>` call these;
Hunyuan3D-2 releases are read by :mod:`accel3d.models.checkpoints` and :mod:`accel3d.models.hunyuan`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accel3d.core.io import load_torch_file
from accel3d.models.vecset_layers import VecsetVAEConfig

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "vecset_small.pt"


def save_checkpoint(model: nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    """Write ``{"config", "state_dict", "metadata"}`` of ``model`` (a VecsetVAE) to ``path`` atomically."""
    from accel3d.core.io import atomic_write

    payload = {"config": asdict(model.config), "state_dict": model.state_dict(), "metadata": metadata or {}}
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(cls: Any, path: str | Path | None = None, map_location: str = "cpu") -> Any:
    """Build ``cls`` (VecsetVAE) from an accel3d checkpoint: a ``.pt`` file or a directory holding ``model.pt``
    (default: the shipped weights), checked, moved to ``map_location`` and in eval mode."""
    if path is not None and (not isinstance(path, str | Path) or not str(path)):
        raise ValueError(f"weights: expected None (the shipped weights) or a path, got {path!r}")
    path = Path(path).expanduser() if path is not None else DEFAULT_WEIGHTS
    try:
        torch.device(map_location)
    except (RuntimeError, TypeError):
        raise ValueError(f"map_location: expected a device such as 'cpu' or 'cuda:0', got {map_location!r}") from None
    if path.is_dir() and (path / "config.yaml").is_file() and not (path / "model.pt").is_file():
        raise ValueError(f"weights: '{path}' looks like a Hunyuan3D-2 VAE folder; load it with accel3d.models.load_vae(path)")
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"weights: no weights file at '{path}'")
    payload = load_torch_file(path, "weights")  # onto the CPU; moved to map_location once checked
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise ValueError(f"weights: '{path}' is not an accel3d VecsetVAE checkpoint (expected a dict with 'config' and 'state_dict')")
    try:
        model = cls(VecsetVAEConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"weights: '{path}' does not hold a loadable VecsetVAE ({exc})") from None
    bad = [k for k, v in payload["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"weights: '{path}' has NaN or inf in {len(bad)} tensors, first {bad[0]}")
    model.metadata = payload.get("metadata", {})
    return model.to(map_location).eval()
