"""The command-line options of every benchmark, built without importing torch or a model.

``accel3d bench <name> --help`` only needs these, so it answers at once; the benchmark module
itself (and torch) is imported only to run. Defaults that depend on the machine (a GPU or not)
are resolved when the benchmark starts and shown here as text.

Example::

    from accel3d.bench.options import parser

    args = parser("decoding").parse_args(["--resolutions", "64", "--subjects", "sphere"])
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
from collections.abc import Callable

from accel3d.bench import add_output_arguments, nonnegative_int, positive_float, positive_int
from accel3d.decoding.config import AdaptiveKVConfig

# The fields `bench decoding` can decode: the shipped VAE, then accel3d.geometry.shapes.SHAPES (a test keeps them equal).
DECODING_SUBJECTS = ("model", "sphere", "torus", "box", "thin_plate", "fields", "local")
KV_MODES = ("mass", "mean", "merge")
FIELD_STACKS = ("hierarchical", "hierarchical_fast", "hierarchical_flashvdm")
CACHING_SECTIONS = ("tiny", "sd21", "novel_view")
KERNEL_DTYPES = ("float32", "float16", "bfloat16")
# `bench pruning`: Fast-SAM3D's modules alone, in pairs and all three, then the baselines (stack names in configs/stack)
PRUNING_MODULES = ("modality_cache", "token_carving", "spectral_aggregation")
PRUNING_BASELINES = ("taylorseer", "easycache", "random_drop", "uniform_merge")
PRUNING_OBJECTS = ("bunny", "eval_00_box", "eval_01_ellipsoid", "eval_02_capsule", "eval_03_cylinder", "eval_04_cone")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default (a default of None is explained by its help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None and action.help:
            return action.help
        return super()._get_help_string(action)


def summary(name: str) -> str:
    """The first line of a benchmark module's docstring, read without importing the module."""
    text = description(name).strip()
    first = text.splitlines()[0] if text else ""
    return first.split(": ", 1)[1] if first.startswith("``") and ": " in first else first  # drop "``accel3d bench x``: "


def description(name: str) -> str:
    """A benchmark module's docstring, read from its source without importing it (and torch)."""
    spec = importlib.util.find_spec(f"accel3d.bench.{name}")
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


def power_of_two(text: str) -> int:
    """argparse type: a Triton tile size, as the kernel accepts (a power of two in [16, 256])."""
    value = positive_int(text)
    if value < 16 or value > 256 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"expected a power of two in [16, 256], got {value}")
    return value


def _new(name: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"accel3d bench {name}", description=description(name), formatter_class=_HelpFormatter)


def caching_parser() -> argparse.ArgumentParser:
    p = _new("caching")
    p.add_argument("--sections", nargs="+", default=list(CACHING_SECTIONS), choices=CACHING_SECTIONS)
    p.add_argument("--tiny-iterations", type=positive_int, default=500, help="SDS steps on the tiny U-Net")
    p.add_argument("--sd-iterations", type=positive_int, default=150, help="about 10 minutes for both runs on 2 CPU cores")
    p.add_argument("--novel-iterations", type=positive_int, default=600, help="SDS steps on the trained novel-view U-Net")
    p.add_argument(
        "--novel-long-iterations",
        type=nonnegative_int,
        default=1500,
        help="one more pair of runs this long on it, to find where the speedup crosses the target (0: skip)",
    )
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs of baseline and Hash3D on the tiny U-Net")
    p.add_argument("--calibration-repeats", type=positive_int, default=3, help="timed full and partial U-Net forwards")
    p.add_argument("--check-every", type=nonnegative_int, default=5, help="fidelity check on every k-th call with hits (tiny U-Net)")
    p.add_argument("--sd-check-every", type=nonnegative_int, default=10, help="the same for the SD-2.1-base architecture")
    p.add_argument("--no-ablations", action="store_true", help="only the paper's settings against the baseline")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    add_output_arguments(p, "caching")
    return p


KV_STACKS = {"mass": "flashvdm", "mean": "flashvdm_mean", "merge": "flashvdm_merge"}  # hierarchical + adaptive KV in each mode


def decoding_parser() -> argparse.ArgumentParser:
    p = _new("decoding")
    p.add_argument("--resolutions", type=positive_int, nargs="+", default=[128, 256, 384])
    p.add_argument("--subjects", nargs="+", default=["model", "sphere", "torus", "thin_plate"], choices=DECODING_SUBJECTS)
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs of each method, alternating")
    p.add_argument("--warmup-resolution", type=positive_int, default=64, help="resolution of the untimed warm-up run of each method")
    p.add_argument("--field-resolution", type=positive_int, default=256, help="subject 'fields': the decoding resolution")
    p.add_argument("--field-sdf-resolution", type=positive_int, default=128, help="subject 'fields': the SDF grid")
    p.add_argument("--field-meshes", nargs="+", default=["bunny", "eval_00_box", "eval_04_cone"],
                   help="subject 'fields': meshes of accel3d.geometry.mesh_sources' eval split")  # fmt: skip
    p.add_argument("--local-points", type=positive_int, default=65536, help="subject 'local': query points timed")
    p.add_argument("--field-stacks", nargs="+", default=list(FIELD_STACKS), choices=FIELD_STACKS, help="subject 'fields': stacks compared")
    p.add_argument("--stack", default="hierarchical", help="the stack (configs/stack/) whose hierarchical decoding the model gets")
    p.add_argument("--sdf-stack", default="hierarchical_flashvdm", help="the stack whose hierarchical decoding the analytic fields get")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of the model's stacks (--stack and the adaptive KV ones), as `accel3d run` takes them: "
        "stack.accelerators.hierarchical.band=2.5 (each applies to the stacks that have that accelerator)",
    )
    p.add_argument("--sdf-set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="overrides of --sdf-stack, likewise")
    p.add_argument(
        "--kv-modes",
        nargs="*",
        default=list(KV_MODES),
        choices=KV_MODES,
        help="adaptive KV modes to add on the VAE, each from its stack "
        f"({', '.join(f'{m}: {s}' for m, s in KV_STACKS.items())}; none given: skip)",
    )
    p.add_argument("--chunk-size", type=positive_int, default=65536, help="points per decoder call")
    p.add_argument("--fscore-threshold", type=positive_float, default=0.01, help="F-score distance threshold")
    add_output_arguments(p, "decoding")
    return p


def kernels_parser() -> argparse.ArgumentParser:
    p = _new("kernels")
    gpu_cpu = lambda gpu, cpu: f"{gpu} on a GPU, {cpu} on the CPU"  # resolved when the benchmark starts
    p.add_argument("--dtype", choices=KERNEL_DTYPES, default=None, help=gpu_cpu("float16", "float32"))
    p.add_argument("--heads", type=positive_int, default=None, help=gpu_cpu(16, 4) + " (Hunyuan3D-2: 16 heads of 64)")
    p.add_argument("--head-dim", type=positive_int, default=None, help=gpu_cpu(64, 16))
    p.add_argument("--keys", type=positive_int, default=None, help=gpu_cpu(3072, 1024))
    p.add_argument("--queries", type=positive_int, default=None, help=gpu_cpu(262144, 65536))
    p.add_argument("--topk", type=positive_int, default=None, help="K per cell as a count (None: Hunyuan3D-2's rule)")
    p.add_argument("--cells", type=positive_int, default=AdaptiveKVConfig.cells, help="cells per axis (adaptive_kv's default)")
    p.add_argument("--block-m", type=power_of_two, nargs="+", default=[64, 128], help="Triton query block sizes to try")
    p.add_argument("--block-n", type=power_of_two, nargs="+", default=[32, 64], help="Triton key block sizes to try")
    p.add_argument("--rows", type=positive_int, default=None, help=gpu_cpu(262144, 65536) + " rows for gather/scatter")
    p.add_argument("--channels", type=positive_int, default=256, help="channels per row for gather/scatter")
    p.add_argument("--repeats", type=positive_int, default=None, help=gpu_cpu(20, 5))
    add_output_arguments(p, "kernels")
    return p


def pruning_parser() -> argparse.ArgumentParser:
    p = _new("pruning")
    p.add_argument("--objects", nargs="+", default=["bunny", "eval_00_box", "eval_04_cone"], choices=PRUNING_OBJECTS,
                   help="meshes (the bunny, a training mesh; held-out procedural shapes), rendered to image and mask")  # fmt: skip
    p.add_argument("--poses", type=positive_int, default=2, help="poses per object: the default front view, then random ones")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs of every configuration, alternating")
    p.add_argument("--no-baselines", action="store_true", help=f"leave out {', '.join(PRUNING_BASELINES)}")
    p.add_argument("--only", nargs="+", default=None, help="run only these configurations (names as printed, e.g. fastsam3d)")
    p.add_argument("--ss-steps", type=positive_int, default=25)
    p.add_argument("--slat-steps", type=positive_int, default=25)
    p.add_argument("--weights", default=None, help="an image-to-3D checkpoint (default: the shipped accel3d/models/weights/image_to_3d.pt)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--real", choices=("trellis", "sam3d", "both"), default=None,
                   help="instead: every module, the stack and the baselines on the real TRELLIS / SAM 3D Objects pipeline classes "
                   "with small random weights, counting model calls and tokens (no fidelity); needs a repository checkout and the "
                   "test-only installs (scripts/bench_real_pruning.py)")  # fmt: skip
    add_output_arguments(p, "pruning")
    return p


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "caching": caching_parser,
    "decoding": decoding_parser,
    "kernels": kernels_parser,
    "pruning": pruning_parser,
}


def parser(name: str) -> argparse.ArgumentParser:
    """The option parser of benchmark ``name``."""
    return PARSERS[name]()
