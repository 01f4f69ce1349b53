"""Cut a diffusers ``UNet2DConditionModel`` at an up-path layer: capture the feature
there during a full forward, and run only the shallow path around a cached one.

Up-path layers are numbered in forward order, ``up_blocks.{b}.{l}`` (layer ``l`` =
resnet ``l`` and, in cross-attention blocks, attention ``l``). Cutting at a layer
caches its output. A later call then runs only what that output cannot replace:
the time embedding, ``conv_in`` and the first down layers whose skip connections
the remaining up layers consume, those up layers, and the output head. The default
cut is the first layer of the last up block, DeepCache's and Hash3D's choice (the
paper's "input of the last up-sampling layer"); it keeps ``conv_in`` and the first
layer of ``down_blocks[0]``.

Nothing in diffusers is edited: the feature is captured by a forward hook, and the
shallow path calls the U-Net's own submodules in the order its ``forward`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

DOWN_BLOCKS = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D")
# Forward arguments the shallow path cannot honour; a call with any of them runs in full.
UNSUPPORTED_ARGUMENTS = ("down_block_additional_residuals", "mid_block_additional_residual", "down_intrablock_additional_residuals")


@dataclass(frozen=True)
class CutPoint:
    """Where the U-Net is cut: the output of layer ``layer`` of ``up_blocks[block]``.

    ``index`` counts up-path layers in forward order (0 = the first layer of
    ``up_blocks[0]``); ``skips`` is how many skip connections the layers after the
    cut consume, i.e. how many down-path outputs a partial forward must compute.

    Example::

        CutPoint(block=3, layer=0, index=9, skips=2).name   # 'up_blocks.3.0'
    """

    block: int
    layer: int
    index: int
    skips: int

    @property
    def name(self) -> str:
        return f"up_blocks.{self.block}.{self.layer}"


def _check_architecture(unet: Any) -> None:
    for attr in ("conv_in", "down_blocks", "up_blocks", "conv_out", "time_embedding", "get_time_embed"):
        if not hasattr(unet, attr):
            raise TypeError(
                f"unet: expected a diffusers UNet2DConditionModel (with {attr}), got {type(unet).__name__}; "
                "Hash3D cuts that class (Stable Diffusion 1.x/2.x, Zero123-style U-Nets)"
            )
    for kind, blocks, supported in (("down", unet.down_blocks, DOWN_BLOCKS), ("up", unet.up_blocks, UP_BLOCKS)):
        for i, block in enumerate(blocks):
            if type(block).__name__ not in supported:
                raise TypeError(
                    f"unet: {kind}_blocks.{i} is a {type(block).__name__}; the partial forward supports {kind} blocks "
                    f"{', '.join(supported)} (the Stable Diffusion 1.x/2.x and Zero123 layouts)"
                )


def cut_points(unet: Any) -> list[CutPoint]:
    """Every place this U-Net can be cut, in forward order."""
    _check_architecture(unet)
    layers = [(b, layer) for b, block in enumerate(unet.up_blocks) for layer in range(len(block.resnets))]
    return [CutPoint(b, layer, i, len(layers) - 1 - i) for i, (b, layer) in enumerate(layers)]


def resolve_cut_point(unet: Any, cut: str | int | None = None) -> CutPoint:
    """A cut point by name (``'up_blocks.3.0'``), by up-path index (negative counts from
    the end), or ``None`` for the default (first layer of the last up block)."""
    points = cut_points(unet)
    if cut is None:
        last = len(unet.up_blocks) - 1
        return next(p for p in points if p.block == last and p.layer == 0)
    if isinstance(cut, int) and not isinstance(cut, bool):
        if -len(points) <= cut < len(points):
            return points[cut]
    else:
        for p in points:
            if p.name == str(cut):
                return p
    names = ", ".join(p.name for p in points)
    raise ValueError(f"cut: {cut!r} is not a cut point of this U-Net; valid points are {names} (or their indices 0..{len(points) - 1})")


def _attention(block: Any, layer: int) -> Any:
    attentions = getattr(block, "attentions", None)
    return attentions[layer] if attentions is not None else None


class UNetCut:
    """Full forward with feature capture, and the partial forward that reuses it.

    Example::

        cut = UNetCut(unet)                        # default cut point
        with cut.capture() as captured:
            eps = unet(x, t, encoder_hidden_states=text).sample
        eps_again = cut.partial(captured["feature"], x, t, text)   # equal to eps
    """

    def __init__(self, unet: Any, cut: str | int | None = None) -> None:
        self.unet = unet
        self.point = resolve_cut_point(unet, cut)
        block = unet.up_blocks[self.point.block]
        self._layer_module = _attention(block, self.point.layer) or block.resnets[self.point.layer]

    @contextlib.contextmanager
    def capture(self) -> Iterator[dict[str, torch.Tensor]]:
        """Within the block, every forward stores the cut feature in the yielded dict."""
        store: dict[str, torch.Tensor] = {}

        def hook(module: Any, args: Any, output: Any) -> None:
            store["feature"] = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)

        handle = self._layer_module.register_forward_hook(hook)
        try:
            yield store
        finally:
            handle.remove()

    @staticmethod
    def unsupported(arguments: dict[str, Any]) -> str | None:
        """Why a call with these forward arguments must run in full (None if it need not)."""
        for name in UNSUPPORTED_ARGUMENTS:
            if arguments.get(name) is not None:
                return f"{name} (ControlNet / T2I-Adapter residuals)"
        kwargs = arguments.get("cross_attention_kwargs") or {}
        if kwargs.get("gligen") is not None:
            return "cross_attention_kwargs['gligen']"
        return None

    def check_unet(self) -> str | None:
        """Why this U-Net's current configuration cannot run a partial forward (None if it can)."""
        config = self.unet.config
        if getattr(config, "addition_embed_type", None) == "image_hint":
            return "addition_embed_type 'image_hint'"
        for block in self.unet.up_blocks:
            if all(getattr(block, name, None) for name in ("s1", "s2", "b1", "b2")):
                return "FreeU is enabled"
        return None

    @torch.no_grad()
    def partial(
        self,
        feature: torch.Tensor,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **_: Any,
    ) -> torch.Tensor:
        """The U-Net output with ``feature`` standing in for everything deeper than the cut.

        Mirrors ``UNet2DConditionModel.forward`` (diffusers 0.30 - 0.42) step for step,
        so that fed the feature of a full forward on the same inputs it returns that
        forward's output.
        """
        with self._lora_scale(cross_attention_kwargs) as cross_attention_kwargs:
            unet = self.unet
            forward_upsample_size = any(s % 2**unet.num_upsamplers != 0 for s in sample.shape[-2:])
            if attention_mask is not None:
                attention_mask = ((1 - attention_mask.to(sample.dtype)) * -10000.0).unsqueeze(1)
            if encoder_attention_mask is not None:
                encoder_attention_mask = ((1 - encoder_attention_mask.to(sample.dtype)) * -10000.0).unsqueeze(1)
            if unet.config.center_input_sample:
                sample = 2 * sample - 1.0

            emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), timestep_cond)
            class_emb = unet.get_class_embed(sample=sample, class_labels=class_labels)
            if class_emb is not None:
                emb = torch.cat([emb, class_emb], dim=-1) if unet.config.class_embeddings_concat else emb + class_emb
            aug_emb = unet.get_aug_embed(emb=emb, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)
            emb = emb + aug_emb if aug_emb is not None else emb
            if unet.time_embed_act is not None:
                emb = unet.time_embed_act(emb)
            encoder_hidden_states = unet.process_encoder_hidden_states(
                encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
            )
            attend = {
                "encoder_hidden_states": encoder_hidden_states,
                "cross_attention_kwargs": cross_attention_kwargs,
                "attention_mask": attention_mask,
                "encoder_attention_mask": encoder_attention_mask,
                "return_dict": False,
            }

            skips = self._shallow_down_path(sample, emb, attend)
            hidden = feature
            for b in range(self.point.block, len(unet.up_blocks)):
                block = unet.up_blocks[b]
                first = self.point.layer + 1 if b == self.point.block else 0
                for layer in range(first, len(block.resnets)):
                    hidden = block.resnets[layer](torch.cat([hidden, skips.pop()], dim=1), emb)
                    attention = _attention(block, layer)
                    if attention is not None:
                        hidden = attention(hidden, **attend)[0]
                if block.upsamplers is not None:
                    is_final = b == len(unet.up_blocks) - 1
                    size = skips[-1].shape[2:] if forward_upsample_size and not is_final and skips else None
                    for upsampler in block.upsamplers:
                        hidden = upsampler(hidden, size)
            if unet.conv_norm_out:
                hidden = unet.conv_act(unet.conv_norm_out(hidden))
            return unet.conv_out(hidden)

    @contextlib.contextmanager
    def _lora_scale(self, cross_attention_kwargs: dict[str, Any] | None) -> Iterator[dict[str, Any] | None]:
        """Pop ``scale`` and scale the LoRA layers around the block, as diffusers' ``@apply_lora_scale``
        does around the full forward."""
        from diffusers.utils import USE_PEFT_BACKEND, scale_lora_layers, unscale_lora_layers

        scale = 1.0
        if cross_attention_kwargs is not None:
            cross_attention_kwargs = dict(cross_attention_kwargs)
            scale = cross_attention_kwargs.pop("scale", 1.0)
        if USE_PEFT_BACKEND:
            scale_lora_layers(self.unet, scale)
        try:
            yield cross_attention_kwargs
        finally:
            if USE_PEFT_BACKEND:
                unscale_lora_layers(self.unet, scale)

    def _shallow_down_path(self, sample: torch.Tensor, emb: torch.Tensor, attend: dict[str, Any]) -> list[torch.Tensor]:
        """The first ``point.skips`` skip connections, computed as the down path does."""
        needed = self.point.skips
        if needed == 0:
            return []
        hidden = self.unet.conv_in(sample)
        skips = [hidden]
        for block in self.unet.down_blocks:
            for layer in range(len(block.resnets)):
                if len(skips) >= needed:
                    return skips
                hidden = block.resnets[layer](hidden, emb)
                attention = _attention(block, layer)
                if attention is not None:
                    hidden = attention(hidden, **attend)[0]
                skips.append(hidden)
            if block.downsamplers is not None and len(skips) < needed:
                for downsampler in block.downsamplers:
                    hidden = downsampler(hidden)
                skips.append(hidden)
        return skips
