"""accel3d's VAE loads Hunyuan3D-2 ShapeVAE checkpoints and gives hy3dgen's field (to 1e-5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from accel3d.decoding import AdaptiveKVSelection
from accel3d.integrations.hunyuan3d import config_from_hunyuan, load_hunyuan_vae
from accel3d.models import load_vae
from accel3d.models.vecset.vae import VecsetVAE
from tests.integrations.hy3dgen_import import INSTALL_HINT, import_hy3dgen_autoencoders

autoencoders = import_hy3dgen_autoencoders()
needs_hy3dgen = pytest.mark.skipif(autoencoders is None, reason=f"hy3dgen 2.0.2 is not installed; {INSTALL_HINT}")

SMALL = {"embed_dim": 8, "width": 64, "heads": 4, "num_decoder_layers": 2}
VARIANTS = {
    # hunyuan3d-vae-v2-0's flags (3072 tokens there)
    "v2-0": {
        "num_latents": 96,
        "num_freqs": 8,
        "include_pi": False,
        "qkv_bias": False,
        "qk_norm": True,
        "scale_factor": 0.9990943042622529,
    },
    # the mini VAE's 512 tokens
    "mini": {"num_latents": 512, "num_freqs": 8, "include_pi": False, "qkv_bias": False, "qk_norm": True},
    # the turbo decoder: no ln_post (and so no qk-norm in the geo decoder's cross-attention), MLP ratio 1, half width
    "turbo": {
        "num_latents": 64,
        "include_pi": False,
        "qkv_bias": False,
        "qk_norm": True,
        "geo_decoder_ln_post": False,
        "geo_decoder_mlp_expand_ratio": 1,
        "geo_decoder_downsample_ratio": 2,
    },
    # hy3dgen's own constructor defaults (pi frequencies, qkv bias, no qk-norm)
    "defaults": {"num_latents": 32},
}


def _release_folder(tmp_path: Path, params: dict, seed: int) -> tuple[Path, torch.nn.Module]:
    """A hy3dgen ShapeVAE with random weights, written like a Hunyuan3D-2 release folder."""
    torch.manual_seed(seed)
    reference = autoencoders.ShapeVAE(**params).eval()
    with torch.no_grad():
        for p in reference.parameters():  # LayerNorms start at 1/0: perturb everything
            p.add_(torch.randn_like(p) * 0.2)
    folder = tmp_path / "hunyuan3d-vae"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"target": "hy3dgen.shapegen.models.ShapeVAE", "params": params}))
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(folder / "model.safetensors"))
    return folder, reference


@needs_hy3dgen
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_field_as_hy3dgen(tmp_path, variant):
    params = {**SMALL, **VARIANTS[variant]}
    folder, reference = _release_folder(tmp_path, params, seed=len(variant))
    vae = load_vae(folder)
    assert not vae.has_encoder
    assert vae.config.scale_factor == params.get("scale_factor", 1.0)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, params["num_latents"], params["embed_dim"], generator=g)
    points = torch.rand(1, 3000, 3, generator=g) * 2.02 - 1.01
    with torch.no_grad():
        expected = reference.geo_decoder(queries=points, latents=reference(latents))[..., 0]
        tokens = vae.decode(latents)
        torch.testing.assert_close(tokens, reference(latents), atol=1e-5, rtol=1e-5)
        got = vae.field(latents)(points[0])
    assert expected.abs().max() > 0.1  # a field worth comparing
    torch.testing.assert_close(got, expected[0], atol=1e-5, rtol=1e-5)


@needs_hy3dgen
def test_adaptive_kv_on_a_hunyuan_checkpoint(tmp_path):
    params = {**SMALL, **VARIANTS["mini"]}
    folder, reference = _release_folder(tmp_path, params, seed=7)
    vae = load_hunyuan_vae(folder)
    latents = torch.randn(1, 512, params["embed_dim"])
    points = torch.rand(4000, 3) * 2 - 1
    field = vae.field(latents)
    dense = field(points)
    with AdaptiveKVSelection(mode="mean", topk=512).applied(vae.geo_decoder):  # every key: the untouched path
        assert torch.equal(field(points), dense)
    with AdaptiveKVSelection(mode="merge", threshold=0.0).applied(vae.geo_decoder):  # every key through the packed path
        torch.testing.assert_close(field(points), dense, atol=1e-5, rtol=1e-5)
    with AdaptiveKVSelection(mode="mean", topk=64).applied(vae.geo_decoder) as acc:
        assert field(points).shape == dense.shape and acc.stats()["keys_per_query"] == 64


def test_config_mapping_without_hy3dgen():
    cfg = config_from_hunyuan(
        {
            "num_latents": 3072,
            "embed_dim": 64,
            "width": 1024,
            "heads": 16,
            "num_decoder_layers": 16,
            "num_freqs": 8,
            "include_pi": False,
            "qkv_bias": False,
            "qk_norm": True,
            "scale_factor": 0.999,
        }
    )
    assert (cfg.num_latents, cfg.width, cfg.heads, cfg.include_pi, cfg.qkv_bias, cfg.qk_norm) == (3072, 1024, 16, False, False, True)
    assert config_from_hunyuan({**SMALL, "num_latents": 8}).include_pi  # hy3dgen's default differs from accel3d's
    with pytest.raises(ValueError, match="unknown ShapeVAE parameters"):
        config_from_hunyuan({**SMALL, "num_latents": 8, "latent_dim": 3})
    assert config_from_hunyuan({**SMALL, "num_latents": 8, "geo_decoder_downsample_ratio": 2}).geo_decoder_downsample_ratio == 2
    with pytest.raises(ValueError, match="geo_decoder_downsample_ratio=3 must divide width=64 and heads=4"):
        VecsetVAE(config_from_hunyuan({**SMALL, "num_latents": 8, "geo_decoder_downsample_ratio": 3}))


def test_mismatched_checkpoint_is_refused(tmp_path):
    folder = tmp_path / "vae"
    folder.mkdir()
    params = {**SMALL, "num_latents": 8}
    (folder / "config.yaml").write_text(yaml.safe_dump({"params": params}))
    state = {k: v for k, v in VecsetVAE(config_from_hunyuan(params)).state_dict().items() if not k.startswith("encoder.")}
    state.pop("post_kl.weight")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(folder / "model.fp16.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['post_kl.weight'\], unexpected \['extra.weight'\]"):
        load_vae(folder)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_vae(tmp_path / "nowhere")


def test_decoder_only_weights_refuse_to_encode(tmp_path):
    folder = tmp_path / "vae"
    folder.mkdir()
    params = {**SMALL, "num_latents": 8}
    (folder / "config.yaml").write_text(yaml.safe_dump({"params": params}))
    state = {k: v for k, v in VecsetVAE(config_from_hunyuan(params)).state_dict().items() if not k.startswith("encoder.")}
    torch.save(state, folder / "model.ckpt")
    vae = load_vae(folder)
    with pytest.raises(RuntimeError, match="no encoder"):
        vae.encode(torch.zeros(1, 16, 3), torch.zeros(1, 16, 3))


def test_pipeline_decodes_latents_with_a_hunyuan_checkpoint(tmp_path):
    from accel3d.models.vecset.pipeline import VecsetShapePipeline

    folder = tmp_path / "vae"
    folder.mkdir()
    params = {**SMALL, "num_latents": 16, "include_pi": False, "qk_norm": True, "scale_factor": 0.5}
    (folder / "config.yaml").write_text(yaml.safe_dump({"params": params}))
    torch.manual_seed(0)
    decoder = {k: v for k, v in VecsetVAE(config_from_hunyuan(params)).state_dict().items() if not k.startswith("encoder.")}
    save_file(decoder, str(folder / "model.safetensors"))
    latents = torch.randn(16, 8)
    torch.save(latents, tmp_path / "latents.pt")
    pipe = VecsetShapePipeline(weights=str(folder), input=str(tmp_path / "latents.pt"), resolution=16, progress=False)
    result = pipe.run(pipe.load_inputs())
    direct = pipe.volume_decoder.decode(pipe.vae.field(latents[None] / 0.5), 16, pipe.vae.bounds)  # scale_factor applied
    assert torch.equal(result.grid.values, direct.values)
    torch.save(torch.randn(15, 8), tmp_path / "wrong.pt")
    wrong = VecsetShapePipeline(weights=str(folder), input=str(tmp_path / "wrong.pt"), resolution=16, progress=False)
    with pytest.raises(ValueError, match=r"latents of shape \(15, 8\) do not fit this VAE, which takes \(16, 8\)"):
        wrong.run(wrong.load_inputs())
