"""Where the novel-view U-Net pulls each view during SDS: its one-step predictions of the clean view.

    python scripts/probe_novel_view_sds.py --iterations 300     # about 30 s on 2 CPU cores

SDS moves each rendered view towards the U-Net's estimate of the clean view,
``x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)`` with the guided ``eps``. This script runs the default
``sds`` pipeline (the bundled bunny, the shipped weights) for ``--iterations`` steps, renders the
field at the 8 turntable azimuths, noises each render at a few timesteps and asks the U-Net for x0. It
scores every x0 against two images: the true view of the mesh at that pose (where SDS should pull)
and the reference view (what a model that ignored the pose would give back). It does the same from
the noised true view, to tell "cannot find the view" from "keeps what it is given". The grid goes to
``--out`` (default ``docs/results/novel_view_sds_probe.png``) and the figures to the JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accel3d.core.io import atomic_write  # noqa: E402
from accel3d.geometry.metrics import psnr  # noqa: E402
from accel3d.models.sds.pipeline import SDSPipeline  # noqa: E402
from accel3d.models.sds.scene import save_turntable, turntable_cameras  # noqa: E402

TIMESTEPS = (300, 500, 700)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=300, help="SDS steps before the probe")
    p.add_argument("--weights", default=None, help="a novel-view checkpoint (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "novel_view_sds_probe.png")
    args = p.parse_args(argv)
    if args.iterations < 1:
        p.error(f"--iterations: expected a positive integer, got {args.iterations}")
    return args


@torch.no_grad()
def predictions(pipe: SDSPipeline, inputs, views: torch.Tensor, cams, t: int, gen: torch.Generator) -> torch.Tensor:
    """The guided one-step x0 estimate of each view, noised at timestep ``t``."""
    alpha = pipe.scheduler.alphas_cumprod[t]
    out = []
    for i in range(len(views)):
        cam = cams[i]
        step = torch.tensor([t])
        noisy = pipe.scheduler.add_noise(views[i : i + 1], torch.randn(views[i : i + 1].shape, generator=gen), step)
        eps = pipe._guided_noise(noisy, step, pipe._pose_tokens(inputs.reference, cam), inputs.image_latent, cam, [])
        out.append(((noisy - (1 - alpha).sqrt() * eps) / alpha.sqrt()).clamp(-1.0, 1.0))
    return torch.cat(out)


def main(args: argparse.Namespace) -> dict:
    pipe = SDSPipeline(iterations=args.iterations, weights=args.weights, seed=args.seed, progress=True)
    inputs = pipe.load_inputs()
    result = pipe.run(inputs)
    radius = pipe.reference_pose[2]
    cams = turntable_cameras(8, elevation=pipe.reference_pose[1], radius=radius, fovy=pipe.model.config.fovy)
    size = pipe.latent_size
    with torch.no_grad():
        renders = result.field.render(cams, size, size, pipe.num_samples)["image"]
    truth = inputs.reference.views.render(cams, size)
    reference = inputs.reference.image.expand_as(truth)
    score = lambda images, target: [round(psnr(target[i : i + 1], images[i : i + 1]), 2) for i in range(len(images))]  # noqa: E731
    figures: dict = {"iterations": args.iterations, "azimuths": cams.azimuth.tolist(), "field_render": {
        "vs_truth_db": score(renders, truth), "vs_reference_db": score(renders, reference)}}  # fmt: skip
    rows, labels = [truth, renders], ["true views", f"field after {args.iterations} SDS steps"]
    gen = torch.Generator().manual_seed(args.seed)
    for start, images in (("field", renders), ("truth", truth)):
        for t in TIMESTEPS:
            x0 = predictions(pipe, inputs, images, cams, t, gen)
            figures[f"x0_from_{start}_t{t}"] = {"vs_truth_db": score(x0, truth), "vs_reference_db": score(x0, reference)}
            rows.append(x0)
            labels.append(f"x0 from the {'field' if start == 'field' else 'true view'}, t={t}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_turntable(torch.cat(rows), args.out, columns=8, row_labels=labels, value_range=(-1.0, 1.0))
    with atomic_write(args.out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(figures, indent=2) + "\n")
    mean = lambda xs: sum(xs[1:]) / len(xs[1:])  # noqa: E731  (azimuth 0 is the reference view itself)
    print("mean PSNR over the 7 views other than the reference's (dB):   vs the true view   vs the reference view")
    for name, row in figures.items():
        if isinstance(row, dict):
            print(f"  {name:<22} {mean(row['vs_truth_db']):>18.2f} {mean(row['vs_reference_db']):>20.2f}")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return figures


if __name__ == "__main__":
    main(parse_args())
