"""The decoding accelerators: ``hierarchical`` (volume decoder stage) and
``adaptive_kv`` (geo decoder stage)."""

from __future__ import annotations

import inspect
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from accel3d.core.accelerator import BaseAccelerator, stage_reference
from accel3d.core.validate import ArgumentError
from accel3d.decoding.config import AdaptiveKVConfig, HierarchicalConfig
from accel3d.decoding.hierarchical import HierarchicalVolumeDecoder
from accel3d.decoding.kv_selection import CellPlan, KVSelector, plan_cells, resolve_topk
from accel3d.geometry.grid import DEFAULT_BOUND
from accel3d.geometry.volume import VolumeGrid
from accel3d.kernels import packed_sparse_attention


def _accepts(fn: Callable[..., Any], count: int) -> bool:
    """Whether ``fn`` can be called with ``count`` positional arguments."""
    try:
        inspect.signature(fn).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): assume it can
        return True
    return True


class HierarchicalDecoding(BaseAccelerator):
    """Attach to any object with ``decode(fn, resolution, bound) -> VolumeGrid``
    (the ``volume_decoder`` stage) and decode coarse-to-fine instead.

    The surface level and the inside side are the stage's: a stage with ``level`` and ``inside``
    attributes (as :class:`~accel3d.geometry.volume.DenseVolumeDecoder` has) is refined around
    its own level, so the mesh it extracts there is the dense one. Its ``chunk_size``,
    ``progress`` and ``max_memory_bytes`` are inherited too.

    Example::

        acc = HierarchicalDecoding(min_resolution=63, band=0.95, band_units="field")
        with acc.applied(DenseVolumeDecoder(level=0.3)) as a:   # or Stack([acc]).attach(pipeline)
            ...                                                # refines around 0.3
        acc.stats()  # {"calls": 1, "queries": ..., "dense_queries": ..., "query_fraction": ...}
    """

    Config = HierarchicalConfig

    def __init__(self, config: HierarchicalConfig | None = None, **knobs: Any) -> None:
        super().__init__(config, **knobs)
        own = {a: getattr(self.config, a) for a in ("chunk_size", "progress", "max_memory_bytes") if getattr(self.config, a) is not None}
        self.decoder = HierarchicalVolumeDecoder(self.config, **own)
        self._settings: dict[str, Any] = own
        self._stage_settings: Callable[[], dict[str, Any]] = lambda: own
        self.last_levels: list[dict] = []

    def _attach(self, target: Any) -> None:
        decode = getattr(target, "decode", None)
        if not callable(decode) or not _accepts(decode, 3):  # a VAE's decode(latents) is not a volume decoder
            raise TypeError(
                f"hierarchical: expected a volume decoder with a decode(fn, resolution, bound) method, got {type(target).__name__}"
            )
        stage = stage_reference(target)
        self._stage_settings = lambda: self._settings_of(stage()) if stage() is not None else self._settings
        self._settings = self._settings_of(target)
        self.decoder = HierarchicalVolumeDecoder(self.config, **self._settings)
        self.patches.set(target, "decode", self._decode)

    def _settings_of(self, target: Any) -> dict[str, Any]:
        """The stage's conventions and chunking, where it states them; chunking set on the accelerator wins.

        Read again at every decode, because a stage may take them per call (Hunyuan3D-2's ``mc_level`` and
        ``num_chunks`` are arguments of its volume-decoder call)."""
        settings = {a: getattr(target, a) for a in ("level", "inside", "chunk_size", "progress", "max_memory_bytes") if hasattr(target, a)}
        settings.update(
            {a: getattr(self.config, a) for a in ("chunk_size", "progress", "max_memory_bytes") if getattr(self.config, a) is not None}
        )
        return settings

    def check_pipeline(self, pipeline: Any) -> None:
        """Refuse a pipeline whose target resolution is below ``min_resolution`` (before any decoding)."""
        resolution = getattr(pipeline, "resolution", None)
        if isinstance(resolution, int) and resolution < self.config.min_resolution:
            raise ArgumentError(
                f"pipeline.resolution: {resolution} is below min_resolution {self.config.min_resolution} of the "
                f"'{self.name}' accelerator; raise the resolution or lower min_resolution"
            )

    def summary(self) -> dict[str, float]:
        return {"query_fraction": self.statistics.counters.get("query_fraction", 1.0)}

    def ceiling(self) -> float | None:
        fraction = self.statistics.counters.get("query_fraction")
        return 1.0 / fraction if fraction else None  # decode time follows the queries made

    def fell_back(self) -> str | None:
        counters = self.statistics.counters
        if counters.get("calls") and counters.get("dense_levels"):
            return "hierarchical decoding decoded densely: no ramp between the coarse samples (a step, such as a +-1 occupancy)"
        if counters.get("calls") and counters.get("query_fraction", 1.0) >= 1.0:
            return "hierarchical decoding queried every point (one level, or surface everywhere)"
        return None

    def _decode(self, fn: Any, resolution: int, bound: float = DEFAULT_BOUND) -> VolumeGrid:
        settings = self._stage_settings()
        if settings != self._settings:
            self._settings, self.decoder = settings, HierarchicalVolumeDecoder(self.config, **settings)
        with self.statistics.time("decode"):
            grid = self.decoder.decode(fn, resolution, bound)
        self.last_levels = grid.levels  # what each part of the refinement rule flagged, per level
        self.statistics.add("calls")
        self.statistics.add("dense_levels", sum(1 for lvl in grid.levels if lvl.get("flagged", {}).get("rule") == "dense"))
        if grid.verification is not None:
            self.statistics.add("verify_queries", grid.verification["queries"])
            self.statistics.add("verify_misses", grid.verification["misses"])
        self.statistics.add("queries", grid.queries)
        self.statistics.add("dense_queries", grid.dense_queries)
        self.statistics.set("query_fraction", self.statistics.counters["queries"] / self.statistics.counters["dense_queries"])
        return grid


class AdaptiveKVSelection(BaseAccelerator):
    """FlashVDM's adaptive KV selection on the ``geo_decoder`` stage.

    The target is a vecset geo decoder with ``query(points, kv)`` whose cross-attention
    (at the dotted ``attention`` path) computes attention through an ``attend(q, k, v)``
    method on (B, H, N, d) tensors, as :class:`accel3d.models.vecset.vae.CrossAttention`
    does. Each call's points are sorted into spatial cells (:func:`plan_cells`), every
    cell picks its keys (:class:`KVSelector`), and the cells attend in one packed call
    (:func:`accel3d.kernels.packed_sparse_attention`); outputs come back in the
    caller's order.

    K (mean mode) is ``topk`` keys (an int count), or ``topk_ratio`` of them (a float
    share in (0, 1]), or with neither Hunyuan3D-2's rule (1024 of 3072, 256 of 512,
    otherwise a third).

    ``mass`` mode (the ``flashvdm`` stack's default) keeps per cell the fewest keys that
    hold ``mass`` of the sampled queries' attention, checks each cell's output on other
    queries against all keys and falls back to all keys where the relative error exceeds
    ``tolerance``; a call that would keep ``dense_above`` of the keys or more runs dense
    attention instead, so it is never slower than dense in a way that matters; once
    ``probe_calls`` calls on the same keys have all run dense, the rest of that decode skips
    the selection too (its cost is what would remain; the attention is exactly the dense one). In
    ``mean`` and ``merge`` modes the same check (``check``) only measures, and warns once
    when the kept keys move the output.

    Example::

        acc = AdaptiveKVSelection(mode="mean")           # K: 1024 of 3072, 256 of 512, else N/3
        with acc.applied(vae.geo_decoder):
            grid = DenseVolumeDecoder().decode(vae.field(latents), 256)
        acc.stats()["keys_per_query"]
        AdaptiveKVSelection(mode="mass", mass=0.999999, tolerance=0.01)   # error-bounded: within the tolerance where checked
    """

    Config = AdaptiveKVConfig

    def __init__(self, config: AdaptiveKVConfig | None = None, **knobs: Any) -> None:
        super().__init__(config, **knobs)
        c = self.config
        self.selector = KVSelector(
            c.mode,
            c.topk,
            c.per_head,
            c.sample_every,
            c.threshold,
            topk_ratio=c.topk_ratio,
            mass=c.mass,
            tolerance=c.tolerance,
            check=c.check,
        )
        self._probe_keys: weakref.ref | None = None  # the keys the dense run below counts calls on
        self._dense_run = 0  # consecutive dense calls on those keys; negative once a call kept fewer keys
        self._plan: CellPlan | None = None

    def _attach(self, target: Any) -> None:
        if not callable(getattr(target, "query", None)):
            raise TypeError(f"adaptive_kv: expected a geo decoder with a query(points, kv) method, got {type(target).__name__}")
        attn = target
        for part in self.config.attention.split("."):
            if not hasattr(attn, part):
                raise AttributeError(
                    f"adaptive_kv: {type(target).__name__} has no attention module at '{self.config.attention}' (missing '{part}')"
                )
            attn = getattr(attn, part)
        if not callable(getattr(attn, "attend", None)):
            raise TypeError(f"adaptive_kv: the module at '{self.config.attention}' has no attend(q, k, v) method to replace")
        self.patches.wrap(target, "query", self._wrap_query)
        self.patches.wrap(attn, "attend", self._wrap_attend)

    def _wrap_query(self, original: Callable[[Tensor, Any], Tensor]) -> Callable[[Tensor, Any], Tensor]:
        def query(points: Tensor, kv: Any) -> Tensor:
            num_keys = kv[0].shape[-2]
            if self._keeps_everything(num_keys):
                self._count(points.shape[0] * points.shape[1], num_keys, num_keys)
                return original(points, kv)  # nothing to select: the untouched computation, bit for bit
            if self._probe_keys is None or self._probe_keys() is not kv[0]:  # other keys: a new decode, probe again
                self._probe_keys, self._dense_run = weakref.ref(kv[0]), 0
            if self.selector.mode == "mass" and self.config.probe_calls and self._dense_run >= self.config.probe_calls:
                self.statistics.add("probed_dense_calls")
                self._count(points.shape[0] * points.shape[1], num_keys, num_keys)
                return original(points, kv)  # the probe found no saving on these keys: dense, bit for bit
            outs = []
            for b in range(points.shape[0]):
                plan = plan_cells(points[b], self.config.cells, self.config.bound)
                kv_b = tuple(t[b : b + 1] if t.shape[0] == points.shape[0] else t for t in kv)
                self._plan = plan
                try:
                    out = original(points[b : b + 1, plan.order], kv_b)
                finally:
                    self._plan = None
                outs.append(out[:, plan.inverse])
            return torch.cat(outs)

        return query

    def summary(self) -> dict[str, float]:
        c = self.statistics.counters
        out = {"keys_per_query": c.get("keys_per_query", 0.0), "key_fraction": c.get("key_fraction", 1.0)}
        if c.get("checked_cells"):
            out["fallback_cell_share"] = c.get("fallback_cells", 0) / c["checked_cells"]
        return out

    def fell_back(self) -> str | None:
        if self.statistics.counters.get("dense_fallbacks"):
            return f"adaptive KV fell back to dense attention {int(self.statistics.counters['dense_fallbacks'])} times"
        if self.statistics.counters.get("calls") and self.statistics.counters.get("key_fraction", 1.0) >= 1.0:
            return "adaptive KV kept every key"
        return None

    def _record_check(self, sel: Any) -> None:
        """Count what the error check found and say so at run time, once per attachment."""
        stats = self.statistics
        stats.add("checked_cells", sel.checked_cells)
        stats.add("fallback_cells", sel.fallback_cells)
        stats.add("cells_above_tolerance", sel.cells_above_tolerance)
        stats.set("max_error", max(stats.counters.get("max_error", 0.0), sel.max_error))
        if sel.cells_above_tolerance and not stats.counters.get("warned_moved"):
            stats.set("warned_moved", 1)
            warnings.warn(
                f"adaptive_kv ({self.selector.mode} mode): in {sel.cells_above_tolerance} of {sel.checked_cells} cells the kept keys "
                f"move the attention output by more than {self.selector.tolerance:g} (relative), which moves the surface; "
                f"mode=mass falls back to every key in such cells",
                stacklevel=3,
            )

    def _count(self, queries: int, keys_per_query: float, num_keys: int) -> None:
        stats = self.statistics
        stats.add("calls")
        stats.add("queries", queries)
        stats.add("kept_keys", keys_per_query * queries)
        stats.add("dense_keys", num_keys * queries)
        stats.set("keys_per_query", stats.counters["kept_keys"] / max(stats.counters["queries"], 1))
        stats.set("key_fraction", stats.counters["kept_keys"] / max(stats.counters["dense_keys"], 1))

    def _keeps_everything(self, num_keys: int) -> bool:
        return self.selector.mode == "mean" and resolve_topk(self.selector.topk, num_keys, self.selector.topk_ratio) >= num_keys

    def _wrap_attend(self, original: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            plan = self._plan
            if plan is None or q.shape[0] != 1 or q.shape[2] != plan.num_points:
                # Not called through the patched query() with its points (for example a decoder
                # that splits its queries itself): dense attention, counted and warned about once.
                if plan is not None and not self.statistics.counters["dense_fallbacks"]:
                    warnings.warn("adaptive_kv: attention got other queries than query() was given; using dense attention", stacklevel=2)
                self.statistics.add("dense_fallbacks")
                return original(q, k, v)
            # Timings are host wall times; on a GPU they include only what the host waits for.
            with self.statistics.time("select"):
                sel = self.selector.select(q[0], k[0], plan.cell_offsets, self.config.scale, v=v[0])
            self._record_check(sel)
            if self.selector.mode == "mass" and sel.keys_per_query >= self.config.dense_above * k.shape[2]:
                # Keeping nearly every key saves nothing over dense attention: compute it densely, exactly.
                self.statistics.add("dense_calls")
                self._dense_run += 1
                self._count(q.shape[2], k.shape[2], k.shape[2])
                return original(q, k, v)
            self._dense_run = -(10**9)  # a saving was found on these keys: keep selecting
            with self.statistics.time("attend"):
                out = packed_sparse_attention(
                    q[0],
                    k[0],
                    v[0],
                    plan.cell_offsets,
                    sel.kv_offsets,
                    sel.kv_indices,
                    scale=self.config.scale,
                    backend=self.config.backend,
                )
            self._count(q.shape[2], sel.keys_per_query, k.shape[2])
            return out[None]

        return attend
