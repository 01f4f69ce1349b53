"""The tensor inside a flow sampler's state, for whoever handles states of any model.

A state (or velocity) leaf is a ``torch.Tensor`` or a sparse tensor with ``.feats`` (TRELLIS /
SAM 3D Objects ``SparseTensor``). The adapters and the pruning accelerators both read and write
leaves through these two functions.

Example::

    feats = state_tensors(x)          # x itself, or x.feats
    v = with_tensor(x, feats * 0)     # the same structure (a sparse tensor keeps its coordinates)
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def state_tensors(x: Any) -> Tensor:
    """The tensor of one state: a ``torch.Tensor`` as it is, a sparse tensor (TRELLIS / SAM3D ``SparseTensor``) as its ``feats``."""
    if isinstance(x, Tensor):
        return x
    feats = getattr(x, "feats", None)
    if isinstance(feats, Tensor):
        return feats
    raise TypeError(f"expected a torch.Tensor or a sparse tensor with .feats, got {type(x).__name__}")


def with_tensor(template: Any, tensor: Tensor) -> Any:
    """``tensor`` in the place of ``template``'s values (a sparse tensor keeps its coordinates via ``replace``)."""
    if isinstance(template, Tensor):
        return tensor
    return template.replace(tensor)
