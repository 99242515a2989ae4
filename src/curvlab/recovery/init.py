"""Initial points of the recovery GD: local (near W*) and Gaussian. The tensor method is in
:mod:`curvlab.recovery.tensor_init`.

The paper's Figs. 3-4 start GD near the ground truth: ||W0 - W*||_F = 0.1 ||W*||_F (FCN) and
||w0 - w*|| = 0.9 ||w*|| (CNN); ``mode="sphere"`` puts every init exactly at that distance (uniform
direction), ``mode="ball"`` uniformly inside the ball of that radius.
"""

from __future__ import annotations

import torch
from torch import Tensor

MODES = ("sphere", "ball")


def local_init(W_star: Tensor, L: int, radius: float, generator: torch.Generator, mode: str = "sphere") -> Tensor:
    """L points per set around W* ((S, d, K) or (S, m)) at relative distance ``radius``: (S, L, ...)."""
    if mode not in MODES:
        raise ValueError(f"unknown local-init mode {mode!r}; choose one of {MODES}")
    if radius < 0:
        raise ValueError(f"local-init radius must be >= 0, got {radius}")
    S = W_star.shape[0]
    shape = W_star.shape[1:]
    p = W_star[0].numel()
    U = torch.randn(S, L, p, generator=generator, dtype=W_star.dtype)
    U = U / U.norm(dim=-1, keepdim=True)
    r = radius * W_star.reshape(S, 1, p).norm(dim=-1, keepdim=True)  # (S, 1, 1)
    if mode == "ball":
        r = r * torch.rand(S, L, 1, generator=generator, dtype=W_star.dtype).pow(1.0 / p)
    return W_star.unsqueeze(1) + (r * U).reshape(S, L, *shape)


def gaussian_init(W_star: Tensor, L: int, std: float, generator: torch.Generator) -> Tensor:
    """L points per set with i.i.d. N(0, std^2) entries (shape of W*), independent of W*."""
    if std <= 0:
        raise ValueError(f"init std must be > 0, got {std}")
    S = W_star.shape[0]
    return std * torch.randn(S, L, *W_star.shape[1:], generator=generator, dtype=W_star.dtype)
