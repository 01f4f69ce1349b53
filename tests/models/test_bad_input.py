"""Bad weight files and VAE configurations: each error names ``weights`` or the config field."""

import pytest
import torch

from accel3d.models.vecset_vae import VecsetVAE
from accel3d.pipelines.vecset_shape import VecsetShapePipeline, load_shape_inputs


def test_a_text_file_named_pt_is_refused_without_the_weights_only_advice(tmp_path, tiny_weights):
    text = tmp_path / "latents.pt"
    text.write_text("these are not latents\n")
    with pytest.raises(ValueError, match="^input: .* is not a readable PyTorch tensor file") as info:
        load_shape_inputs(text, 256)
    assert "weights_only" not in str(info.value) and info.value.__cause__ is None
    with pytest.raises(ValueError, match="^weights: .* is not a readable PyTorch tensor file") as info:
        VecsetVAE.from_pretrained(text)
    assert "weights_only" not in str(info.value)
    with pytest.raises(ValueError, match="^weights: expected null"):
        VecsetShapePipeline(weights="")


def test_weights_that_are_not_a_vae_or_hold_nan(tmp_path, tiny_weights):
    torch.save({"something": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="^weights: .* is not an accel3d VecsetVAE checkpoint"):
        VecsetVAE.from_pretrained(tmp_path / "other.pt")
    payload = torch.load(tiny_weights, weights_only=True)
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first][0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=f"^weights: .* NaN or inf in 1 tensors, first {first}"):
        VecsetVAE.from_pretrained(tmp_path / "nan.pt")


def test_review_findings_in_weights(tmp_path, tiny_weights, tiny_config):
    from dataclasses import asdict

    from accel3d.models.vecset_vae import VecsetVAEConfig

    for key, value in (("qk_norm", "false"), ("num_latents", 256.0), ("bounds", float("nan")), ("scale_factor", 0.0)):
        with pytest.raises(ValueError, match=f"VecsetVAEConfig.{key}: expected"):
            VecsetVAEConfig(**{**asdict(tiny_config), key: value})
        payload = torch.load(tiny_weights, weights_only=True)
        payload["config"][key] = value
        torch.save(payload, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match=f"^weights: .*VecsetVAEConfig.{key}: expected"):
            VecsetVAE.from_pretrained(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="^map_location: expected a device"):
        VecsetVAE.from_pretrained(tiny_weights, map_location="banana")
