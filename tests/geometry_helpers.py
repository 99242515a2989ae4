"""Tiny float64 models and data shared by the geometry tests."""

from __future__ import annotations

import math

import torch

from curvlab.rsc.init import rsc_init
from curvlab.rsc.model import DeepMLP


def tiny(d: int = 5, m: int = 6, depth: int = 2, k: int = 1, n: int = 7, seed: int = 0, act: str = "tanh",
         sigma1: float = 1.0):
    """A float64 DeepMLP and data with ||x_i|| = sqrt(d) (Assumption 2) and random targets."""
    gen = torch.Generator().manual_seed(seed)
    model = DeepMLP(d, m, depth, k, act).to(torch.float64)
    rsc_init(model, sigma1, gen)
    with torch.no_grad():  # move off the init so no Hessian block is trivially zero
        for p in model.params():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x = x * (math.sqrt(d) / x.norm(dim=1, keepdim=True))
    y = torch.randn(n, k, generator=gen, dtype=torch.float64)
    return model, x, y
