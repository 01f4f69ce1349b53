"""The ``hunyuan3d_fast`` stack on Hunyuan3D-2's own classes (hy3dgen 2.0.2), per stage, against the unaccelerated run.

Two measurements, each side by side in one run after a warm-up, the median of ``--repeats``:

1. **The VAE alone** (``ShapeVAE.latents2mesh``, hy3dgen's own call): hy3dgen's ``ShapeVAE`` holding the shipped
   vecset weights (``to_shape_vae``), decoding the bundled bunny's latents at ``--resolution``; stacks
   ``hierarchical`` and ``flashvdm``: decode time, queries, and whether the mesh is the dense one exactly.
2. **The whole pipeline** (``Hunyuan3DDiTFlowMatchingPipeline.__call__``): that VAE plus a small random flow DiT
   (``--steps`` steps, CFG); stack ``hunyuan3d_fast``: DiT steps computed and time, decode queries and time,
   and the mesh's Chamfer distance and F-score@0.01 to the unaccelerated one. With a random DiT the latents are
   noise-like, so this measures the cost of each stage and that the stack's pieces compose; the fidelity
   of step caching on a trained DiT is not measured here.

Needs the test-only hy3dgen install of ``.ci/run`` and runs from the repository root: hy3dgen's pipeline module is
imported by the tests' loader, and its image conditioner (torchvision) is a stand-in, one token per pixel.

    python scripts/bench_hunyuan3d.py                       # 256^3, 50 DiT steps, 3 repeats
    python scripts/bench_hunyuan3d.py --resolution 128 --steps 20 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import accel3d  # noqa: E402
from accel3d.geometry.metrics import chamfer_and_fscore  # noqa: E402
from accel3d.integrations.hunyuan3d import to_shape_vae  # noqa: E402
from accel3d.models import load_vae  # noqa: E402
from accel3d.models.vecset.pipeline import VecsetShapePipeline  # noqa: E402
from tests.integrations.hy3dgen_import import INSTALL_HINT, import_hy3dgen_pipeline, tiny_pipeline  # noqa: E402


def build(hy: Any) -> tuple[Any, Any, torch.Tensor]:
    """(pipeline, its ShapeVAE with the shipped weights, the bunny's decoded latents)."""
    vae = load_vae(None)
    shape_vae = to_shape_vae(vae, hy.ShapeVAE)
    inputs = VecsetShapePipeline(resolution=32).load_inputs()
    with torch.no_grad():
        latents = shape_vae(vae.encode(inputs.points[None], inputs.normals[None]))
    pipe = tiny_pipeline(hy, shape_vae)
    return pipe, shape_vae, latents


class StageClock:
    """Wall time of the DiT loop and of the decode (hy3dgen's ``_export``) within one pipeline call."""

    def __init__(self, pipe: Any) -> None:
        self.export_s = 0.0
        original = pipe._export

        def export(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.export_s = time.perf_counter() - start

        pipe._export = export  # the script's own measurement, taken off in close()
        self.pipe = pipe

    def close(self) -> None:
        del self.pipe._export


def to_mesh(output: Any) -> trimesh.Trimesh:
    return trimesh.Trimesh(output.mesh_v, output.mesh_f, process=False)


def same(a: Any, b: Any) -> bool:
    return np.array_equal(a.mesh_v, b.mesh_v) and np.array_equal(a.mesh_f, b.mesh_f)


def decode_only(shape_vae: Any, latents: torch.Tensor, resolution: int, repeats: int) -> None:
    options = {"octree_resolution": resolution, "num_chunks": 20000, "enable_pbar": False, "mc_level": 0.0, "bounds": 1.01}

    def decode() -> tuple[float, Any]:
        start = time.perf_counter()
        with torch.no_grad():
            out = shape_vae.latents2mesh(latents, **options)[0]
        return time.perf_counter() - start, out

    print(f"\n1. ShapeVAE.latents2mesh (shipped vecset weights, bunny latents) at {resolution}^3, median of {repeats}")
    print(f"{'stack':<16}{'decode':>9}{'speed':>8}{'queries':>10}{'mesh':>22}")
    decode()  # warm-up
    names, times, outputs, queries = ["none", "hierarchical", "flashvdm"], {}, {}, {}
    for _ in range(repeats):  # alternate the configurations, so that machine noise falls on all of them
        for name in names:
            stack = None if name == "none" else accel3d.apply(shape_vae, name)
            try:
                seconds, outputs[name] = decode()
            finally:
                if stack is not None:
                    queries[name] = stack.summary()["hierarchical"]["query_fraction"]
                    accel3d.remove(shape_vae)
            times.setdefault(name, []).append(seconds)
    base = statistics.median(times["none"])
    for name in names:
        t = statistics.median(times[name])
        exact = "dense (reference)" if name == "none" else "same as dense" if same(outputs[name], outputs["none"]) else "DIFFERS"
        print(f"{name:<16}{t:>8.2f}s{base / t:>7.2f}x{queries.get(name, 1.0):>9.1%}{exact:>22}")


def whole_pipeline(pipe: Any, resolution: int, steps: int, repeats: int) -> None:
    image = torch.linspace(0, 1, 3 * 64).reshape(3, 8, 8)
    calls: list[int] = []
    hook = pipe.model.latent_in.register_forward_pre_hook(lambda *_: calls.append(1))  # the DiT computes

    def generate() -> tuple[float, float, int, Any]:
        clock = StageClock(pipe)
        calls.clear()
        start = time.perf_counter()
        try:
            out = pipe(
                image=image, num_inference_steps=steps, octree_resolution=resolution, num_chunks=20000, enable_pbar=False,
                generator=torch.Generator().manual_seed(0), output_type="mesh",
            )[0]  # fmt: skip
        finally:
            clock.close()
        total = time.perf_counter() - start
        return total - clock.export_s, clock.export_s, len(calls), out

    print(f"\n2. Hunyuan3DDiTFlowMatchingPipeline (random DiT, {steps} steps, CFG; shipped VAE) at {resolution}^3, median of {repeats}")
    generate()  # warm-up
    runs: dict[str, list] = {"none": [], "hunyuan3d_fast": []}
    queries = 1.0
    for _ in range(repeats):
        for name in runs:
            stack = None if name == "none" else accel3d.apply(pipe, name)
            try:
                runs[name].append(generate())
            finally:
                if stack is not None:
                    queries = stack.summary()["hierarchical"]["query_fraction"]
                    accel3d.remove(pipe)
    hook.remove()
    med = {name: [statistics.median(r[i] for r in rs) for i in range(2)] for name, rs in runs.items()}
    base, fast = runs["none"][-1][3], runs["hunyuan3d_fast"][-1][3]
    scores = chamfer_and_fscore(to_mesh(base), to_mesh(fast), threshold=0.01)
    print(f"{'stack':<16}{'DiT steps':>10}{'DiT':>9}{'speed':>8}{'decode':>9}{'speed':>8}{'queries':>9}{'total speed':>13}")
    for name in runs:
        dit_s, dec_s = med[name]
        total = sum(med["none"]) / (dit_s + dec_s)
        print(
            f"{name:<16}{runs[name][-1][2]:>10}{dit_s:>8.2f}s{med['none'][0] / dit_s:>7.2f}x{dec_s:>8.2f}s"
            f"{med['none'][1] / dec_s:>7.2f}x{(queries if name != 'none' else 1.0):>8.1%}{total:>12.2f}x"
        )
    print(f"mesh vs unaccelerated: Chamfer {scores['chamfer']:.5f}, F-score@0.01 {scores['fscore']:.4f} (random DiT: see the docstring)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=256, help="octree_resolution (default 256)")
    parser.add_argument("--steps", type=int, default=50, help="DiT steps (default 50, hy3dgen's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    hy = import_hy3dgen_pipeline()
    if hy is None:
        sys.exit(f"hy3dgen 2.0.2 is not installed; {INSTALL_HINT}")
    pipe, shape_vae, latents = build(hy)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    decode_only(shape_vae, latents, args.resolution, args.repeats)
    whole_pipeline(pipe, args.resolution, args.steps, args.repeats)


if __name__ == "__main__":
    main()
