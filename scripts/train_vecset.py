"""Train the shipped reference vecset VAE on real meshes plus procedural shapes.

    python scripts/train_vecset.py                      # ~30 min on 2 CPU cores
    python scripts/train_vecset.py --steps 200 --out /tmp/try.pt   # quick check

Needs ``pymeshlab`` (``pip install pymeshlab``) for its bundled sample meshes
(bunny, cow, airplane, bone); it is a training-only dependency. The run is
reproducible from ``--seed``. It writes the weights, a JSON report with the
reconstruction IoU per training mesh at 128^3, and the decimated bunny that the
default job uses (``accel3d/assets/bunny.ply``).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from accel3d.core.io import write_json
from accel3d.geometry.meshes import BUNDLED_MESH, normalize_mesh, occupancy_grid
from accel3d.geometry.metrics import volume_iou
from accel3d.geometry.volume import DenseVolumeDecoder
from accel3d.models.vecset.vae import DEFAULT_WEIGHTS, VecsetVAE, VecsetVAEConfig

REAL_MESHES = ("bunny.obj", "cow.obj", "airplane.obj", "bone.ply")
TRUNCATION = 0.03  # world units: the field is clamp(sdf / TRUNCATION, -1, 1)
ENTROPY_QUERIES = 256  # near-surface queries per shape whose attention entropy is penalised


@dataclass
class ShapePool:
    """Pre-computed samples of one normalised shape, reused under random transforms."""

    name: str
    mesh: trimesh.Trimesh
    surface: np.ndarray  # (S, 3)
    normals: np.ndarray  # (S, 3)
    queries: np.ndarray  # (Q, 3)
    sdf: np.ndarray  # (Q,), positive inside
    near: int  # the first `near` queries lie close to the surface


def load_real_meshes(max_faces: int) -> dict[str, trimesh.Trimesh]:
    import pymeshlab

    folder = Path(pymeshlab.__file__).parent / "tests" / "sample_meshes"
    meshes = {}
    for name in REAL_MESHES:
        ms = pymeshlab.MeshSet()
        ms.load_new_mesh(str(folder / name))
        ms.meshing_remove_duplicate_vertices()
        if ms.current_mesh().face_number() > max_faces:
            ms.meshing_decimation_quadric_edge_collapse(targetfacenum=max_faces, preservenormal=True)
        m = ms.current_mesh()
        meshes[Path(name).stem] = normalize_mesh(trimesh.Trimesh(m.vertex_matrix(), m.face_matrix(), process=True))
    return meshes


def procedural_meshes(count: int, rng: np.random.Generator) -> dict[str, trimesh.Trimesh]:
    makers = [
        lambda: trimesh.creation.box(extents=rng.uniform(0.3, 1.0, 3)),
        lambda: trimesh.creation.icosphere(subdivisions=3, radius=rng.uniform(0.3, 0.6)),
        lambda: trimesh.creation.capsule(height=rng.uniform(0.3, 1.0), radius=rng.uniform(0.1, 0.35)),
        lambda: trimesh.creation.cylinder(radius=rng.uniform(0.1, 0.5), height=rng.uniform(0.2, 1.2), sections=48),
        lambda: trimesh.creation.cone(radius=rng.uniform(0.2, 0.6), height=rng.uniform(0.4, 1.2), sections=48),
        lambda: trimesh.creation.torus(rng.uniform(0.35, 0.6), rng.uniform(0.06, 0.2), 48, 24),
        lambda: trimesh.creation.box(extents=[rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.2), rng.uniform(0.02, 0.06)]),
    ]
    meshes = {}
    for i in range(count):
        kind = i % len(makers)
        mesh = makers[kind]()
        mesh.apply_transform(_random_rotation(rng))  # a random pose, fixed per shape
        mesh.apply_scale(rng.uniform(0.7, 1.3, 3) if kind != 6 else 1.0)  # non-uniform, except thin plates
        meshes[f"proc{i:02d}_{kind}"] = normalize_mesh(mesh, extent=rng.uniform(0.5, 0.9))
    return meshes


def _random_rotation(rng: np.random.Generator, max_degrees: float = 180.0) -> np.ndarray:
    """A 4x4 rotation about a random axis by up to ``max_degrees`` (180: uniform over SO(3))."""
    mat = np.eye(4)
    if max_degrees >= 180:
        mat[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    else:
        axis = rng.normal(size=3)
        angle = np.radians(rng.uniform(-max_degrees, max_degrees))
        mat[:3, :3] = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
    return mat


def build_pool(name: str, mesh: trimesh.Trimesh, rng: np.random.Generator, n_near: int, n_far: int) -> ShapePool:
    seed = int(rng.integers(1 << 31))
    dense, dense_face = trimesh.sample.sample_surface(mesh, 300_000, seed=seed)
    surface, face = trimesh.sample.sample_surface(mesh, 60_000, seed=seed + 1)
    normals = mesh.face_normals[face]
    base = dense[rng.integers(0, len(dense), n_near)]
    sigma = np.where(rng.random(n_near) < 0.5, 0.005, 0.03)[:, None]
    near = base + rng.normal(size=base.shape) * sigma
    far = rng.uniform(-1.2, 1.2, size=(n_far, 3))
    queries = np.concatenate([near, far]).astype(np.float32)
    # Sign by a vote of the 8 nearest surface samples' face normals: far faster than the
    # winding number and reliable at these sample densities (evaluation uses winding numbers).
    dist, idx = cKDTree(dense).query(queries, k=8, workers=-1)
    offsets = queries[:, None] - dense[idx]
    behind = (offsets * mesh.face_normals[dense_face[idx]]).sum(-1) < 0
    inside = behind.mean(-1) > 0.5
    sdf = np.where(inside, dist[:, 0], -dist[:, 0]).astype(np.float32)
    return ShapePool(name, mesh, surface.astype(np.float32), normals.astype(np.float32), queries, sdf, n_near)


def sample_batch(
    pools: list[ShapePool],
    rng: np.random.Generator,
    batch: int,
    n_points: int,
    n_queries: int,
    identity_prob: float,
    canonical: set[str],
    max_degrees: float = 15.0,
):
    pts, nrm, qry, tgt = [], [], [], []
    for _ in range(batch):
        # Half the batch comes from the real meshes, which the IoU report is about.
        names = canonical if rng.random() < 0.5 else None
        choices = [p for p in pools if names is None or p.name in names]
        pool = choices[rng.integers(len(choices))]
        if pool.name in canonical and rng.random() < identity_prob:
            rot, scale, shift = np.eye(3), 1.0, np.zeros(3)
        else:
            rot = _random_rotation(rng, max_degrees)[:3, :3]
            scale = rng.uniform(0.8, 1.1)
            shift = rng.uniform(-0.05, 0.05, 3)
        s_idx = rng.integers(0, len(pool.surface), n_points)
        surf = pool.surface[s_idx] @ rot.T
        reach = np.abs(pool.surface @ rot.T).max()
        scale = min(scale, 0.97 / (reach + 0.05))  # keep the whole shape inside the box
        half = n_queries // 2
        q_idx = np.concatenate([rng.integers(0, pool.near, half), rng.integers(pool.near, len(pool.queries), n_queries - half)])
        pts.append(surf * scale + shift)
        nrm.append(pool.normals[s_idx] @ rot.T)
        qry.append(pool.queries[q_idx] @ rot.T * scale + shift)
        tgt.append(pool.sdf[q_idx] * scale)
    as_t = lambda xs: torch.as_tensor(np.stack(xs), dtype=torch.float32)  # noqa: E731
    target = (as_t(tgt) / TRUNCATION).clamp(-1.0, 1.0)
    return as_t(pts), as_t(nrm), as_t(qry), target


def attention_entropy(model: VecsetVAE, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the geo decoder's cross-attention over ``queries`` (B, Q, 3).

    Penalising it concentrates each query's attention on few latent tokens, the locality
    FlashVDM's adaptive KV selection relies on (it reports ~10 active tokens per query in
    Hunyuan3D-2); a small model left alone spreads its attention over ~40% of the tokens.
    """
    g = model.geo_decoder
    k, _ = g.keys_values(tokens)
    block = g.cross_attn_decoder
    q = block.attn.queries(block.ln_1(g.query_proj(g.fourier_embedder(queries))))
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()


def evaluate(model: VecsetVAE, meshes: dict[str, trimesh.Trimesh], resolution: int, n_points: int) -> dict[str, float]:
    from accel3d.geometry.meshes import sample_surface

    decoder = DenseVolumeDecoder(progress=False)
    scores = {}
    for name, mesh in meshes.items():
        points, normals = sample_surface(mesh, n_points, seed=0)
        with torch.no_grad():
            latents = model.encode(points[None], normals[None])
        grid = decoder.decode(model.field(latents), resolution, bound=model.bounds).values
        truth = occupancy_grid(mesh, resolution, model.bounds)
        scores[name] = volume_iou(grid.numpy() > 0, truth)
        print(f"  IoU@{resolution}^3 {name}: {scores[name]:.4f}", flush=True)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--num-latents", type=int, default=256, help="latent tokens (Hunyuan3D-2: 3072; mini: 512)")
    parser.add_argument("--geo-mlp-ratio", type=int, default=4, help="geo decoder MLP expansion (Hunyuan3D-2: 4; its turbo decoder: 1)")
    parser.add_argument(
        "--geo-ln-post", action=argparse.BooleanOptionalAction, default=True, help="LayerNorm before the output (turbo: off)"
    )
    parser.add_argument(
        "--entropy-weight", type=float, default=0.0, help="weight of the geo decoder's mean attention entropy (nats) in the loss; 0: off"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--points", type=int, default=2048, help="surface points fed to the encoder")
    parser.add_argument("--queries", type=int, default=2048, help="field samples per shape per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-5)
    parser.add_argument("--procedural", type=int, default=16, help="number of procedural shapes")
    parser.add_argument("--max-faces", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-resolution", type=int, default=128)
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--cache", type=Path, default=Path(".cache/vecset_pools.pt"))
    parser.add_argument("--write-asset", action="store_true", help="also write the decimated bunny asset")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()

    real = load_real_meshes(args.max_faces)
    if args.write_asset:
        BUNDLED_MESH.parent.mkdir(parents=True, exist_ok=True)
        real["bunny"].export(BUNDLED_MESH)
        print(f"wrote {BUNDLED_MESH}")
    shapes = {**real, **procedural_meshes(args.procedural, rng)}
    # Each shape's samples come from their own seeded generator, so loading them from the
    # cache leaves `rng` exactly where building them would: same seed, same weights.
    key = (args.seed, args.procedural, args.max_faces, "per-shape-rng")
    cached = torch.load(args.cache, weights_only=False) if args.cache.is_file() else None
    if cached is not None and cached["key"] == key:
        pools = cached["pools"]
        print(f"loaded sample pools from {args.cache}")
    else:
        items = tqdm(list(shapes.items()), desc="sampling shapes")
        pools = [build_pool(n, m, np.random.default_rng([args.seed, i]), 120_000, 60_000) for i, (n, m) in enumerate(items)]
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "pools": pools}, args.cache)

    config = VecsetVAEConfig(
        num_latents=args.num_latents, geo_decoder_mlp_expand_ratio=args.geo_mlp_ratio, geo_decoder_ln_post=args.geo_ln_post
    )
    model = VecsetVAE(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = min(200, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    )
    canonical = set(real)
    bar = tqdm(range(args.steps), desc="training")
    for step in bar:
        pts, nrm, qry, target = sample_batch(pools, rng, args.batch, args.points, args.queries, 0.5, canonical)
        mean, logvar = model.encoder(pts, nrm)
        latents = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        tokens = model.decode(latents)
        pred = model.geo_decoder(qry, tokens)
        recon = (pred - target).abs().mean()
        kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean()
        loss = recon + args.kl_weight * kl
        if args.entropy_weight:  # an extra attention pass: only when it is penalised
            entropy = attention_entropy(model, qry[:, :ENTROPY_QUERIES], tokens)
            loss = loss + args.entropy_weight * entropy
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0:
            acc = ((pred > 0) == (target > 0)).float().mean().item()
            shown = {"l1": f"{recon.item():.4f}", "sign_acc": f"{acc:.4f}"}
            if args.entropy_weight:
                shown["attn_entropy"] = f"{entropy.item():.2f}"
            bar.set_postfix(shown)

    model.eval()
    print(f"evaluating reconstruction IoU at {args.eval_resolution}^3 on the training meshes")
    scores = evaluate(model, real, args.eval_resolution, args.points)
    metadata = {
        "trained_by": "scripts/train_vecset.py",
        "args": {k: str(v) for k, v in vars(args).items() if k not in ("out", "cache")},
        "field": f"clamp(sdf / {TRUNCATION}, -1, 1), positive inside",
        "truncation": TRUNCATION,
        "train_minutes": round((time.perf_counter() - started) / 60, 1),
        "iou": {"resolution": args.eval_resolution, **{k: round(v, 4) for k, v in scores.items()}},
    }
    model.save(args.out, metadata)
    write_json(args.out.with_suffix(".json"), metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); mean IoU {np.mean(list(scores.values())):.4f}")


if __name__ == "__main__":
    main()
