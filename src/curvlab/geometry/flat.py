"""Flat views of a model's parameters: theta in R^p as one vector (RSC eq. 2 / eq. 42)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def flatten(tensors: Iterable[Tensor]) -> Tensor:
    """Concatenate per-parameter tensors (parameters, gradients, g_bar) into one detached vector,
    each in row-major order."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])
