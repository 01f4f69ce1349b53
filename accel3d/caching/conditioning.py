"""Conditioning fingerprints for Hash3D: which entries a U-Net call may reuse.

Entries are reused only under the conditioning they were stored with (text embeddings, class labels,
added conditions, masks), so a new or view-dependent prompt never reuses another prompt's features.
Each element's conditioning is reduced to a fingerprint, two fixed random projections of each tensor's
rows; equal fingerprints share a tag, the fingerprint's index among those seen so far.
"""

from __future__ import annotations

import torch


def conditioning_fingerprints(arguments: dict, rows: torch.Tensor, projections: dict[tuple[int, str], torch.Tensor]) -> torch.Tensor:
    """(elements, F) float64 fingerprints of each element's conditioning in the forward ``arguments``;
    ``rows`` are the elements' batch rows, ``projections`` caches the projections per (width, device)."""
    batch = arguments["sample"].shape[0]
    element_rows = rows if rows.ndim == 2 else rows[:, None]
    parts = [arguments.get(name) for name in ("encoder_hidden_states", "class_labels", "timestep_cond", "attention_mask")]
    parts += [arguments.get("encoder_attention_mask")]
    parts += [v for _, v in sorted((arguments.get("added_cond_kwargs") or {}).items())]
    columns = []
    for tensor in (p.detach() for p in parts if isinstance(p, torch.Tensor)):  # a few tensors, not elements
        per_row = tensor.ndim > 0 and tensor.shape[0] == batch
        flat = tensor.reshape(batch if per_row else 1, -1).double()
        key = (flat.shape[1], str(flat.device))
        if key not in projections:
            gen = torch.Generator().manual_seed(flat.shape[1])
            projections[key] = torch.randn(flat.shape[1], 2, generator=gen, dtype=torch.float64).to(flat.device)
        fingerprint = (flat[:, :, None] * projections[key][None]).sum(1).cpu()  # (rows, 2)
        columns.append(fingerprint[element_rows].flatten(1) if per_row else fingerprint.expand(len(element_rows), -1))
    return torch.cat(columns, 1) if columns else torch.zeros(len(element_rows), 0, dtype=torch.float64)


def tag_fingerprints(prints: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tags (elements,) int64 of ``prints``: the index of the equal row in ``known`` (K, F); fingerprints not
    known yet are numbered from K on. Returns the tags and ``known`` with the new fingerprints appended."""
    same = (prints[:, None, :] == known[None]).all(-1)  # (elements, known); NaN never matches
    tags = torch.full((len(prints),), -1, dtype=torch.int64)
    if len(known):
        tags = torch.where(same.any(1), same.int().argmax(1), tags)
    if (tags < 0).any():
        new, index = torch.unique(prints[tags < 0], dim=0, return_inverse=True)
        tags[tags < 0] = len(known) + index
        known = torch.cat([known, new])
    return tags, known
