"""Initial points of the recovery GD: local (near W*) and Gaussian. The tensor method is in
:mod:`curvlab.recovery.tensor_init`.

The paper's Figs. 3-4 start GD near the ground truth: ||W0 - W*||_F = 0.1 ||W*||_F (FCN) and
||w0 - w*|| = 0.9 ||w*|| (CNN); ``mode="sphere"`` puts every init exactly at that distance (uniform
direction), ``mode="ball"`` uniformly inside the ball of that radius.

Random draws happen on the generator's device (the CPU generator of a run: the same numbers on every
device) and are then moved to the device of W*.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

MODES = ("sphere", "ball")


def draw(sampler: Callable[..., Tensor], shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """``sampler`` (torch.randn, torch.rand) of ``shape`` drawn on the generator's device, returned
    with the dtype and on the device of ``like``."""
    return sampler(*shape, generator=generator, dtype=like.dtype, device=generator.device).to(like.device)


def local_init(W_star: Tensor, L: int, radius: float, generator: torch.Generator, mode: str = "sphere") -> Tensor:
    """L points per set around W* ((S, d, K) or (S, m)) at relative distance ``radius``: (S, L, ...)."""
    if mode not in MODES:
        raise ValueError(f"unknown local-init mode {mode!r}; choose one of {MODES}")
    if radius < 0:
        raise ValueError(f"local-init radius must be >= 0, got {radius}")
    S = W_star.shape[0]
    shape = W_star.shape[1:]
    p = W_star[0].numel()
    U = draw(torch.randn, (S, L, p), generator, W_star)
    U = U / U.norm(dim=-1, keepdim=True)
    r = radius * W_star.reshape(S, 1, p).norm(dim=-1, keepdim=True)  # (S, 1, 1)
    if mode == "ball":
        r = r * draw(torch.rand, (S, L, 1), generator, W_star).pow(1.0 / p)
    return W_star.unsqueeze(1) + (r * U).reshape(S, L, *shape)


def gaussian_init(W_star: Tensor, L: int, std: float, generator: torch.Generator) -> Tensor:
    """L points per set with i.i.d. N(0, std^2) entries (shape of W*), independent of W*."""
    if std <= 0:
        raise ValueError(f"init std must be > 0, got {std}")
    S = W_star.shape[0]
    return std * draw(torch.randn, (S, L, *W_star.shape[1:]), generator, W_star)
