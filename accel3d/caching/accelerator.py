"""``Hash3D``: reuse U-Net features across nearby camera poses and timesteps.

Attach it to a diffusers ``UNet2DConditionModel`` (the ``denoiser`` stage of the
``sds`` pipeline). Every call must say its camera, with :func:`camera_pose` or the
extra ``camera=`` keyword; the timestep is the call's own. Per batch element (the
classifier-free-guidance halves of an element travel together) it flips a coin:
with probability ``retrieve_prob`` it looks the pose up in the grid hash table; a
hit runs only the shallow part of the U-Net around the retrieved feature, and
everything else runs the full U-Net and stores its feature.
"""

from __future__ import annotations

import inspect
import time
import warnings
from typing import Any

import torch

from accel3d.caching.batch_layout import call_pose, element_keys, element_rows, per_element, per_row, rows_of, take_rows
from accel3d.caching.conditioning import conditioning_fingerprints, tag_fingerprints
from accel3d.caching.config import Hash3DConfig
from accel3d.caching.hash_table import GridHashTable
from accel3d.caching.unet_cut import UNetCut
from accel3d.core.accelerator import BaseAccelerator

ZERO123_IN_CHANNELS = 8  # Zero123's U-Net: 4 noisy latent channels + the reference view's 4, concatenated


def encodes_camera(unet: Any) -> bool:
    """Whether ``unet``'s conditioning encodes the camera, so that every pose gives other conditioning (Hash3D then keys
    on the pose alone): it says so (``conditioning_encodes_camera = True``, as accel3d's novel-view model does), or it
    is Zero123-shaped, with 8 input channels (the reference latent concatenated to the noisy one; its cross-attention
    carries the CLIP image embedding and the relative camera). Text U-Nets have 4 (SD inpainting 9, depth 5).

    Example::

        encodes_camera(build_unet("tiny", in_channels=8))   # True
    """
    declared = getattr(unet, "conditioning_encodes_camera", None)  # an optional flag a model may set
    if declared is not None:
        return bool(declared)
    config = getattr(unet, "config", None)
    return getattr(config, "in_channels", None) == ZERO123_IN_CHANNELS


class Hash3D(BaseAccelerator):
    """Hash3D feature caching for a diffusers U-Net in a score-distillation loop.

    Its knobs are declared once, with their defaults and checks, in
    :class:`~accel3d.caching.config.Hash3DConfig`; pass a config or the knobs as keywords. In short:
    ``mode`` feature (the paper) or noise; ``cut`` the cut point; ``retrieve_prob`` the probability
    that an element tries the cache (0 is exact); ``grids`` the cell sizes of each grid (several:
    the adaptive grid); the table's ``num_buckets``, ``queue_length``, ``max_megabytes``,
    ``temperature``, ``similarity_decay`` and ``exact_cells`` (see :class:`GridHashTable`);
    ``match_conditioning`` (reuse only under the conditioning an entry was stored with; ``auto``:
    not for U-Nets whose conditioning encodes the camera, see :func:`encodes_camera`);
    ``guidance_pairs`` (diffusers' CFG layout); ``missing_pose``; ``check_every`` (every k-th call
    with hits is also run in full to measure fidelity, its time reported apart); ``seed``.

    Example::

        hash3d = Hash3D(retrieve_prob=0.9)
        with hash3d.applied(unet):
            for step in range(steps):
                with camera_pose(azimuth=az, elevation=el, radius=r):
                    eps = unet(torch.cat([x_t] * 2), t, encoder_hidden_states=text).sample
        hash3d.stats()["hit_rate"]
    """

    Config = Hash3DConfig

    def __init__(self, config: Hash3DConfig | None = None, **knobs: Any) -> None:
        super().__init__(config, **knobs)
        c = self.config
        self.match_conditioning = c.match_conditioning if c.match_conditioning != "auto" else True
        self._new_tags = 0
        self.table = GridHashTable(
            grids=c.grids,
            num_buckets=c.num_buckets,
            queue_length=c.queue_length,
            max_bytes=int(c.max_megabytes * 2**20),
            temperature=c.temperature,
            similarity_decay=c.similarity_decay,
            exact_cells=c.exact_cells,
        )
        self._cut: UNetCut | None = None
        self._signature: inspect.Signature | None = None
        self._generator = torch.Generator().manual_seed(c.seed)
        self._calls_with_hits = 0
        self._fingerprints: torch.Tensor | None = None  # conditioning fingerprints; a row's index is its table tag
        self._projections: dict[tuple[int, str], torch.Tensor] = {}
        self.history: list[int] = []  # hits of each call, in order (hit rate over time)
        self.check_history: list[float] = []  # seconds of each call spent on fidelity checks

    # ------------------------------------------------------------------ protocol
    def _attach(self, target: Any) -> None:
        self._cut = UNetCut(target, self.config.cut)  # validates the architecture and the cut point
        self.table.clear()  # features of another U-Net (or an earlier attach) must never be reused
        self._fingerprints = None
        if self.config.mode == "feature" and (reason := self._cut.check_unet()) is not None:
            raise ValueError(f"unet: Hash3D cannot run a partial forward of this U-Net: {reason}")
        self._signature = inspect.signature(target.forward)
        if self.config.match_conditioning == "auto":
            self.match_conditioning = not encodes_camera(target)
        self.patches.wrap(target, "forward", self._wrap)

    def detach(self) -> None:
        super().detach()
        self._cut = None

    def reset(self) -> None:
        super().reset()
        self.table.clear()
        self._fingerprints = None
        self._new_tags = 0
        self._generator.manual_seed(self.config.seed)
        self._calls_with_hits = 0
        self.history = []
        self.check_history = []

    def stats(self) -> dict[str, float]:
        s = dict(self.statistics.as_dict())
        elements = s.get("elements", 0)
        s["hit_rate"] = s.get("hits", 0) / elements if elements else 0.0
        full, part = s.get("full_elements", 0), s.get("partial_elements", 0)
        if full and part and self.config.mode == "feature":
            per_full, per_part = s["full_s"] / full, s["partial_s"] / part
            s["saved_s_estimate"] = part * max(per_full - per_part, 0.0)  # what the hits would have cost in full
        elif full and self.config.mode == "noise":
            s["saved_s_estimate"] = s.get("hits", 0) * s["full_s"] / full
        if s.get("checks"):
            s["check_cosine"] = s.pop("check_cosine_sum") / s["checks"]
            s["check_rel_l2"] = s.pop("check_rel_l2_sum") / s["checks"]
        s.update({f"table_{k}": v for k, v in self.table.stats().items()})
        return s

    def summary(self) -> dict[str, float]:
        s = self.stats()
        out = {"hit_rate": s["hit_rate"]}
        if "check_cosine" in s:
            out.update(eps_cosine=s["check_cosine"], eps_rel_l2=s["check_rel_l2"])
        return out

    def ceiling(self) -> float | None:
        """U-Net speedup the hit rate allows, from the measured full and partial costs per element."""
        s = self.statistics.counters
        full, part = s.get("full_elements", 0), s.get("partial_elements", 0)
        elements = s.get("elements", 0)
        if not full or not elements:
            return None
        hit = s.get("hits", 0) / elements
        cost_hit = (s["partial_s"] / part) / (s["full_s"] / full) if part and self.config.mode == "feature" else 0.0
        return 1.0 / max((1.0 - hit) + hit * cost_hit, 1e-9)

    def excluded_seconds(self) -> float:
        return float(self.statistics.counters.get("check_s", 0.0))

    # ------------------------------------------------------------------ the patched forward
    def _wrap(self, original: Any) -> Any:
        def forward(*args: Any, camera: Any = None, **kwargs: Any) -> Any:
            return self._forward(original, camera, args, kwargs)

        return forward

    def _forward(self, original: Any, camera: Any, args: tuple, kwargs: dict) -> Any:
        bound = self._signature.bind(*args, **kwargs)
        arguments = bound.arguments
        sample: torch.Tensor = arguments["sample"]
        return_dict = arguments.get("return_dict", True)
        self.statistics.add("calls")
        pose = call_pose(camera, self.config.missing_pose)
        reason = self._cut.unsupported(arguments) if pose is not None else "no camera pose"
        if reason is not None:
            self.statistics.add("unsupported_calls")
            warnings.warn(f"hash3d: running the full U-Net for a call with {reason}", stacklevel=4)
            return original(*args, **kwargs)

        rows, elements = element_rows(sample, self.config.guidance_pairs)
        keys = element_keys(pose, arguments["timestep"], elements, sample)
        inputs = sample[rows].reshape(elements, -1)  # both CFG halves of an element, side by side
        self.statistics.add("elements", elements)

        self._sync(sample)
        start = time.perf_counter()
        cells = self.table.cells(keys)  # computed once per call
        tags = self._conditioning_tags(arguments, rows) if self.match_conditioning else torch.zeros(elements, dtype=torch.int64)
        finite = torch.isfinite(inputs).all(1).cpu()  # a NaN input runs in full and is not stored
        attempt = (torch.rand(elements, generator=self._generator) < self.config.retrieve_prob) & finite
        hit = torch.zeros(elements, dtype=torch.bool)
        found = None
        if attempt.any():
            found = self.table.lookup(keys[attempt], inputs[attempt], cells=cells[attempt], tags=tags[attempt])
            hit[attempt] = found.hit
        self.statistics.add("hash_s", time.perf_counter() - start)
        self.statistics.add("attempts", int(attempt.sum()))
        self.statistics.add("hits", int(hit.sum()))
        self.history.append(int(hit.sum()))
        self.check_history.append(0.0)
        self.statistics.add("updates", int((~attempt).sum()))
        state = (keys, cells, tags, finite, inputs)

        if not hit.any():
            output = self._full(original, arguments, rows, state, None)
            return output if return_dict is False else self._as_output(output[0])
        miss = (~hit).nonzero().flatten()
        hit_idx = hit.nonzero().flatten()
        hit_in_attempt = found.hit.nonzero().flatten()
        retrieved = found.values[hit_in_attempt]
        self.statistics.add("cross_cell_hits", int(found.cross_cell.sum()))
        for m in found.grid[found.hit].tolist():
            self.statistics.add(f"grid{m}_hits")

        eps = sample.new_empty(sample.shape[0], self._cut.unet.config.out_channels, *sample.shape[2:])
        if len(miss):
            eps[rows_of(rows, miss)] = self._full(original, arguments, rows, state, miss)[0]
        hit_rows = rows_of(rows, hit_idx)
        eps[hit_rows] = self._reuse(arguments, hit_rows, retrieved, len(hit_idx))
        self._maybe_check(original, arguments, hit_rows, eps[hit_rows])
        return (eps,) if return_dict is False else self._as_output(eps)

    def _full(self, original: Any, arguments: dict, rows: torch.Tensor, state: tuple, subset: torch.Tensor | None) -> tuple:
        """Run the untouched forward (on a subset of elements) and store what it produced."""
        keys, cells, tags, finite, inputs = state
        call = dict(arguments) if subset is None else take_rows(arguments, rows_of(rows, subset))
        call["return_dict"] = False
        sample = call["sample"]
        self._sync(sample)
        start = time.perf_counter()
        if self.config.mode == "feature":
            with self._cut.capture() as captured:
                output = original(**call)
        else:
            output = original(**call)
        self._sync(sample)
        count = len(keys) if subset is None else len(subset)
        self.statistics.add("full_s", time.perf_counter() - start)
        self.statistics.add("full_elements", count)
        value = captured["feature"] if self.config.mode == "feature" else output[0]
        start = time.perf_counter()
        value = per_element(value, rows, count)  # (elements, groups, ...): uncond and cond halves together
        sel = torch.arange(len(keys)) if subset is None else subset
        store = finite[sel] & torch.isfinite(value).flatten(1).all(1).cpu()
        if not store.all():
            self.statistics.add("nonfinite_not_stored", int((~store).sum()))
        if store.any():
            keep = sel[store]
            self.table.insert(keys[keep], inputs[keep], value[store.to(value.device)], cells=cells[keep], tags=tags[keep])
        self.statistics.add("hash_s", time.perf_counter() - start)
        return output

    def _reuse(self, arguments: dict, hit_rows: torch.Tensor, retrieved: torch.Tensor, count: int) -> torch.Tensor:
        """The output for hit elements: the shallow path around the feature, or the stored noise."""
        stored = per_row(retrieved)  # back to [uncond; cond] rows
        self.statistics.add("partial_elements", count)
        if self.config.mode == "noise":
            return stored
        call = take_rows(arguments, hit_rows)
        self._sync(stored)
        start = time.perf_counter()
        out = self._cut.partial(stored.to(call["sample"].dtype), **{k: v for k, v in call.items() if k != "return_dict"})
        self._sync(out)
        self.statistics.add("partial_s", time.perf_counter() - start)
        return out

    def _maybe_check(self, original: Any, arguments: dict, hit_rows: torch.Tensor, reused: torch.Tensor) -> None:
        if not self.config.check_every:
            return
        self._calls_with_hits += 1
        if self._calls_with_hits % self.config.check_every:
            return
        start = time.perf_counter()
        call = take_rows(arguments, hit_rows)
        call["return_dict"] = False
        reference = original(**call)[0]
        a, b = reused.flatten(1).double(), reference.flatten(1).double()
        self.statistics.add("checks", len(a))
        self.statistics.add("check_cosine_sum", float(torch.nn.functional.cosine_similarity(a, b, dim=1).sum()))
        self.statistics.add("check_rel_l2_sum", float(((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-12)).sum()))
        elapsed = time.perf_counter() - start  # one clock read: the total and the per-call history agree exactly
        self.statistics.add("check_s", elapsed)
        self.check_history[-1] = elapsed

    # ------------------------------------------------------------------ helpers
    def _conditioning_tags(self, arguments: dict, rows: torch.Tensor) -> torch.Tensor:
        """One tag per element for its conditioning (text embeddings, class labels, added conditions, masks):
        entries are reused only under the same conditioning, so a new or view-dependent prompt never reuses
        another prompt's features (see :mod:`accel3d.caching.conditioning`)."""
        prints = conditioning_fingerprints(arguments, rows, self._projections)
        if self._fingerprints is None or self._fingerprints.shape[1] != prints.shape[1]:
            if self._fingerprints is not None:  # other conditioning inputs than before: start afresh
                self.table.clear()
            self._fingerprints = prints[:0]
        known = len(self._fingerprints)
        tags, self._fingerprints = tag_fingerprints(prints, self._fingerprints)
        if len(self._fingerprints) > known:
            self._new_tags += 1
            calls = self.statistics.counters["calls"]
            if self._new_tags == 20 and calls < 25:  # once: 20 of the first < 25 calls brought new conditioning
                warnings.warn(
                    "hash3d: the conditioning differed on nearly every call so far, so nothing can be reused; if the "
                    "U-Net's conditioning encodes the camera (Zero123-style), build Hash3D(match_conditioning=False)",
                    stacklevel=5,
                )
        return tags

    @staticmethod
    def _sync(tensor: torch.Tensor) -> None:
        """Wait for queued GPU work, so that host clocks measure it."""
        if tensor.is_cuda:
            torch.cuda.synchronize(tensor.device)

    @staticmethod
    def _as_output(sample: torch.Tensor) -> Any:
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=sample)
