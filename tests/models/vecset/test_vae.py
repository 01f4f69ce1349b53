import pytest
import torch

from accel3d.models.vecset.vae import DEFAULT_WEIGHTS, FourierEmbedder, VecsetVAE, VecsetVAEConfig, farthest_point_sample


def test_save_load_round_trip_gives_identical_fields(tmp_path, tiny_config):
    torch.manual_seed(1)
    vae = VecsetVAE(tiny_config).eval()
    pts, nrm = torch.rand(1, 64, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(1, 64, 3), dim=-1)
    queries = torch.rand(500, 3) * 2 - 1
    expected = vae.field(vae.encode(pts, nrm))(queries)
    vae.save(tmp_path / "m.pt", metadata={"note": "x"})
    for location in (tmp_path / "m.pt", tmp_path):
        if location == tmp_path:
            (tmp_path / "m.pt").rename(tmp_path / "model.pt")
        loaded = VecsetVAE.from_pretrained(location)
        assert loaded.config == tiny_config and loaded.metadata == {"note": "x"}
        assert torch.equal(loaded.field(loaded.encode(pts, nrm))(queries), expected)


def test_field_matches_the_training_forward(tiny_config):
    torch.manual_seed(2)
    vae = VecsetVAE(tiny_config).eval()
    pts, nrm, q = torch.rand(1, 64, 3), torch.rand(1, 64, 3), torch.rand(1, 300, 3)
    with torch.no_grad():
        full = vae(pts, nrm, q)[0]
    fast = vae.field(vae.encode(pts, nrm))(q[0])
    assert torch.allclose(full, fast, atol=1e-6)


def test_hunyuan3d2_sized_model_builds_with_its_parameter_names():
    cfg = VecsetVAEConfig(num_latents=3072, embed_dim=64, width=1024, heads=16, num_decoder_layers=16)
    with torch.device("meta"):
        vae = VecsetVAE(cfg)
    names = set(dict(vae.named_parameters()))
    for name in [
        "post_kl.weight",
        "transformer.resblocks.15.attn.c_qkv.weight",
        "transformer.resblocks.0.attn.attention.q_norm.weight",
        "geo_decoder.query_proj.weight",
        "geo_decoder.cross_attn_decoder.attn.c_q.weight",
        "geo_decoder.ln_post.weight",
    ]:
        assert name in names
    assert vae.geo_decoder.query_proj.in_features == 51  # 8 frequencies: [x, sin, cos]
    decoder = sum(p.numel() for n, p in vae.named_parameters() if not n.startswith("encoder."))
    w, d = 1024, 1024 // 16  # width, head dim
    self_attention = 12 * w * w + 13 * w + 4 * d  # qkv, proj and a 4x MLP with biases, 2 layer norms, q/k norms
    cross_attention = 12 * w * w + 15 * w + 4 * d  # q, kv, proj and a 4x MLP with biases, 3 layer norms, q/k norms
    # post_kl (64 -> w), the 16 layers, query_proj (51 -> w), the cross-attention layer, ln_post, output_proj (w -> 1)
    assert decoder == 65 * w + 16 * self_attention + 52 * w + cross_attention + 2 * w + w + 1 == 214_265_089


def test_fourier_embedding_layout():
    emb = FourierEmbedder(num_freqs=2, include_pi=False)
    x = torch.tensor([[0.5, 1.0, 2.0]])
    out = emb(x)
    assert out.shape == (1, 15)
    assert torch.allclose(out[0, :3], x[0])
    assert torch.allclose(out[0, 3:9], torch.sin(torch.tensor([0.5, 1.0, 1.0, 2.0, 2.0, 4.0])))


def test_farthest_point_sample_spreads_out():
    pts = torch.tensor([[[0.0, 0, 0], [0.01, 0, 0], [1, 0, 0], [0, 1, 0]]])
    assert sorted(farthest_point_sample(pts, 3)[0].tolist()) == [0, 2, 3]
    with pytest.raises(ValueError, match="k=5"):
        farthest_point_sample(pts, 5)


def test_bad_checkpoints_and_shapes(tmp_path, tiny_config):
    with pytest.raises(FileNotFoundError, match="no weights file"):
        VecsetVAE.from_pretrained(tmp_path / "none.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an accel3d VecsetVAE checkpoint"):
        VecsetVAE.from_pretrained(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unknown keys"):
        VecsetVAEConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match=r"\(B, P, 3\)"):
        VecsetVAE(tiny_config).encode(torch.zeros(10, 3), torch.zeros(10, 3))


def test_shipped_weights_are_small_and_reconstruct_the_bunny():
    from accel3d.decoding import DenseVolumeDecoder
    from accel3d.geometry.meshes import BUNDLED_MESH, load_mesh, normalize_mesh, occupancy_grid, sample_surface
    from accel3d.geometry.metrics import volume_iou

    assert DEFAULT_WEIGHTS.stat().st_size < 20e6
    vae = VecsetVAE.from_pretrained()
    mesh = normalize_mesh(load_mesh(BUNDLED_MESH))
    pts, nrm = sample_surface(mesh, 2048, seed=0)
    grid = DenseVolumeDecoder(progress=False).decode(vae.field(vae.encode(pts[None], nrm[None])), 48, vae.bounds)
    iou = volume_iou(grid.values.numpy() > 0, occupancy_grid(mesh, 48, vae.bounds))
    assert iou > 0.8, iou
