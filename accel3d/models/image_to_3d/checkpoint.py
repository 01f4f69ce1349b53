"""The image-to-3D model set and its checkpoints: ``{"format", "config", "state_dict", "metadata"}`` files.

A checkpoint holds every stage (condition encoder, SS VAE, SS flow, SLaT encoder,
SLaT mesh decoder, SLaT flow) with the config that sizes them, so loading needs no
other file. Loading refuses, naming ``weights``: a file that is not a tensor file,
a checkpoint of another model, and a state dict whose keys or shapes do not match
the architecture (which keys and shapes differ is in the message).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accel3d.core.io import load_torch_file
from accel3d.models.image_to_3d.condition import ConditionEncoder
from accel3d.models.image_to_3d.config import ImageTo3DConfig
from accel3d.models.image_to_3d.sampler import FlowSampler
from accel3d.models.image_to_3d.slat import SLaTEncoder, SLaTMeshDecoder
from accel3d.models.image_to_3d.slat_flow import SLaTFlowTransformer
from accel3d.models.image_to_3d.ss_flow import SSFlowTransformer
from accel3d.models.image_to_3d.ss_vae import SSVAE

FORMAT = "accel3d.image_to_3d/1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "image_to_3d.pt"
_SHOWN = 5  # keys listed per kind of difference; the count says how many more


class ImageTo3DModels(nn.Module):
    """Every stage of the reference image-to-3D pipeline, sized by one :class:`ImageTo3DConfig`.

    Example::

        models = ImageTo3DModels(ImageTo3DConfig())
        cond = models.condition(image, mask)                       # [B, 64, cond_channels]
        ss = models.ss_sampler().sample(cond, torch.Generator().manual_seed(0))
        models.save("image_to_3d.pt")
        same = ImageTo3DModels.from_pretrained("image_to_3d.pt")
    """

    def __init__(self, config: ImageTo3DConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ImageTo3DConfig()
        if not isinstance(self.config, ImageTo3DConfig):
            raise TypeError(f"config: expected an ImageTo3DConfig, got {type(self.config).__name__}")
        self.condition = ConditionEncoder(self.config)
        self.ss_vae = SSVAE(self.config)
        self.ss_flow = SSFlowTransformer(self.config)
        self.slat_encoder = SLaTEncoder(self.config)
        self.slat_decoder = SLaTMeshDecoder(self.config)
        self.slat_flow = SLaTFlowTransformer(self.config)
        self.metadata: dict[str, Any] = {}

    def ss_sampler(self, **overrides: Any) -> FlowSampler:
        """A :class:`FlowSampler` of the SS flow (SAM3D's settings unless overridden)."""
        return FlowSampler.ss(self.ss_flow, **overrides)

    def slat_sampler(self, **overrides: Any) -> FlowSampler:
        """A :class:`FlowSampler` of the SLaT flow (the issue's settings unless overridden)."""
        return FlowSampler.slat(self.slat_flow, **overrides)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per stage and in all."""
        counts = {name: sum(p.numel() for p in child.parameters()) for name, child in self.named_children()}
        return {**counts, "total": sum(counts.values())}

    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """Write ``{"format", "config", "state_dict", "metadata"}`` to ``path`` atomically."""
        from accel3d.core.io import atomic_write

        payload = {"format": FORMAT, "config": asdict(self.config), "state_dict": self.state_dict(), "metadata": metadata or {}}
        with atomic_write(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, map_location: str = "cpu", expect: ImageTo3DConfig | None = None
    ) -> ImageTo3DModels:
        """Load a checkpoint (a ``.pt`` file or a folder holding ``model.pt``; None: the shipped weights).

        ``expect``: the architecture the caller needs; a checkpoint of another config is refused,
        naming the fields that differ. The model comes back in eval mode on ``map_location``.
        """
        return read_checkpoint(cls, path, map_location, expect)


def _resolve(path: str | Path | None) -> Path:
    if path is not None and (not isinstance(path, str | Path) or not str(path)):
        raise ValueError(f"weights: expected None (the shipped weights) or a path, got {path!r}")
    resolved = Path(path).expanduser() if path is not None else DEFAULT_WEIGHTS
    if resolved.is_dir():
        resolved = resolved / "model.pt"
    if not resolved.is_file():
        shipped = " (the shipped image-to-3D weights are not installed)" if path is None else ""
        raise FileNotFoundError(f"weights: no weights file at '{resolved}'{shipped}")
    return resolved


def architecture_differences(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> list[str]:
    """Human-readable differences between a model's state dict and a checkpoint's: missing, unexpected, reshaped keys."""

    def listed(label: str, keys: list[str]) -> str:
        more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
        return f"{label} ({len(keys)}): {', '.join(keys[:_SHOWN])}{more}"

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [
        f"{k} {tuple(found[k].shape)} in the file vs {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in found and isinstance(found[k], torch.Tensor) and found[k].shape != v.shape
    ]
    kinds = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", reshaped))
    return [listed(label, keys) for label, keys in kinds if keys]


def read_checkpoint(cls: type, path: str | Path | None, map_location: str = "cpu", expect: ImageTo3DConfig | None = None) -> Any:
    """Build ``cls`` (:class:`ImageTo3DModels`) from a checkpoint, checked; see :meth:`ImageTo3DModels.from_pretrained`."""
    try:
        torch.device(map_location)
    except (RuntimeError, TypeError):
        raise ValueError(f"map_location: expected a device such as 'cpu' or 'cuda:0', got {map_location!r}") from None
    path = _resolve(path)
    payload = load_torch_file(path, "weights")
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict) or "config" not in payload:
        raise ValueError(f"weights: '{path}' is not an accel3d image-to-3D checkpoint (expected a dict with 'config' and 'state_dict')")
    if payload.get("format") != FORMAT:
        found = payload.get("format")
        raise ValueError(f"weights: '{path}' is not an accel3d image-to-3D checkpoint (format {found!r}, expected {FORMAT!r})")
    try:
        config = ImageTo3DConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"weights: '{path}' has an unusable config ({exc})") from None
    if expect is not None:
        differ = [
            f"{f.name}={getattr(config, f.name)!r} (expected {getattr(expect, f.name)!r})"
            for f in fields(config)
            if getattr(config, f.name) != getattr(expect, f.name)
        ]
        if differ:
            raise ValueError(f"weights: '{path}' is a checkpoint of a different architecture: {'; '.join(differ)}")
    model = cls(config)
    state = payload["state_dict"]
    differences = architecture_differences(model.state_dict(), state)
    if differences:
        raise ValueError(f"weights: '{path}' does not match the image-to-3D architecture of its config: {'; '.join(differences)}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"weights: '{path}' has NaN or inf in {len(bad)} tensors, first {bad[0]}")
    model.load_state_dict(state)
    model.metadata = payload.get("metadata", {}) or {}
    return model.to(map_location).eval()
