"""Train the shipped novel-view diffusion U-Net (Zero123-style, pixel space) on 2 CPU cores.

    python scripts/train_novel_view.py --minutes 50              # render, train, evaluate, write the weights
    python scripts/train_novel_view.py --resume --minutes 20     # continue the cached run for 20 more minutes
    python scripts/train_novel_view.py --tiny --out /tmp/nv.pt   # end to end in seconds (the test)

Data: every mesh of :func:`accel3d.geometry.mesh_sources.mesh_set` (the bundled bunny, pymeshlab's
samples with ``pip install -e ".[train]"``, procedural shapes), placed upright in the SDS scene
(:func:`accel3d.models.sds.mesh_views.scene_mesh`), one colour each, rendered shaded at
``--views`` cameras drawn as SDS draws them (azimuth all round, the config's elevation and
radius ranges, its fixed field of view), plus ``--eval-views`` more at poses never trained on.
``--held-out`` meshes (default pymeshlab's ``bone``) and five ``eval_*`` procedural shapes are
never trained on. Renders are cached under ``--cache`` (default ``~/.cache/accel3d/novel_view/``).

Objective: diffusers' ``DDPMScheduler`` noise objective on the target view, given a reference view
of the same object and the relative camera, weighted per timestep by Min-SNR (``--snr-gamma``,
``min(SNR, gamma) / SNR``: the nearly clean timesteps, whose noise is the hardest to see and the
least useful to SDS, stop dominating the loss); ``--cond-dropout`` of the batch gets a zero
reference and the null pose tokens together (classifier-free guidance). AdamW, an EMA of the weights
(``--ema``), which is what ships. ``--steps`` or ``--minutes`` bounds the run (``--steps`` of the
number a timed run reached reproduces it). A checkpoint every ``--save-every`` steps lets
``--resume`` continue.

Evaluation (on the weights as shipped: float16, loaded by ``NovelViewModel.from_pretrained``):
PSNR and SSIM of a 50-step DDIM sample against the true view, for held-out poses of training
objects and for held-out objects, next to two references: the untrained model, and copying the
reference view (what a model that ignores the pose would score). Also the eps MSE per timestep
band. The figures, the arguments and the steps reached go to the JSON beside the weights, and a
grid of samples to ``docs/results/novel_view_samples.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accel3d.core.io import atomic_write  # noqa: E402
from accel3d.geometry.metrics import image_scores  # noqa: E402
from accel3d.models.sds.cameras import Cameras, CameraSampler  # noqa: E402
from accel3d.models.sds.mesh_views import MeshViews, albedo_for, relative_pose, scene_mesh  # noqa: E402
from accel3d.models.sds.novel_view import DEFAULT_WEIGHTS, NovelViewConfig, NovelViewModel  # noqa: E402

TINY = {"block_out_channels": (8, 16), "layers_per_block": 1, "cross_attention_dim": 16, "attention_head_dim": 4, "pose_tokens": 2}
T_BANDS = 10  # eps MSE is reported per tenth of the timesteps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=50.0, help="training time budget (rendering and evaluation not counted)")
    p.add_argument("--steps", type=int, default=None, help="train exactly this many steps (overrides --minutes)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--cond-dropout", type=float, default=0.1)
    p.add_argument(
        "--snr-gamma",
        type=float,
        default=5.0,
        help="Min-SNR loss weighting min(SNR, gamma) / SNR (Hang et al. 2023); 0: the plain noise MSE",
    )
    p.add_argument("--views", type=int, default=48, help="training views per training mesh")
    p.add_argument("--eval-views", type=int, default=6, help="views per mesh at poses never trained on")
    p.add_argument("--procedural", type=int, default=30, help="procedural training shapes")
    p.add_argument("--held-out", nargs="*", default=["bone"], help="meshes kept out of training (besides the eval_* shapes)")
    p.add_argument("--eval-pairs", type=int, default=24, help="DDIM-sampled pairs per evaluation split")
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--tiny", action="store_true", help="a tiny model on three shapes, for the test")
    p.add_argument("--resume", action="store_true", help="continue from the cached checkpoint of the same data and model")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "accel3d" / "novel_view")
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--preview", type=Path, default=None, help="sample grid PNG (default: docs/results/novel_view_samples.png)")
    args = p.parse_args(argv)
    if args.tiny:
        args.views, args.eval_views, args.procedural, args.held_out, args.eval_pairs, args.batch = 4, 2, 2, [], 2, 4
        args.steps = args.steps or 3
    for name in ("batch", "views", "eval_views", "eval_pairs", "save_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    if args.views < 2:
        p.error("--views: expected at least 2 (a reference and a target)")
    if args.snr_gamma < 0:
        p.error(f"--snr-gamma: expected 0 (off) or a positive number, got {args.snr_gamma}")
    if not 0 <= args.cond_dropout < 1:
        p.error(f"--cond-dropout: expected a share in [0, 1), got {args.cond_dropout}")
    return args


def model_config(args: argparse.Namespace) -> NovelViewConfig:
    return NovelViewConfig(**TINY) if args.tiny else NovelViewConfig()


def load_meshes(args: argparse.Namespace) -> tuple[dict, dict]:
    from accel3d.geometry.mesh_sources import mesh_set

    sources: tuple[str, ...] = ("bundled", "procedural")
    held_out = list(args.held_out)
    if not args.tiny:
        try:
            import pymeshlab  # noqa: F401

            sources = ("bundled", "pymeshlab", "procedural")
        except ImportError:
            print('[train] pymeshlab is absent (pip install -e ".[train]"): bunny and procedural shapes only', file=sys.stderr)
            held_out = [n for n in held_out if n == "bunny"]
    entries = mesh_set("all", sources=sources, procedural=args.procedural, procedural_eval=1 if args.tiny else 5,
                       seed=args.seed, held_out=held_out)  # fmt: skip
    train = {n: e.mesh for n, e in entries.items() if e.split == "train"}
    held = {n: e.mesh for n, e in entries.items() if e.split == "eval"}
    return train, held


def cameras(config: NovelViewConfig, n: int, seed: int) -> Cameras:
    return CameraSampler(elevation_range=config.elevation_range, radius_range=config.radius_range,
                         fovy_range=(config.fovy, config.fovy), seed=seed).sample(n)  # fmt: skip


def render_data(args: argparse.Namespace, config: NovelViewConfig) -> dict:
    """Per mesh: its training views and cameras and its held-out-pose views (cached)."""
    train, held = load_meshes(args)
    what = [sorted(train), sorted(held), args.views, args.eval_views, args.seed, config.image_size, config.elevation_range,
            config.radius_range, config.fovy]  # fmt: skip
    key = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:12]
    path = args.cache / f"renders-{key}.pt"
    if path.is_file():
        return torch.load(path)
    data: dict = {"train": {}, "held_out": {}}
    names = list(train) + list(held)
    for index, name in enumerate(tqdm(names, desc="render", file=sys.stderr)):
        views = MeshViews(scene_mesh((train | held)[name]), albedo=albedo_for(index))
        split = "train" if name in train else "held_out"
        count = (args.views if split == "train" else 0) + args.eval_views
        cams = cameras(config, count, seed=args.seed * 1000 + index)
        images = views.render(cams, config.image_size)
        data[split][name] = {"images": images, "cameras": cams.__dict__, "train_views": args.views if split == "train" else 0}
    args.cache.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save(data, tmp)
    return data


def as_cameras(d: dict, index: torch.Tensor) -> Cameras:
    """The cameras at ``index`` of a render cache's camera fields."""
    return Cameras(**d)[index]


def training_batch(data: dict, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reference, target, relative pose) for ``batch`` random pairs of training views of one object each."""
    names = list(data["train"])
    refs, targets, poses = [], [], []
    for i in torch.randint(len(names), (batch,), generator=gen).tolist():
        entry = data["train"][names[i]]
        a, b = torch.randperm(entry["train_views"], generator=gen)[:2]
        refs.append(entry["images"][a])
        targets.append(entry["images"][b])
        poses.append(relative_pose(as_cameras(entry["cameras"], a[None]), as_cameras(entry["cameras"], b[None]))[0])
    return torch.stack(refs), torch.stack(targets), torch.stack(poses)


def eval_pairs(data: dict, split: str, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed pairs: for training objects a training view to a held-out pose; for held-out objects view 0 to another."""
    refs, targets, poses = [], [], []
    entries = list(data[split].values())
    for k in range(count):
        entry = entries[k % len(entries)]
        views = entry["images"].shape[0]
        first_eval = entry["train_views"]
        if split == "train":
            a, b = k // len(entries) % first_eval, first_eval + k // len(entries) % (views - first_eval)
        else:
            a, b = 0, 1 + k // len(entries) % (views - 1)
        refs.append(entry["images"][a])
        targets.append(entry["images"][b])
        cams = entry["cameras"]
        poses.append(relative_pose(as_cameras(cams, torch.tensor([a])), as_cameras(cams, torch.tensor([b])))[0])
    return torch.stack(refs), torch.stack(targets), torch.stack(poses)


@torch.no_grad()
def eps_mse_by_band(model: NovelViewModel, ref: torch.Tensor, target: torch.Tensor, pose: torch.Tensor, seed: int) -> list[float]:
    scheduler = model.noise_scheduler()
    steps = scheduler.config.num_train_timesteps
    gen = torch.Generator().manual_seed(seed)
    out = []
    for band in range(T_BANDS):
        t = torch.randint(band * steps // T_BANDS, (band + 1) * steps // T_BANDS, (len(target),), generator=gen)
        noise = torch.randn(target.shape, generator=gen)
        eps = model(scheduler.add_noise(target, noise, t), t, ref, pose)
        out.append(float((eps - noise).square().mean()))
    return out


def evaluate(model: NovelViewModel, untrained: NovelViewModel, data: dict, args: argparse.Namespace) -> tuple[dict, dict]:
    figures, samples = {}, {}
    for split in ("train", "held_out"):
        if not data[split]:
            continue
        ref, target, pose = eval_pairs(data, split, args.eval_pairs)
        label = "held_out_poses" if split == "train" else "held_out_objects"
        row = {}
        for name, m in (("model", model), ("untrained", untrained)):
            sample = m.sample(ref, pose, steps=50, generator=torch.Generator().manual_seed(args.seed))
            row[name] = image_scores(target, sample) | {"pairs": len(target)}
            row[name]["eps_mse_by_t_band"] = eps_mse_by_band(m, ref, target, pose, args.seed)
            if name == "model":
                samples[label] = (ref, target, sample)
        row["copy_reference"] = image_scores(target, ref) | {"pairs": len(target)}
        figures[label] = row
    return figures, samples


def save_preview(samples: dict, path: Path, columns: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ("reference", "truth", "sample")
    rows = [(f"{label}: {kind}", images[:columns]) for label, triple in samples.items() for kind, images in zip(kinds, triple)]
    fig, axes = plt.subplots(len(rows), columns, figsize=(columns * 1.1, len(rows) * 1.25), squeeze=False)
    for r, (title, images) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(((images[c].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy(), interpolation="nearest")
        axes[r][0].set_title(title, fontsize=7, loc="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    config = model_config(args)
    data = render_data(args, config)
    model = NovelViewModel(config)
    ema = NovelViewModel(config).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    untrained = NovelViewModel(config).eval()
    untrained.load_state_dict(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    scheduler = model.noise_scheduler()
    gen = torch.Generator().manual_seed(args.seed)
    what = [asdict(config), sorted(data["train"]), args.seed, args.batch, args.lr, args.snr_gamma]
    run_key = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:12]
    snr = scheduler.alphas_cumprod / (1 - scheduler.alphas_cumprod)
    # min(SNR, gamma) / SNR, written so that SNR = 0 (a zero-terminal-SNR schedule) weighs 1, not 0/0
    weight = (args.snr_gamma / snr).clamp(max=1.0) if args.snr_gamma > 0 else torch.ones_like(snr)
    checkpoint = args.cache / f"run-{run_key}.pt"
    step, losses, trained_s = 0, [], 0.0
    if args.resume and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, losses, trained_s = state["step"], state["losses"], state["trained_s"]
        print(f"[train] resumed at step {step} ({trained_s / 60:.1f} min trained)", file=sys.stderr)
    budget = None if args.steps else trained_s + 60 * args.minutes
    total = args.steps
    model.train()
    bar = tqdm(total=total, initial=step, desc="train", file=sys.stderr)
    start = time.perf_counter() - trained_s
    while (total is None or step < total) and (budget is None or time.perf_counter() - start < budget):
        ref, target, pose = training_batch(data, args.batch, gen)
        t = torch.randint(scheduler.config.num_train_timesteps, (len(target),), generator=gen)
        noise = torch.randn(target.shape, generator=gen)
        drop = torch.rand(len(target), generator=gen) < args.cond_dropout
        error = (model(scheduler.add_noise(target, noise, t), t, ref, pose, drop) - noise).square().mean(dim=(1, 2, 3))
        loss = (weight[t] * error).mean()
        warmup = min(1.0, (step + 1) / 200)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warmup
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
        step += 1
        losses.append(error.mean().item())  # the plain noise MSE, comparable across weightings
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}", refresh=False)
        if step % args.save_every == 0:
            trained_s = time.perf_counter() - start
            args.cache.mkdir(parents=True, exist_ok=True)
            with atomic_write(checkpoint) as tmp:
                torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                            "generator": gen.get_state(), "step": step, "losses": losses, "trained_s": trained_s}, tmp)  # fmt: skip
    bar.close()
    trained_s = time.perf_counter() - start
    ema.metadata = {"trained_steps": step, "trained_minutes": round(trained_s / 60, 1), "seed": args.seed}
    ema.save(args.out)
    shipped = NovelViewModel.from_pretrained(args.out)  # evaluate what ships: float16 weights, loaded back
    figures, samples = evaluate(shipped, untrained, data, args)
    report = {
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("out", "cache", "preview")},
        "config": asdict(config),
        "parameters": sum(p.numel() for p in shipped.parameters()),
        "steps": step,
        "trained_minutes": round(trained_s / 60, 1),
        "noise_mse_last_500": float(np.mean(losses[-500:])) if losses else None,
        "train_meshes": sorted(data["train"]),
        "held_out_meshes": sorted(data["held_out"]),
        "figures": figures,
    }
    shipped.metadata = ema.metadata | {"figures": figures}
    shipped.save(args.out)
    with atomic_write(args.out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    preview = args.preview or (ROOT / "docs" / "results" / "novel_view_samples.png" if not args.tiny else args.out.with_suffix(".png"))
    save_preview(samples, preview)
    for label, row in figures.items():
        m, u, c = row["model"], row["untrained"], row["copy_reference"]
        print(f"{label:<18} PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}   untrained {u['psnr']:.2f}/{u['ssim']:.3f}   "
              f"copy reference {c['psnr']:.2f}/{c['ssim']:.3f}")  # fmt: skip
    print(f"[train] {step} steps in {trained_s / 60:.1f} min; weights {args.out}, figures {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    train(parse_args())
