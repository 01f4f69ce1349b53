"""Analytic fields shared by the decoding, geometry and pipeline tests (import as ``tests.fields``)."""

from __future__ import annotations

import torch

from accel3d.geometry import shapes

TAU = 0.03  # truncation used for analytic fields, as in the shipped model


def truncated(sdf):
    return lambda p: (sdf(p) / TAU).clamp(-1.0, 1.0)


def offset_thin_plate():
    """A 0.01-thick plate centred between the z-samples of a 64^3 grid over [-1.01, 1.01]."""
    plate = shapes.box((0.7, 0.7, 0.005))
    return lambda p: plate(p - torch.tensor([0.0, 0.0, 0.015]))
