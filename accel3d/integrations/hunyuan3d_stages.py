"""Hunyuan3D-2's own objects (``hy3dgen``'s ``ShapeVAE`` and ``Hunyuan3DDiTFlowMatchingPipeline``) as accel3d stages.

:func:`stages` names, for a ``ShapeVAE`` (or a ``Hunyuan3DDiTPipeline``, through its ``.vae``):

- ``volume_decoder``: :class:`HunyuanVolumeDecoder`, installed as the VAE's ``volume_decoder`` (hy3dgen's
  call ``volume_decoder(latents, geo_decoder, bounds=1.01, num_chunks=..., octree_resolution=..., ...)``).
  Untouched, its ``decode(fn, resolution, bound)`` queries every point of hy3dgen's grid in hy3dgen's
  order and chunks, so the logits are bit for bit those of hy3dgen's ``VanillaVolumeDecoder`` (for one latent set;
  a batch is decoded one latent set at a time, where hy3dgen batches them); the
  ``hierarchical`` accelerator replaces ``decode``, refining around the call's ``mc_level``.
- ``geo_decoder``: :class:`HunyuanGeoDecoder`: the geo decoder's forward goes through
  ``query(points, kv)`` and its cross-attention processor through ``cross_attn_decoder.attn.attend(q, k, v)``,
  the two calls the ``adaptive_kv`` accelerator wraps (hy3dgen's own processor computes the attention there).

and, for a pipeline, ``ss_sampler``: :class:`HunyuanDiTStage`, the flow DiT (``pipeline.model``), called once
per step by hy3dgen's sampling loop (both CFG halves in one batch), as a flow stage with one token group
``{"shape": ()}``: the stage Fast-SAM3D's step cache (``modality_cache``) targets.

The stages are installed when a stack is attached (``accel3d.apply``) and taken off when it is detached
(``accel3d.remove``), which gives back the instance dictionaries exactly as they were. hy3dgen is never
imported: the classes are recognised by name.

Example::

    import accel3d

    accel3d.apply(pipe, "hunyuan3d_fast")        # a Hunyuan3DDiTFlowMatchingPipeline
    mesh = pipe(image=image, octree_resolution=256)[0]
    accel3d.remove(pipe)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from accel3d.core.hooks import PatchSet
from accel3d.core.validate import ArgumentError
from accel3d.geometry.grid import DEFAULT_BOUND
from accel3d.geometry.volume import DenseVolumeDecoder, VolumeGrid
from accel3d.integrations.flow_adapter import FlowStageAdapter
from accel3d.integrations.installed import InstalledStage


def _is_hy3dgen(obj: Any, *names: str) -> bool:
    return any(c.__name__ in names and c.__module__.startswith("hy3dgen.") for c in type(obj).__mro__)


def is_shape_vae(obj: Any) -> bool:
    """Whether ``obj`` is hy3dgen's ``ShapeVAE`` (or its base ``VectsetVAE``), read from its classes' names."""
    return _is_hy3dgen(obj, "ShapeVAE", "VectsetVAE")


def is_pipeline(obj: Any) -> bool:
    """Whether ``obj`` is a hy3dgen ``Hunyuan3DDiTPipeline`` (the flow-matching one included)."""
    return _is_hy3dgen(obj, "Hunyuan3DDiTPipeline")


def stages(obj: Any) -> dict[str, Any] | None:
    """The stages of a hy3dgen ``ShapeVAE`` (``volume_decoder``, ``geo_decoder``) or pipeline (those of its VAE and
    ``ss_sampler``); None for anything else. The stages are built detached; attaching a stack installs them.

    Example::

        sorted(stages(pipe))   # ['geo_decoder', 'ss_sampler', 'volume_decoder']
    """
    if is_pipeline(obj):
        return {**stages(obj.vae), "ss_sampler": HunyuanDiTStage(obj)}
    if is_shape_vae(obj):
        return {"volume_decoder": HunyuanVolumeDecoder(obj), "geo_decoder": HunyuanGeoDecoder(obj.geo_decoder)}
    return None


def _cube_bound(bounds: Any) -> float:
    """hy3dgen's ``bounds`` (a half-side, or ``[xmin, ymin, zmin, xmax, ymax, zmax]``) as one half-side."""
    if isinstance(bounds, (int, float)) and not isinstance(bounds, bool):
        return float(bounds)
    values = [float(b) for b in bounds] if isinstance(bounds, (list, tuple)) else []
    if len(values) == 6 and values[3] > 0 and all(v == -values[3] for v in values[:3]) and all(v == values[3] for v in values[3:]):
        return values[3]
    raise ArgumentError(f"bounds: accel3d decodes a cube centred at 0, given as a half-side or [-b, -b, -b, b, b, b]; got {bounds!r}")


class HunyuanVolumeDecoder(InstalledStage):
    """The ``volume_decoder`` stage of a hy3dgen ``ShapeVAE``: hy3dgen's volume-decoder call around accel3d's
    ``decode(fn, resolution, bound)`` (what ``hierarchical`` replaces).

    ``level`` (the call's ``mc_level``), ``chunk_size`` (``num_chunks``) and ``progress`` (``enable_pbar``) are
    those of the call in progress, so a hierarchical decoder refines around the level the mesh is cut at.

    Example::

        stage = HunyuanVolumeDecoder(vae).attach()     # vae.volume_decoder is now this stage
        mesh = vae.latents2mesh(latents, octree_resolution=256, mc_level=0.0)[0]
        stage.detach()                                 # vae.volume_decoder is hy3dgen's again
    """

    name = "hunyuan3d_volume_decoder"
    inside = "positive"  # hy3dgen's occupancy logits are positive inside

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae
        self.level, self.chunk_size, self.progress = 0.0, 10000, False
        self.last_grids: list[VolumeGrid] = []
        self.last_seconds = 0.0  # the wall time of the last call

    def _install(self, patches: PatchSet) -> None:
        if not callable(getattr(self.vae, "volume_decoder", None)):
            raise TypeError(f"vae: {type(self.vae).__name__} has no volume_decoder to stand in for")
        patches.set(self.vae, "volume_decoder", self)

    def decode(self, fn: Callable[[Tensor], Tensor], resolution: int, bound: float = DEFAULT_BOUND) -> VolumeGrid:
        """Every grid point, in hy3dgen's order and chunks (what ``hierarchical`` replaces)."""
        dense = DenseVolumeDecoder(self.chunk_size, self.progress, level=self.level, inside=self.inside)
        return dense.decode(fn, resolution, bound)

    @torch.no_grad()
    def __call__(
        self,
        latents: Tensor,
        geo_decoder: Callable[..., Tensor],
        bounds: Any = 1.01,
        num_chunks: int = 10000,
        octree_resolution: int | None = None,
        enable_pbar: bool = True,
        mc_level: float = 0.0,
        **kwargs: Any,
    ) -> Tensor:
        """hy3dgen's volume-decoder call: the logits ``[B, R+1, R+1, R+1]`` (float32) of each latent set."""
        if not isinstance(octree_resolution, int) or isinstance(octree_resolution, bool) or octree_resolution < 1:
            raise ArgumentError(f"octree_resolution: expected a positive int (cells per side), got {octree_resolution!r}")
        bound = _cube_bound(bounds)
        self.level, self.chunk_size, self.progress = float(mc_level), int(num_chunks), bool(enable_pbar)
        start = time.perf_counter()

        grids = []
        for b in range(latents.shape[0]):
            one = latents[b : b + 1]

            def field(points: Tensor, one: Tensor = one) -> Tensor:
                return geo_decoder(queries=points.to(one.device, one.dtype)[None], latents=one)[0, :, 0]

            grids.append(self.decode(field, octree_resolution, bound))
        self.last_grids = grids
        values = torch.stack([g.values for g in grids]).to(latents.device)
        self.last_seconds = time.perf_counter() - start
        return values


class _Attention:
    """Stands at ``cross_attn_decoder.attn`` of a :class:`HunyuanGeoDecoder`: ``attend(q, k, v)`` runs hy3dgen's own
    attention processor (what ``adaptive_kv`` wraps)."""

    def __init__(self, module: Any) -> None:
        self.module = module  # hy3dgen's QKVMultiheadCrossAttention
        self.processor = module.attn_processor

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.processor(self.module, q, k, v)


class _Route:
    """Installed as hy3dgen's ``attn_processor``: sends the attention through the stage's ``attend``."""

    def __init__(self, attention: _Attention) -> None:
        self.attention = attention

    def __call__(self, attn: Any, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.attention.attend(q, k, v)


class _Block:
    def __init__(self, attention: _Attention) -> None:
        self.attn = attention


class HunyuanGeoDecoder(InstalledStage):
    """The ``geo_decoder`` stage of a hy3dgen ``ShapeVAE``: its forward goes through ``query(points, kv)`` (``kv`` is
    ``(latents,)``) and its cross-attention through ``cross_attn_decoder.attn.attend(q, k, v)``, the layout
    :class:`~accel3d.decoding.AdaptiveKVSelection` expects (its default ``attention`` path).

    Example::

        stage = HunyuanGeoDecoder(vae.geo_decoder).attach()
        logits = vae.geo_decoder(queries=points, latents=latents)   # through stage.query
        stage.detach()
    """

    name = "hunyuan3d_geo_decoder"

    def __init__(self, geo_decoder: Any) -> None:
        super().__init__()
        self.geo_decoder = geo_decoder
        self._forward: Callable[..., Tensor] | None = None
        self.cross_attn_decoder: _Block | None = None

    def _install(self, patches: PatchSet) -> None:
        try:
            module = self.geo_decoder.cross_attn_decoder.attn.attention
        except AttributeError:
            raise TypeError(f"geo_decoder: {type(self.geo_decoder).__name__} has no cross_attn_decoder.attn.attention") from None
        if not callable(getattr(module, "attn_processor", None)):
            raise TypeError(f"geo_decoder: {type(module).__name__} has no attn_processor to route")
        attention = _Attention(module)
        self.cross_attn_decoder, self._forward = _Block(attention), self.geo_decoder.forward
        patches.set(module, "attn_processor", _Route(attention))
        patches.set(self.geo_decoder, "forward", self._routed_forward)

    def _routed_forward(
        self, queries: Tensor | None = None, query_embeddings: Tensor | None = None, latents: Tensor | None = None
    ) -> Tensor:
        if queries is None or query_embeddings is not None:
            return self._original(queries=queries, query_embeddings=query_embeddings, latents=latents)
        return self.query(queries, (latents,))

    def _original(self, **kwargs: Any) -> Tensor:
        if self._forward is None:
            raise RuntimeError("HunyuanGeoDecoder: never attached; call attach() first")
        return self._forward(**kwargs)

    def query(self, points: Tensor, kv: tuple[Tensor, ...]) -> Tensor:
        """The geo decoder's logits ``[B, N, 1]`` at ``points`` ``[B, N, 3]`` for latents ``kv[0]`` (what ``adaptive_kv`` wraps)."""
        return self._original(queries=points, latents=kv[0])


class HunyuanDiTStage(FlowStageAdapter):
    """The ``ss_sampler`` stage of a hy3dgen pipeline: its flow DiT (``pipeline.model``), called once per step.

    hy3dgen's loop calls ``pipeline.model(latents, t, cond, guidance=...)`` once per step, the CFG halves in one
    batch; attached, the model's ``forward`` goes through :meth:`velocity` with the step index, which restarts at
    ``prepare_latents`` (called once per generation, after the scheduler's timesteps are set). Time: hy3dgen's
    (``t / 1000`` as the model gets it) runs from 0 (noise) to 1 (data), as accel3d's does.

    Example::

        cache = ModalityStepCache(stride=3)
        with HunyuanDiTStage(pipe) as stage, cache.applied(stage):
            pipe(image=image)
    """

    name = "hunyuan3d_dit_stage"
    step_attribute = "forward"
    entry_attribute = "prepare_latents"

    def __init__(self, pipeline: Any) -> None:
        super().__init__(pipeline, pipeline.model, {"shape": ()})

    def _step_owner(self) -> Any:
        return self.target.model

    def _step_function(self) -> Callable[..., Any]:
        def forward(x: Tensor, t: Tensor, contexts: Any, **kwargs: Any) -> Tensor:
            return self.velocity(x, t, contexts, self._next_step(), **kwargs)

        return forward

    def _entry_function(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def prepare_latents(*args: Any, **kwargs: Any) -> Any:
            timesteps = getattr(getattr(self.target, "scheduler", None), "timesteps", None)
            self._begin(len(timesteps) if timesteps is not None else None)
            return original(*args, **kwargs)

        return prepare_latents

    def velocity(self, x: Tensor, t: Tensor, cond: Any, step: int, **kwargs: Any) -> Tensor:
        """The DiT's output at ``(x, t)`` for contexts ``cond`` (both CFG halves, as hy3dgen batches them)."""
        return self._call_original(x, t, cond, **kwargs)

    def progress(self, t: Any) -> float:
        return float(t.flatten()[0]) if isinstance(t, Tensor) else float(t)
