"""Train the shipped reference image-to-3D models (SS VAE, SS flow, SLaT VAE, SLaT flow) on 2 CPU cores.

    python scripts/train_image_to_3d.py --minutes 30            # all four stages, then the held-out evaluation
    python scripts/train_image_to_3d.py --tiny --out /tmp/t.pt  # end to end in seconds (the test)
    python scripts/train_image_to_3d.py --stages slat_flow --resume   # one stage on top of the cached others

Needs ``pymeshlab`` (``pip install -e ".[train]"``) for its sample meshes. Data, per
training mesh (:func:`accel3d.geometry.mesh_sources.train_meshes`), computed once and
cached under ``--cache`` (default ``~/.cache/accel3d/image_to_3d/``, never the repo):

- **structure**: the *shell* of :func:`~accel3d.geometry.voxelize.voxelize`'s shell+interior
  occupancy at ``structure_resolution^3``: an occupied voxel is dropped when all 26
  neighbours are occupied and all its corner SDF samples are inside. That is the
  TRELLIS/SAM3D structure (the voxels the surface passes through, a few thousand tokens
  instead of up to 15k for a solid box), and ``scatter_fine_sdf`` fills what it encloses,
  so it still decodes to a solid;
- **fine SDF** at exactly :func:`~accel3d.models.image_to_3d.fine_sample_points` (the
  ``s^3`` sub-cell centres of each voxel), **negative inside** as ``sdf_to_mesh`` expects:
  the sub-cell centre ``n`` lies at the middle of corner samples ``n .. n+1`` of
  ``voxelize``'s ``(F+1)^3`` grid (positive inside), so its trilinear value is the mean of
  those eight corners, negated; the truncation passed to ``voxelize`` is the config's
  ``sdf_truncation``, so both clamp alike;
- **views**: ``--views`` crops per mesh (``render_crop`` at the model's ``image_size`` from a
  ``--camera``-pixel render), a random flat colour each, in a pose ``R = R_delta @ R_default``:
  ``default_pose``'s upright three-quarter view turned about a random axis by up to
  ``--max-degrees`` (SAM3D predicts all of SO(3); a 30-minute CPU model cannot), the
  translation and per-axis scale of ``random_pose``.

Layout targets (``world = R (s p) + t``, the convention of ``render`` and ``pose.py``), in
the camera frame of the **crop** because the condition encoder sees only the crop and its
mask (no intrinsics, no box): ``rotation`` = the 6D of ``R`` (camera frame; the crop is a
zoom and shift of the image, so it does not change the rotation), ``translation`` =
``(a, b, log d)`` with ``(a, b)`` the object origin's projection in the crop in ``[-1, 1]``
units of its half-side and ``d = z * (S/2) / f_crop`` the depth as seen by a crop camera
of focal ``S/2`` (``crop_intrinsics``), and ``scale`` = ``log s``. The pipeline maps them
back with the crop box: ``z = d f_crop / (S/2)``, ``x = (a S/2 + S/2 - c_x) z / f_crop``.
Translation and scale tokens are standardised per channel with the training views' mean
and std (the flow's noise is N(0, 1)); the 6D rotation is left as is (entries in
[-1, 1]). A crop fixes everything but one number: the object's absolute size against its
depth (a large far object and a small near one give the same crop), so ``d`` and ``s`` are
only known up to one common factor, and the flow falls back on the training prior for
it. SAM3D resolves this with a point map; here it shows as the scale ratio error.

Stages (each trainable alone with ``--stages``; a stage's weights and figures go to
``<cache>/run-<key>/<stage>.pt``; ``--resume`` loads finished stages instead of
retraining them; retraining a stage deletes the stages that depend on it):

1. ``ss_vae``: BCE of the occupancy logits + ``--kl-weight`` KL;
2. ``ss_flow`` (and the condition encoder): rectified flow, ``x_t = (1 - t) noise + t data``,
   target velocity ``data - noise``, time 0 = noise -> 1 = data as ``FlowSampler`` integrates;
   data = the SS VAE's latent means standardised per channel, plus the layout tokens;
   ``--cond-dropout`` of the batch gets all-zero condition tokens (the sampler's
   unconditional pass);
3. ``slat_vae``: L1 of the decoded fine SDF (in truncation units) + KL, on local subsets of at
   most ``--slat-tokens`` voxels (the nearest occupied voxels to a random one: full
   attention over a whole object does not fit the budget);
4. ``slat_flow``: rectified flow on the SLaT encoder's latent means (of the whole object),
   standardised per channel; same condition dropout; same local subsets.

The normalisation statistics go into the checkpoint's metadata (``normalization``), with
the formulas to undo them. Steps: ``--steps`` per stage, or ``--minutes`` split across the
selected stages by ``STAGE_SHARE`` (a stage stops at its share of the time; the steps it
reached are in the JSON, and ``--steps`` of those numbers reproduces the run exactly, which
a time budget cannot). The weights are written in float16 (about 6 MB); the evaluation runs
on them as loaded by ``ImageTo3DModels.from_pretrained``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from scipy import ndimage
from tqdm import tqdm

from accel3d.core.io import write_json
from accel3d.geometry.metrics import chamfer_and_fscore
from accel3d.geometry.render import Camera, Pose, crop_intrinsics, default_pose, random_pose, render_crop
from accel3d.geometry.voxelize import voxelize
from accel3d.models.image_to_3d import (
    ImageTo3DConfig,
    ImageTo3DModels,
    downsample_structure,
    gather_fine_sdf,
    grid_to_tokens,
    matrix_to_rotation_6d,
    occupied_coords,
    place_mesh,
    rotation_6d_to_matrix,
    tokens_to_grid,
)
from accel3d.models.image_to_3d.checkpoint import DEFAULT_WEIGHTS

STAGES = ("ss_vae", "ss_flow", "slat_vae", "slat_flow")
STAGE_MODULES = {
    "ss_vae": ("ss_vae",),
    "ss_flow": ("condition", "ss_flow"),
    "slat_vae": ("slat_encoder", "slat_decoder"),
    "slat_flow": ("slat_flow",),
}
DEPENDENTS = {"ss_vae": ("ss_flow", "slat_flow"), "ss_flow": ("slat_flow",), "slat_vae": ("slat_flow",), "slat_flow": ()}
STAGE_SHARE = {"ss_vae": 0.12, "ss_flow": 0.55, "slat_vae": 0.1, "slat_flow": 0.23}
TINY_CONFIG = dict(
    image_size=32, cond_grid=4, cond_channels=16, structure_resolution=16, ss_latent_resolution=4, ss_vae_channels=16,
    ss_flow_width=32, ss_flow_depth=1, ss_flow_heads=2, slat_vae_width=32, slat_vae_depth=1, slat_vae_heads=2,
    slat_flow_width=32, slat_flow_depth=1, slat_flow_heads=2, sdf_truncation=0.25,
)  # fmt: skip
DATA_VERSION = 1  # bump when the cached targets change meaning
_MESHES: dict[str, trimesh.Trimesh] = {}  # every mesh of the run by name (for the evaluation's ground truth)


# ----------------------------------------------------------------------------------------- data


def shell(occupancy: np.ndarray, sdf: np.ndarray, k: int) -> np.ndarray:
    """The voxels of ``occupancy`` (R^3) that are not interior: interior = 26 occupied neighbours and all corners inside."""
    full = ndimage.binary_erosion(occupancy, np.ones((3, 3, 3), bool), border_value=0)
    window = np.lib.stride_tricks.sliding_window_view(sdf, (k + 1,) * 3)[::k, ::k, ::k]
    all_inside = window.min(axis=(-3, -2, -1)) > 0
    return occupancy & ~(full & all_inside)


def mesh_targets(mesh: trimesh.Trimesh, config: ImageTo3DConfig) -> dict:
    """Shell structure ``[R, R, R]`` bool and the fine SDF ``[F, F, F]`` (negative inside) at the sub-cell centres."""
    r, s = config.structure_resolution, config.slat_subdivision
    vox = voxelize(mesh, r, bound=config.bound, sdf_resolution=r * s, truncation=config.sdf_truncation)
    corners = vox.sdf.double()  # (F+1)^3, positive inside
    # sub-cell centre n is the middle of corners n..n+1: its trilinear value is the mean of the 8 corners
    centre = corners.unfold(0, 2, 1).unfold(1, 2, 1).unfold(2, 2, 1).mean(dim=(-3, -2, -1))
    structure = shell(vox.occupancy.numpy(), vox.sdf.numpy(), s)
    return {
        "solid": vox.occupancy.clone(),
        "structure": torch.from_numpy(structure),
        "fine": (-centre).float(),  # negative inside, as sdf_to_mesh reads it
    }


def view_pose(generator: torch.Generator, camera: Camera, max_degrees: float) -> Pose:
    delta = random_pose(generator, camera, max_degrees=max_degrees)
    return Pose(delta.rotation @ default_pose().rotation, delta.translation, delta.scale)


def layout_tokens(pose: Pose, camera: Camera, box: tuple[int, int, int, int], size: int) -> dict[str, torch.Tensor]:
    """The raw (unstandardised) layout targets of a view: 6D rotation, crop-relative ``(a, b, log d)``, ``log s``."""
    K = crop_intrinsics(camera, box, size)
    x, y, z = (float(v) for v in pose.translation)
    f, half = K[0, 0], size / 2
    a = (f * x / z + K[0, 2] - half) / half
    b = (f * y / z + K[1, 2] - half) / half
    d = z * half / f
    return {
        "rotation": matrix_to_rotation_6d(pose.rotation.float()),
        "translation": torch.tensor([a, b, math.log(d)], dtype=torch.float32),
        "scale": pose.scale.float().log(),
    }


def camera_translation(token: torch.Tensor, camera: Camera, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """Inverse of :func:`layout_tokens`' translation: crop ``(a, b, log d)`` -> the camera-frame translation."""
    K = crop_intrinsics(camera, box, size)
    f, half = K[0, 0], size / 2
    a, b, logd = (float(v) for v in token.reshape(3))
    z = math.exp(logd) * f / half
    return torch.tensor([(a * half + half - K[0, 2]) * z / f, (b * half + half - K[1, 2]) * z / f, z], dtype=torch.float32)


def render_views(mesh: trimesh.Trimesh, count: int, seed: int, camera: Camera, size: int, max_degrees: float) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    views = []
    for _ in range(count):
        pose = view_pose(g, camera, max_degrees)
        color = tuple(float(c) for c in 0.35 + 0.6 * torch.rand(3, generator=g))
        crop = render_crop(mesh, pose, camera, size=size, color=color)
        views.append(
            {"rgb": crop.rgb.half(), "mask": crop.mask.clone(), "box": tuple(int(v) for v in crop.box), "pose": tuple(pose),
             "layout": layout_tokens(pose, camera, crop.box, size)}
        )  # fmt: skip
    return views


def build_data(meshes: dict[str, trimesh.Trimesh], config: ImageTo3DConfig, args, camera: Camera, split: str, views: int) -> dict:
    """Targets and views of every mesh, from the cache when it holds them (one file per mesh)."""
    folder = args.cache / "data"
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for name, mesh in tqdm(list(meshes.items()), desc=f"{split} data", file=sys.stdout):
        key = json.dumps([DATA_VERSION, name, split, asdict(config), views, args.camera, args.max_degrees, args.seed, len(mesh.faces),
                          float(np.round(mesh.vertices.sum(), 6))])  # fmt: skip
        path = folder / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
        if path.is_file():
            data[name] = torch.load(path, weights_only=False)
            continue
        seed = int(hashlib.sha1(f"{args.seed}/{split}/{name}".encode()).hexdigest()[:8], 16)
        item = {**mesh_targets(mesh, config), "views": render_views(mesh, views, seed, camera, config.image_size, args.max_degrees)}
        torch.save(item, path)
        data[name] = item
    return data


def local_subset(coords: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of at most ``limit`` voxels: all, or the ``limit`` nearest to a random one (a local patch, C order)."""
    if len(coords) <= limit:
        return torch.arange(len(coords))
    centre = coords[int(torch.randint(len(coords), (1,), generator=generator))]
    dist = (coords - centre).float().square().sum(1) + 1e-3 * torch.rand(len(coords), generator=generator)
    return dist.topk(limit, largest=False).indices.sort().values


def pad_batch(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Pad per-object ``(coords [N, 3], *features [N, C])`` to a batch; returns ``(coords, mask, *features)``."""
    n = max(len(it[0]) for it in items)
    coords = torch.zeros(len(items), n, 3, dtype=torch.long)
    mask = torch.zeros(len(items), n, dtype=torch.bool)
    feats = [torch.zeros(len(items), n, it.shape[1]) for it in items[0][1:]]
    for b, (c, *fs) in enumerate(items):
        coords[b, : len(c)], mask[b, : len(c)] = c, True
        for out, f in zip(feats, fs):
            out[b, : len(c)] = f
    return (coords, mask, *feats)


# ----------------------------------------------------------------------------------------- training


class Budget:
    """Steps or seconds, whichever ends first; ``progress`` drives the cosine learning rate."""

    def __init__(self, steps: int | None, seconds: float | None) -> None:
        self.steps, self.seconds, self.start = steps, seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def progress(self, step: int) -> float:
        parts = [step / self.steps] if self.steps else []
        if self.seconds:
            parts.append(self.elapsed() / self.seconds)
        return min(1.0, max(parts))

    def done(self, step: int) -> bool:
        return self.progress(step) >= 1.0


def optimiser(params, lr: float):
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    return opt


def set_lr(opt, lr: float, step: int, progress: float, warmup: int = 50) -> None:
    scale = min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
    for group in opt.param_groups:
        group["lr"] = lr * scale


def run_loop(name: str, params, lr: float, budget: Budget, loss_fn, log_every: int = 10) -> dict:
    """The shared loop: ``loss_fn(step) -> (loss, {metric: value})``; returns steps, seconds, the loss history."""
    opt = optimiser(params, lr)
    history, recent, step = [], [], 0
    bar = tqdm(desc=name, total=budget.steps, file=sys.stdout, mininterval=5.0)
    while not budget.done(step):
        set_lr(opt, lr, step, budget.progress(step))
        loss, shown = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        recent.append(loss.item())
        step += 1
        bar.update(1)
        if step % log_every == 0:
            history.append([step, round(float(np.mean(recent)), 5)])
            bar.set_postfix({"loss": f"{np.mean(recent):.4f}", **{k: f"{v:.4f}" for k, v in shown.items()}})
            recent = []
    bar.close()
    if recent:
        history.append([step, round(float(np.mean(recent)), 5)])
    final = float(np.mean([h[1] for h in history[-3:]])) if history else float("nan")
    return {"steps": step, "seconds": round(budget.elapsed(), 1), "final_loss": round(final, 5), "loss_history": history}


def flow_pair(data: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_t = (1 - t) noise + t data`` and the target velocity ``data - noise`` (time 0 = noise, 1 = data)."""
    noise = torch.randn(data.shape, generator=generator)
    tt = t.reshape(-1, *([1] * (data.ndim - 1)))
    return (1 - tt) * noise + tt * data, data - noise


def sample_times(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Half uniform, half logit-normal: the sampler's rescale 3 spends its steps near the noise end, so cover all of [0, 1]."""
    u = torch.rand(batch, generator=generator)
    ln = torch.sigmoid(torch.randn(batch, generator=generator))
    return torch.where(torch.rand(batch, generator=generator) < 0.5, u, ln)


def standardise(x: torch.Tensor, stats: dict) -> torch.Tensor:
    return (x - torch.tensor(stats["mean"])) / torch.tensor(stats["std"])


def destandardise(x: torch.Tensor, stats: dict) -> torch.Tensor:
    return x * torch.tensor(stats["std"]) + torch.tensor(stats["mean"])


def channel_stats(x: torch.Tensor) -> dict:
    """Per-channel mean and std of ``[..., C]``."""
    flat = x.reshape(-1, x.shape[-1]).double()
    return {"mean": flat.mean(0).float().tolist(), "std": flat.std(0).clamp_min(1e-4).float().tolist()}


def train_ss_vae(models, train, args, budget, g) -> dict:
    names = list(train)
    occ = torch.stack([train[n]["structure"] for n in names]).float()
    pos = float(occ.mean())

    def step_fn(step):
        idx = torch.randint(len(names), (args.batch_vae,), generator=g)
        target = occ[idx]
        logits, mean, logvar = models.ss_vae(target, generator=g)
        # occupied voxels are a few percent: weight them up so the decoder does not settle on "empty"
        bce = F.binary_cross_entropy_with_logits(logits[:, 0], target, pos_weight=torch.tensor(min(3.0, 0.5 * (1 - pos) / pos)))
        kl = models.ss_vae.kl_loss(mean, logvar)
        with torch.no_grad():
            pred = logits[:, 0] > 0
            iou = ((pred & (target > 0)).sum() / (pred | (target > 0)).sum().clamp_min(1)).item()
        return bce + args.kl_weight * kl, {"iou": iou}

    return run_loop("ss_vae", models.ss_vae.parameters(), args.lr, budget, step_fn)


def view_tensors(train: dict, names: list[str], views: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = torch.stack([train[names[m]]["views"][v]["rgb"].float() for m, v in views])
    mask = torch.stack([train[names[m]]["views"][v]["mask"] for m, v in views])[:, None].float()
    return rgb, mask


def ss_latent_table(models, train: dict, names: list[str]) -> torch.Tensor:
    with torch.no_grad():
        occ = torch.stack([train[n]["structure"] for n in names]).float()
        return torch.cat([grid_to_tokens(models.ss_vae.encode(occ[i : i + 8])) for i in range(0, len(occ), 8)])  # [M, R^3, C]


def train_ss_flow(models, train, args, budget, g, norm) -> dict:
    names = list(train)
    latents = ss_latent_table(models, train, names)
    norm["ss_latent"] = channel_stats(latents)
    shape_data = standardise(latents, norm["ss_latent"])
    all_views = [(m, v) for m, n in enumerate(names) for v in range(len(train[n]["views"]))]
    layout = {
        k: torch.stack([train[names[m]]["views"][v]["layout"][k] for m, v in all_views]) for k in ("rotation", "translation", "scale")
    }
    norm["translation"] = channel_stats(layout["translation"])
    norm["scale"] = channel_stats(layout["scale"])
    layout["translation"] = standardise(layout["translation"], norm["translation"])
    layout["scale"] = standardise(layout["scale"], norm["scale"])
    models.ss_flow.zero_outputs()
    params = list(models.condition.parameters()) + list(models.ss_flow.parameters())

    def step_fn(step):
        pick = torch.randint(len(all_views), (args.batch_flow,), generator=g)
        views = [all_views[i] for i in pick.tolist()]
        rgb, mask = view_tensors(train, names, views)
        cond = models.condition(rgb, mask)
        keep = (torch.rand(len(views), generator=g) >= args.cond_dropout).float()[:, None, None]
        cond = cond * keep  # dropped: all-zero condition tokens, the sampler's unconditional input
        t = sample_times(len(views), g)
        data = {"shape": shape_data[[m for m, _ in views]], **{k: layout[k][pick][:, None] for k in layout}}
        xt, target = {}, {}
        for k, v in data.items():
            xt[k], target[k] = flow_pair(v, t, g)
        pred = models.ss_flow(xt, t, cond)
        shape_loss = F.mse_loss(pred["shape"], target["shape"])
        layout_loss = sum(F.mse_loss(pred[k], target[k]) for k in layout) / len(layout)
        return shape_loss + args.layout_weight * layout_loss, {"shape": shape_loss.item(), "layout": layout_loss.item()}

    return run_loop("ss_flow", params, args.lr_flow, budget, step_fn)


def structure_items(train: dict, names: list[str], config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per mesh: its structure's coordinates ``[N, 3]`` and their fine SDF samples ``[N, s^3]``."""
    out = {}
    for n in names:
        coords = occupied_coords(train[n]["structure"][None])[0]
        out[n] = (coords, gather_fine_sdf(train[n]["fine"], coords, config.slat_subdivision))
    return out


def train_slat_vae(models, train, args, budget, g) -> dict:
    config = models.config
    names = list(train)
    items = structure_items(train, names, config)
    params = list(models.slat_encoder.parameters()) + list(models.slat_decoder.parameters())

    def step_fn(step):
        picks = torch.randint(len(names), (args.batch_slat,), generator=g).tolist()
        batch = []
        for m in picks:
            coords, sdf = items[names[m]]
            idx = local_subset(coords, args.slat_tokens, g)
            batch.append((coords[idx], sdf[idx]))
        coords, mask, sdf = pad_batch(batch)
        mean, logvar = models.slat_encoder(sdf, coords, mask)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g)
        pred = models.slat_decoder(z, coords, mask)
        tr = config.sdf_truncation
        err = ((pred - sdf.clamp(-tr, tr)).abs() / tr).mean(-1)
        recon = (err * mask).sum() / mask.sum()
        kl = (0.5 * (mean.square() + logvar.exp() - 1 - logvar).sum(-1) * mask).sum() / mask.sum()
        with torch.no_grad():
            sign = (((pred > 0) == (sdf > 0)).float().mean(-1) * mask).sum() / mask.sum()
        return recon + args.kl_weight * kl, {"sign_acc": sign.item()}

    return run_loop("slat_vae", params, args.lr, budget, step_fn)


def slat_latent_table(models, items: dict) -> dict[str, torch.Tensor]:
    out = {}
    with torch.no_grad():
        for n, (coords, sdf) in items.items():
            out[n] = models.slat_encoder(sdf[None], coords[None])[0][0]
    return out


def train_slat_flow(models, train, args, budget, g, norm) -> dict:
    config = models.config
    names = list(train)
    items = structure_items(train, names, config)
    latents = slat_latent_table(models, items)
    norm["slat"] = channel_stats(torch.cat(list(latents.values())))
    latents = {n: standardise(v, norm["slat"]) for n, v in latents.items()}
    all_views = [(m, v) for m, n in enumerate(names) for v in range(len(train[n]["views"]))]
    models.condition.requires_grad_(False)  # shared with the SS flow: frozen here so the SS flow's condition stays the same

    def step_fn(step):
        pick = torch.randint(len(all_views), (args.batch_slat,), generator=g).tolist()
        views = [all_views[i] for i in pick]
        batch = []
        for m, _ in views:
            coords = items[names[m]][0]
            idx = local_subset(coords, args.slat_tokens, g)
            batch.append((coords[idx], latents[names[m]][idx]))
        coords, mask, data = pad_batch(batch)
        with torch.no_grad():
            cond = models.condition(*view_tensors(train, names, views))
        cond = cond * (torch.rand(len(views), generator=g) >= args.cond_dropout).float()[:, None, None]
        t = sample_times(len(views), g)
        xt, target = flow_pair(data, t, g)
        pred = models.slat_flow(xt, t, cond, coords=coords, mask=mask)
        loss = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
        return loss, {}

    try:
        return run_loop("slat_flow", models.slat_flow.parameters(), args.lr_slat_flow, budget, step_fn)
    finally:
        models.condition.requires_grad_(True)


# ----------------------------------------------------------------------------------------- evaluation


def rotation_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = ((a.double().T @ b.double()).trace() - 1) / 2
    return math.degrees(math.acos(float(cos.clamp(-1, 1))))


def cosine_stats(velocities: list[dict[str, torch.Tensor]], groups: dict[str, tuple[str, ...]]) -> dict[str, dict[str, float]]:
    """Per token group: cosines between consecutive velocities of each sample (flattened), mean and min."""
    out = {}
    for group, keys in groups.items():
        flat = [torch.cat([v[k].flatten(1) for k in keys], dim=1) for v in velocities]
        cos = torch.stack([F.cosine_similarity(a, b, dim=1) for a, b in zip(flat[:-1], flat[1:])])  # [steps-1, B]
        out[group] = {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}
    return out


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def evaluate(models, data: dict, names: list[str], views: int, args, camera: Camera, split: str, slat_rows=None) -> dict:
    """SS sample -> occupancy IoU, layout error; SLaT sample -> mesh F-score@0.05 in the predicted pose; SS smoothness.

    ``slat_rows`` (indices into the views evaluated): sample the SLaT and mesh only for those (the
    shipped-weights test reproduces a few rows); the others' mesh figures are left out.
    """
    config, norm = models.config, models.metadata["normalization"]
    picks = [(n, v) for n in names for v in range(min(views, len(data[n]["views"])))]
    rgb = torch.stack([data[n]["views"][v]["rgb"].float() for n, v in picks])
    mask = torch.stack([data[n]["views"][v]["mask"] for n, v in picks])[:, None].float()
    velocities: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        cond = models.condition(rgb, mask)
        sampler = models.ss_sampler(steps=args.eval_steps)
        x = sampler.sample(cond, torch.Generator().manual_seed(args.seed), callback=lambda s, t, xs, v: velocities.append(v))
        latent = tokens_to_grid(destandardise(x["shape"], norm["ss_latent"]), config.ss_latent_resolution)
        occupied = models.ss_vae.occupancy(latent)
    rows = []
    slat_sampler = models.slat_sampler(steps=args.eval_steps)
    for i, (n, v) in enumerate(tqdm(picks, desc=f"eval {split}", file=sys.stdout)):
        item, view = data[n], data[n]["views"][v]
        gt_occ = item["structure"]
        fill = lambda o: torch.from_numpy(ndimage.binary_fill_holes(o.numpy()))
        R = rotation_6d_to_matrix(x["rotation"][i, 0])
        t_tok = destandardise(x["translation"][i, 0], norm["translation"])
        s = destandardise(x["scale"][i, 0], norm["scale"]).exp()
        t = camera_translation(t_tok, camera, view["box"], config.image_size)
        gR, gt, gs = view["pose"]
        row = {
            "mesh": n, "view": v, "iou": iou(occupied[i], gt_occ), "iou_filled": iou(fill(occupied[i]), fill(gt_occ)),
            "rot_deg": rotation_angle(R, gR), "trans_err": float((t - gt).norm()),
            "trans_err_rel": float((t - gt).norm() / gt.norm()),
            "scale_ratio": float((s / gs).prod() ** (1 / 3)),
        }  # fmt: skip
        if slat_rows is not None and i not in slat_rows:
            rows.append(row)
            continue
        coords = occupied_coords(occupied[i : i + 1])[0]
        cap = min(config.max_tokens, args.eval_max_tokens)  # full attention over more tokens is too slow on 2 cores
        coords, factor = downsample_structure(coords, cap, torch.Generator().manual_seed(args.seed))
        gt_mesh = place_mesh(_MESHES[n], matrix_to_rotation_6d(gR), gt, gs)
        if len(coords) == 0:
            mesh = trimesh.Trimesh()
        else:
            with torch.no_grad():
                gen = torch.Generator().manual_seed(args.seed + i)
                tokens = slat_sampler.sample(cond[i : i + 1], gen, shape=(1, len(coords), config.slat_channels), coords=coords[None])[0]
                tokens = destandardise(tokens, norm["slat"])
                mesh = models.slat_decoder.to_mesh(tokens, coords)
        posed = place_mesh(mesh, matrix_to_rotation_6d(R), t, s * factor) if len(mesh.faces) else mesh
        row["fscore"] = chamfer_and_fscore(posed, gt_mesh, threshold=0.05, samples=args.eval_samples)["fscore"]
        # shape alone (object frame, no pose): the mesh against the canonical GT mesh
        row["fscore_object"] = chamfer_and_fscore(mesh, _MESHES[n], threshold=0.05, samples=args.eval_samples)["fscore"]
        row["tokens"] = int(len(coords))
        row["downsampled"] = factor
        rows.append(row)
    ss_groups = models.ss_sampler().token_groups
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("mesh", "view")))
    summary = {k: round(float(np.mean([r[k] for r in rows if k in r])), 4) for k in keys}
    summary["rot_deg_median"] = round(float(np.median([r["rot_deg"] for r in rows])), 2)
    return {"views": len(rows), "mean": summary, "smoothness": cosine_stats(velocities, ss_groups),
            "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}  # fmt: skip


def oracle_fscore(data: dict, names: list[str], config, samples: int) -> dict[str, float]:
    """F-score@0.05 (object frame) of the GT structure + GT fine SDF through ``sdf_to_mesh``: the representation's ceiling."""
    from accel3d.models.image_to_3d import scatter_fine_sdf, sdf_to_mesh

    out = {}
    for n in names:
        coords = occupied_coords(data[n]["structure"][None])[0]
        values = gather_fine_sdf(data[n]["fine"], coords, config.slat_subdivision)
        fine = scatter_fine_sdf(coords, values, config.structure_resolution, config.slat_subdivision, config.sdf_truncation)
        mesh = sdf_to_mesh(fine, config.bound, config.sdf_truncation)
        out[n] = round(chamfer_and_fscore(mesh, _MESHES[n], threshold=0.05, samples=samples)["fscore"], 4)
    return out


def print_table(results: dict) -> None:
    cols = ("iou", "iou_filled", "rot_deg", "trans_err", "trans_err_rel", "scale_ratio", "fscore", "fscore_object", "tokens", "downsampled")
    print(f"{'split':<17}{'mesh':<20}{'view':>5}" + "".join(f"{c:>14}" for c in cols))
    for split, res in results.items():
        for r in res["rows"]:
            print(f"{split:<17}{r['mesh']:<20}{r['view']:>5}" + "".join(f"{r[c]:>14.4g}" for c in cols))
        print(f"{split:<17}{'MEAN':<20}{'':>5}" + "".join(f"{res['mean'][c]:>14.4g}" for c in cols))
        sm = res["smoothness"]
        print(
            f"  {split} SS velocity cosine between consecutive steps: "
            + ", ".join(f"{g} mean {v['mean']} min {v['min']}" for g, v in sm.items())
        )


# ----------------------------------------------------------------------------------------- main


def stage_path(run_dir: Path, stage: str) -> Path:
    return run_dir / f"{stage}.pt"


def save_stage(models, run_dir: Path, stage: str, report: dict, norm: dict) -> None:
    state = {m: getattr(models, m).state_dict() for m in STAGE_MODULES[stage]}
    tmp = stage_path(run_dir, stage).with_suffix(".tmp")
    torch.save({"stage": stage, "state": state, "report": report, "normalization": norm}, tmp)
    os.replace(tmp, stage_path(run_dir, stage))


def load_stage(models, run_dir: Path, stage: str, norm: dict) -> dict:
    payload = torch.load(stage_path(run_dir, stage), weights_only=False)
    for m, state in payload["state"].items():
        getattr(models, m).load_state_dict(state)
    norm.update(payload["normalization"])
    return payload["report"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--minutes", type=float, default=55.0, help="training budget in all, split across the selected stages")
    p.add_argument("--steps", type=int, default=None, help="steps per stage (instead of --minutes)")
    p.add_argument("--stage-steps", type=json.loads, default=None, help="per-stage steps as JSON, e.g. '{\"ss_vae\": 300}'")
    p.add_argument("--tiny", action="store_true", help="a tiny config, 2 meshes, 2 steps per stage: end to end in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--views", type=int, default=48, help="rendered views per training mesh")
    p.add_argument(
        "--held-out",
        nargs="*",
        default=["bone"],
        help="meshes kept out of training and evaluated as unseen shapes (with the procedural eval_* shapes)",
    )
    p.add_argument("--camera", type=int, default=128, help="render size in pixels before the crop")
    p.add_argument("--max-degrees", type=float, default=45.0, help="rotation about the default upright view")
    p.add_argument("--procedural", type=int, default=30)
    p.add_argument("--batch-vae", type=int, default=8)
    p.add_argument("--batch-flow", type=int, default=32)
    p.add_argument("--batch-slat", type=int, default=4)
    p.add_argument("--slat-tokens", type=int, default=768, help="voxels per object per SLaT training step (a local patch)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-flow", type=float, default=1e-3, help="SS flow (and condition encoder) learning rate")
    p.add_argument("--lr-slat-flow", type=float, default=5e-4)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--layout-weight", type=float, default=1.0)
    p.add_argument("--cond-dropout", type=float, default=0.1)
    p.add_argument("--eval-views", type=int, default=2)
    p.add_argument("--eval-train", type=int, default=3, help="training meshes also evaluated, at training and at new poses")
    p.add_argument("--eval-steps", type=int, default=25)
    p.add_argument("--eval-samples", type=int, default=20000)
    p.add_argument("--eval-max-tokens", type=int, default=6000, help="SLaT token cap in the evaluation (downsample_structure above it)")
    p.add_argument("--resume", action="store_true", help="load finished stages from the cache instead of retraining them")
    p.add_argument("--cache", type=Path, default=Path("~/.cache/accel3d/image_to_3d"))
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--no-eval", action="store_true")
    args = p.parse_args(argv)
    args.cache = args.cache.expanduser()
    if args.tiny:
        args.steps = args.steps or 2
        args.views, args.camera, args.procedural = 2, 48, 2
        args.batch_vae = args.batch_flow = args.batch_slat = 2
        args.slat_tokens, args.eval_views, args.eval_train, args.eval_steps, args.eval_samples = 64, 1, 1, 2, 500
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    config = ImageTo3DConfig(**TINY_CONFIG) if args.tiny else ImageTo3DConfig()
    camera = Camera(size=args.camera)
    from accel3d.geometry.mesh_sources import eval_meshes, train_meshes

    if args.tiny:
        train_set = train_meshes(sources=("procedural",), procedural=2, procedural_eval=1)
        eval_set = eval_meshes(sources=("procedural",), procedural=2, procedural_eval=1)
    else:
        train_set = train_meshes(procedural=args.procedural, held_out=args.held_out)
        eval_set = eval_meshes(procedural=args.procedural, held_out=args.held_out)
    _MESHES.update(train_set)
    _MESHES.update(eval_set)
    train = build_data(train_set, config, args, camera, "train", args.views)

    skip = ("stages", "minutes", "steps", "stage_steps", "resume", "cache", "out", "no_eval", "threads")
    key_args = {k: v for k, v in vars(args).items() if k not in skip and not k.startswith("eval_")}  # what the weights depend on
    run_key = hashlib.sha1(json.dumps([asdict(config), {k: str(v) for k, v in key_args.items()}], sort_keys=True).encode()).hexdigest()[:12]
    run_dir = args.cache / f"run-{run_key}"
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"stage checkpoints: {run_dir}")

    models = ImageTo3DModels(config)
    models.train()
    norm: dict = {}
    reports: dict = {}
    selected = [s for s in STAGES if s in args.stages]
    seconds = args.minutes * 60 if args.steps is None and not args.stage_steps else None
    share = sum(STAGE_SHARE[s] for s in selected)
    trainers = {
        "ss_vae": lambda b, g: train_ss_vae(models, train, args, b, g),
        "ss_flow": lambda b, g: train_ss_flow(models, train, args, b, g, norm),
        "slat_vae": lambda b, g: train_slat_vae(models, train, args, b, g),
        "slat_flow": lambda b, g: train_slat_flow(models, train, args, b, g, norm),
    }
    for stage in STAGES:
        path = stage_path(run_dir, stage)
        if stage in selected and not (args.resume and path.is_file()):
            steps = (args.stage_steps or {}).get(stage, args.steps)
            budget = Budget(steps, None if steps else seconds * STAGE_SHARE[stage] / share)
            g = torch.Generator().manual_seed(args.seed * 1000 + STAGES.index(stage))
            torch.manual_seed(args.seed * 1000 + STAGES.index(stage))
            for dependent in DEPENDENTS[stage]:
                stage_path(run_dir, dependent).unlink(missing_ok=True)
            print(f"training {stage} ({f'{steps} steps' if steps else f'{budget.seconds / 60:.1f} min'})", flush=True)
            reports[stage] = trainers[stage](budget, g)
            save_stage(models, run_dir, stage, reports[stage], norm)
            print(f"{stage}: {reports[stage]['steps']} steps, {reports[stage]['seconds']} s, final loss {reports[stage]['final_loss']}")
        elif path.is_file():
            reports[stage] = {**load_stage(models, run_dir, stage, norm), "loaded_from_cache": True}
            print(f"{stage}: loaded from {path.name} (finished earlier; {reports[stage]['steps']} steps)")
        else:
            print(f"{stage}: not trained (not selected and no checkpoint in the cache)")

    missing = [s for s in STAGES if s not in reports]
    metadata = {
        "trained_by": "scripts/train_image_to_3d.py",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("cache", "out")},
        "stages": {s: {k: v for k, v in r.items()} for s, r in reports.items()},
        "untrained_stages": missing,
        "normalization": norm,
        "conventions": {
            "ss_latent": "shape tokens are (latent - mean) / std per channel; decode tokens_to_grid(x * std + mean)",
            "slat": "SLaT tokens are (latent - mean) / std per channel; decode with x * std + mean",
            "rotation": "6D (first two columns) of the object-to-camera rotation, camera frame (OpenCV, +z forward)",
            "translation": "(a, b, log d), standardised: (a, b) the object origin's projection in the crop in units of its half-side "
            "((u - S/2) / (S/2)), d = z * (S/2) / f_crop; z = d f_crop / (S/2), x = (a S/2 + S/2 - c_x) z / f_crop with the crop's "
            "intrinsics (render.crop_intrinsics(camera, box, S))",
            "scale": "log of the per-axis scale, standardised; world = R (scale * p) + t",
            "structure": "the shell of voxelize's shell+interior occupancy (interior: 26 occupied neighbours and all corners inside)",
            "fine_sdf": "negative inside, at the sub-cell centres (fine_sample_points): mean of voxelize's 8 surrounding corner samples",
        },
        "camera": {"size": args.camera, "fov_degrees": camera.fov_degrees, "crop": config.image_size},
        "train_meshes": list(train_set),
        "eval_meshes": list(eval_set),
    }
    # shipped in float16 (loading casts back to the model's float32)
    half = copy.deepcopy(models).half()
    half.save(args.out, metadata)
    loaded = ImageTo3DModels.from_pretrained(args.out)
    if not args.no_eval and not missing:
        torch.manual_seed(args.seed)
        evalset = build_data(eval_set, config, args, camera, "eval", args.eval_views)
        train_pick = {n: train[n] for n in list(train)[: args.eval_train]}
        # the same training meshes at poses never rendered for training: does the model generalise over poses?
        novel = build_data({n: train_set[n] for n in train_pick}, config, args, camera, "novel", args.eval_views)
        results = {
            "held_out": evaluate(loaded, evalset, list(evalset), args.eval_views, args, camera, "held_out"),
            "train": evaluate(loaded, train_pick, list(train_pick), args.eval_views, args, camera, "train"),
            "train_novel_pose": evaluate(loaded, novel, list(novel), args.eval_views, args, camera, "train_novel_pose"),
        }
        results["oracle_fscore_object"] = oracle_fscore(
            {**evalset, **train_pick}, list(evalset) + list(train_pick), config, args.eval_samples
        )
        print_table({k: results[k] for k in ("held_out", "train", "train_novel_pose")})
        print("oracle F-score@0.05 (GT structure + GT fine SDF, object frame):", results["oracle_fscore_object"])
        metadata["evaluation"] = results
    metadata["total_minutes"] = round((time.perf_counter() - started) / 60, 2)
    half.save(args.out, metadata)
    write_json(args.out.with_suffix(".json"), metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {args.out.with_suffix('.json').name}")
    return metadata


if __name__ == "__main__":
    main()
