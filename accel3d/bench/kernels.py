"""``accel3d bench kernels``: each kernel's Triton path against its PyTorch reference.

On a CUDA device it times, side by side in one process, after a warm-up, as the
median of ``--repeats`` runs (with ``torch.cuda.synchronize``):

- packed sparse attention (Triton, for every ``--block-m`` x ``--block-n``) vs the
  PyTorch reference vs dense SDPA over all keys, on spatial cells of query points
  with mean-mode top-K key lists (the decoder's workload); the key selection is
  timed on its own row, and the sparse rows' ratios exclude it;
- row gather, scatter-add and scatter-max (Triton vs PyTorch).

Every Triton row reports its largest deviation from the reference. Without a
GPU only the PyTorch rows run: the Triton interpreter is for correctness, not
timing, so the Triton rows are listed as skipped.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from accel3d.bench import output_path, write_results
from accel3d.bench.options import kernels_parser
from accel3d.decoding.kv_selection import KVSelector, plan_cells
from accel3d.kernels import gather_rows, packed_sparse_attention, scatter_add_rows, scatter_max_rows


def timed(fn: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = fn()  # warm-up (and Triton compilation)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def attention_rows(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, triton_ok: bool) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    heads, dim, nk, nq = args.heads, args.head_dim, args.keys, args.queries
    points = F.normalize(torch.randn(nq, 3, generator=g), dim=-1) * 0.7  # near a surface, like refinement candidates
    plan = plan_cells(points, args.cells)
    q, k, v = (torch.randn(heads, n, dim, generator=g).to(device, dtype) for n in (nq, nk, nk))
    offsets = plan.cell_offsets.to(device)
    sel = KVSelector("mean", topk=args.topk).select(q, k, offsets)
    kept = int(sel.kv_offsets[1])
    rows = []
    dense_s, _ = timed(lambda: F.scaled_dot_product_attention(q[None], k[None], v[None]), args.repeats, device)
    ref_s, ref = timed(
        lambda: packed_sparse_attention(q, k, v, offsets, sel.kv_offsets, sel.kv_indices, backend="torch"), args.repeats, device
    )
    base = {
        "kernel": "packed_sparse_attention",
        "shape": f"H{heads} Nq{nq} Nk{nk} D{dim} K{kept} cells{plan.num_cells}",
        "dtype": str(dtype),
    }
    select_s, _ = timed(lambda: KVSelector("mean", topk=args.topk).select(q, k, offsets).kv_indices, args.repeats, device)
    rows.append({**base, "impl": "dense SDPA (all keys)", "seconds": dense_s})
    rows.append({**base, "impl": "key selection (mean top-K)", "seconds": select_s})  # add it to the sparse rows
    rows.append({**base, "impl": "torch reference", "seconds": ref_s, "vs_dense": dense_s / ref_s})
    for bm in args.block_m:
        for bn in args.block_n:
            impl = f"triton BLOCK_M={bm} BLOCK_N={bn}"
            if not triton_ok:
                rows.append({**base, "impl": impl, "skipped": "no CUDA device"})
                continue
            s, out = timed(
                lambda bm=bm, bn=bn: packed_sparse_attention(
                    q, k, v, offsets, sel.kv_offsets, sel.kv_indices, backend="triton", block_m=bm, block_n=bn
                ),
                args.repeats,
                device,
            )
            err = (out.float() - ref.float()).abs().max().item()
            rows.append({**base, "impl": impl, "seconds": s, "vs_dense": dense_s / s, "vs_reference": ref_s / s, "max_abs_err": err})
    return rows


def row_kernel_rows(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, triton_ok: bool) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    n, c = args.rows, args.channels
    src = torch.randn(n, c, generator=g).to(device, dtype)
    index = torch.randint(0, n, (n,), generator=g).to(device)
    pooled = torch.randint(0, n // 8, (n,), generator=g).to(device)  # ~8 rows pooled into each
    cases = {
        "gather_rows": lambda be: gather_rows(src, index, backend=be),
        "scatter_add_rows": lambda be: scatter_add_rows(src, pooled, n // 8, backend=be),
        "scatter_max_rows": lambda be: scatter_max_rows(src, pooled, n // 8, backend=be),
    }
    rows = []
    for name, fn in cases.items():
        base = {"kernel": name, "shape": f"{n}x{c}", "dtype": str(dtype)}
        ref_s, ref = timed(lambda fn=fn: fn("torch"), args.repeats, device)
        rows.append({**base, "impl": "torch reference", "seconds": ref_s})
        if not triton_ok:
            rows.append({**base, "impl": "triton", "skipped": "no CUDA device"})
            continue
        s, out = timed(lambda fn=fn: fn("triton"), args.repeats, device)
        rows.append(
            {
                **base,
                "impl": "triton",
                "seconds": s,
                "vs_reference": ref_s / s,
                "max_abs_err": (out.float() - ref.float()).abs().max().item(),
            }
        )
    return rows


def main(argv: list[str]) -> None:
    """``accel3d bench kernels`` with these command-line arguments."""
    run(kernels_parser().parse_args(argv))


# Defaults that depend on the machine: (on a GPU, on the CPU); the options show them as text.
MACHINE_DEFAULTS = {
    "dtype": ("float16", "float32"),
    "heads": (16, 4),
    "head_dim": (64, 16),
    "keys": (3072, 1024),
    "queries": (262144, 65536),
    "rows": (262144, 65536),
    "repeats": (20, 5),
}


def run(args: argparse.Namespace) -> None:
    cuda = torch.cuda.is_available()
    for key, (gpu, cpu) in MACHINE_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, gpu if cuda else cpu)
    output_path(args, "kernels")  # a bad --out fails now, not after the work
    device = torch.device("cuda" if cuda else "cpu")
    dtype = getattr(torch, args.dtype)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"device: {name}; torch {torch.__version__}; {args.dtype}")
    rows = attention_rows(args, device, dtype, cuda) + row_kernel_rows(args, device, dtype, cuda)
    print(f"{'kernel':<25}{'impl':<30}{'ms':>10}{'vs dense':>10}{'vs ref':>9}{'max err':>10}  shape")
    for r in rows:
        if "skipped" in r:
            print(f"{r['kernel']:<25}{r['impl']:<30}{'skipped: ' + r['skipped']:>39}  {r['shape']}")
            continue
        ratio = {key: f"{r[key]:.2f}x" if key in r else "" for key in ("vs_dense", "vs_reference")}
        err = f"{r['max_abs_err']:.1e}" if "max_abs_err" in r else ""
        print(
            f"{r['kernel']:<25}{r['impl']:<30}{1000 * r['seconds']:>10.2f}{ratio['vs_dense']:>10}{ratio['vs_reference']:>9}{err:>10}"
            f"  {r['shape']}"
        )
    meta = {"device": name, "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()}}
    write_results(args, "kernels", {"meta": meta, "results": rows})
