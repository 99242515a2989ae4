"""Initializations of the deep MLP (RSC paper, Assumption 2 / Assumption 5)."""

from __future__ import annotations

import math

import torch

from curvlab.rsc.model import DeepMLP


def sigma0(sigma1: float, width: int) -> float:
    """sigma_0 = sigma_1 / (2 (1 + sqrt(log m) / sqrt(2 m))) (Assumption 2)."""
    return sigma1 / (2.0 * (1.0 + math.sqrt(math.log(width)) / math.sqrt(2.0 * width)))


@torch.no_grad()
def rsc_init(model: DeepMLP, sigma1: float, generator: torch.Generator) -> None:
    """W^(l) entries N(0, sigma_0^2) with sigma_0 from :func:`sigma0`; each v_h a random unit vector."""
    if sigma1 <= 0:
        raise ValueError(f"init.sigma1 must be > 0, got {sigma1}")
    for w in model.weights:
        # sigma_0 depends on the layer's width m = m_l (the paper takes all widths equal)
        w.normal_(0.0, sigma0(sigma1, w.shape[0]), generator=generator)
    model.head.normal_(0.0, 1.0, generator=generator)
    model.head.div_(model.head.norm(dim=1, keepdim=True))


@torch.no_grad()
def normal_init(model: DeepMLP, std: float, generator: torch.Generator) -> None:
    """Every parameter entry N(0, std^2)."""
    if std <= 0:
        raise ValueError(f"init.std must be > 0, got {std}")
    for p in model.parameters():
        p.normal_(0.0, std, generator=generator)
