"""Hunyuan3D-2 (``hy3dgen``): its ShapeVAE release folders (``hunyuan3d-vae-v2-0`` and its mini/turbo
variants; the turbo decoder has no ``ln_post``, an MLP ratio of 1 and runs at half
width through ``latents_proj``) into :class:`accel3d.models.vecset.vae.VecsetVAE`.

A Hunyuan3D-2 VAE folder holds ``config.yaml`` (``params:`` are the ShapeVAE
constructor arguments) and ``model.safetensors`` or ``model.ckpt``, optionally
with a variant such as ``model.fp16.safetensors``. The ShapeVAE is decoder-only
and its parameter names are the ones accel3d's VAE uses, so its state dict loads
directly; only accel3d's point-cloud encoder stays without weights
(``vae.has_encoder`` is False and :meth:`VecsetVAE.encode` refuses to run).

Here: finding a release folder's files, reading its state dict (safetensors or a torch file),
mapping its config onto :class:`VecsetVAEConfig` and loading it. hy3dgen itself is never imported:
accel3d reads the files it writes.

Example::

    vae = load_hunyuan_vae("~/models/Hunyuan3D-2/hunyuan3d-vae-v2-0")
    field = vae.field(latents / vae.config.scale_factor)  # latents from the Hunyuan3D-2 DiT
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from accel3d.core.io import load_torch_file
from accel3d.models.vecset.vae import VecsetVAE, VecsetVAEConfig

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
    """The tensors of a release's weights file: safetensors, or a torch file (under ``state_dict`` or not)."""
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


# ShapeVAE arguments and their defaults in hy3dgen 2.0.2 (where they differ from accel3d's).
HUNYUAN_DEFAULTS = {"include_pi": True, "qkv_bias": True, "qk_norm": False, "geo_decoder_ln_post": True, "geo_decoder_mlp_expand_ratio": 4}
_CONFIG_KEYS = {
    "num_latents",
    "embed_dim",
    "width",
    "heads",
    "num_decoder_layers",
    "num_freqs",
    "include_pi",
    "qkv_bias",
    "qk_norm",
    "geo_decoder_mlp_expand_ratio",
    "geo_decoder_ln_post",
    "geo_decoder_downsample_ratio",
    "scale_factor",
}
_IGNORED_KEYS = {"label_type", "drop_path_rate"}  # no effect on inference


def config_from_hunyuan(params: dict) -> VecsetVAEConfig:
    """Map ShapeVAE constructor arguments (``config.yaml``'s ``params``) to a :class:`VecsetVAEConfig`."""
    unknown = set(params) - _CONFIG_KEYS - _IGNORED_KEYS
    if unknown:
        raise ValueError(f"config_from_hunyuan: unknown ShapeVAE parameters {sorted(unknown)}")
    missing = {"num_latents", "embed_dim", "width", "heads", "num_decoder_layers"} - set(params)
    if missing:
        raise ValueError(f"config_from_hunyuan: ShapeVAE parameters {sorted(missing)} are required")
    values = {**HUNYUAN_DEFAULTS, **{k: v for k, v in params.items() if k in _CONFIG_KEYS}}
    values["scale_factor"] = float(values.get("scale_factor", 1.0))
    return VecsetVAEConfig(**values)


def load_hunyuan_state_dict(vae: VecsetVAE, state_dict: dict[str, torch.Tensor]) -> VecsetVAE:
    """Load a ShapeVAE state dict into ``vae``; only accel3d's own encoder may be missing."""
    result = vae.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("encoder.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"load_hunyuan_state_dict: the checkpoint does not match the config: missing {missing[:8]}, "
            f"unexpected {result.unexpected_keys[:8]}"
        )
    vae.has_encoder = not any(k.startswith("encoder.") for k in result.missing_keys)
    return vae


def load_hunyuan_vae(path: str | Path) -> VecsetVAE:
    """Build accel3d's VAE from a Hunyuan3D-2 VAE folder (``config.yaml`` + weights), in float32."""
    weights, config_path = find_checkpoint(path)
    try:
        data = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"weights: '{config_path}' is not valid YAML ({exc})") from None
    params = data.get("params", data) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise ValueError(f"weights: '{config_path}' has no ShapeVAE params mapping")
    try:
        config = config_from_hunyuan(params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"weights: '{config_path}': {exc}") from None
    vae = load_hunyuan_state_dict(VecsetVAE(config), read_state_dict(weights))
    vae.metadata = {"source": str(weights), "format": "hunyuan3d-2"}
    return vae.eval()


def stages(obj: Any) -> dict[str, Any] | None:
    """The stages of hy3dgen's ``ShapeVAE`` or pipeline (:func:`accel3d.integrations.hunyuan3d_stages.stages`)."""
    from accel3d.integrations import hunyuan3d_stages

    return hunyuan3d_stages.stages(obj)


def hunyuan_params(config: VecsetVAEConfig) -> dict[str, Any]:
    """The ``ShapeVAE`` constructor arguments of a :class:`VecsetVAEConfig` (the inverse of :func:`config_from_hunyuan`)."""
    values = {k: getattr(config, k) for k in sorted(_CONFIG_KEYS)}
    values["scale_factor"] = float(values["scale_factor"])
    return values


def to_shape_vae(vae: VecsetVAE, shape_vae_class: Any = None) -> Any:
    """hy3dgen's own ``ShapeVAE`` holding ``vae``'s decoder weights (accel3d's encoder has no place there), in eval mode.

    ``shape_vae_class`` defaults to hy3dgen's ``ShapeVAE`` (:func:`hy3dgen_autoencoders`).

    Example::

        shape_vae = to_shape_vae(load_vae(None))          # the shipped vecset weights in hy3dgen's class
        accel3d.apply(shape_vae, "flashvdm")
    """
    if shape_vae_class is None:
        shape_vae_class = hy3dgen_autoencoders().ShapeVAE
    shape_vae = shape_vae_class(**hunyuan_params(vae.config))
    decoder_state = {k: v for k, v in vae.state_dict().items() if not k.startswith("encoder.")}
    shape_vae.load_state_dict(decoder_state, strict=True)
    return shape_vae.eval().requires_grad_(False)


HY3DGEN_INSTALL = "pip install --no-deps hy3dgen==2.0.2 einops"


def hy3dgen_autoencoders() -> Any:
    """hy3dgen's ``hy3dgen.shapegen.models.autoencoders`` module (``ShapeVAE``, its volume decoders). Where ``hy3dgen``'s
    package ``__init__`` files cannot run (they import its image pipeline's dependencies: torchvision, cv2, rembg), the
    module is imported on its own, under its parent packages registered without their ``__init__`` code; the VAE
    needs none of that.

    Raises ``ModuleNotFoundError`` naming the install line where hy3dgen (or einops) is absent.
    """
    import importlib
    import importlib.util
    import sys
    import types

    name = "hy3dgen.shapegen.models.autoencoders"
    if name in sys.modules:  # imported already
        return sys.modules[name]
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if importlib.util.find_spec("einops") is None or exc.name == "hy3dgen":
            raise ModuleNotFoundError(f"hy3dgen 2.0.2 is not installed: {HY3DGEN_INSTALL}") from None
    found = getattr(sys.modules.get("hy3dgen"), "__path__", None) or (importlib.util.find_spec("hy3dgen").submodule_search_locations or [])
    root = Path(list(found)[0])
    parents = (("hy3dgen", root), ("hy3dgen.shapegen", root / "shapegen"), ("hy3dgen.shapegen.models", root / "shapegen" / "models"))
    for parent, folder in parents:
        if parent not in sys.modules:  # the failed import removed it: registered without its __init__ code
            module = types.ModuleType(parent)
            module.__path__ = [str(folder)]
            sys.modules[parent] = module
    # the module itself may have been imported before a package __init__ failed on an image dependency
    return sys.modules.get(name) or importlib.import_module(name)
