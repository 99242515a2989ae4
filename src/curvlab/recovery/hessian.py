"""Local geometry of the empirical cross entropy (Theorem 1): extreme eigenvalues of the exact
(d K x d K, or m x m for CNN) Hessian of f_n at W*, at GD's output W_hat, and the minimum over points
sampled in the ball B(W*, r). Pure functions; no Lightning.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curvlab.recovery import losses
from curvlab.recovery.init import local_init
from curvlab.recovery.teacher import TeacherData


def hessian_extremes(data: TeacherData, W: Tensor, eps: float = losses.DEFAULT_EPS) -> tuple[Tensor, Tensor]:
    """(lambda_min, lambda_max) of hess f_n at the points W ((S, P, d, K) / (S, P, m)): each (S, P)."""
    H = losses.hessian(data.kind, data.X, data.y, W, data.K, eps)
    ev = torch.linalg.eigvalsh(H)
    return ev[..., 0], ev[..., -1]


def at_truth(data: TeacherData, eps: float = losses.DEFAULT_EPS) -> tuple[Tensor, Tensor]:
    """(lambda_min, lambda_max) at W*, per set: each (S,)."""
    lo, hi = hessian_extremes(data, data.W_star.unsqueeze(1), eps)
    return lo[:, 0], hi[:, 0]


def min_eigenvalue_in_ball(data: TeacherData, radius: float, points: int, generator: torch.Generator,
             eps: float = losses.DEFAULT_EPS, relative: bool = True) -> Tensor:
    """min over ``points`` points drawn uniformly in B(W*, r) of lambda_min(hess f_n), per set (S,).

    r = radius ||W*||_F when ``relative`` (the scale of the paper's local inits), else r = radius.
    A sampled minimum upper-bounds the true minimum over the ball."""
    W_star = data.W_star
    if relative:
        pts = local_init(W_star, points, radius, generator, mode="ball")
    else:
        scale = W_star.reshape(W_star.shape[0], -1).norm(dim=-1)
        pts = local_init(W_star, points, 1.0, generator, mode="ball")
        shape = (-1,) + (1,) * (pts.dim() - 1)
        pts = W_star.unsqueeze(1) + (pts - W_star.unsqueeze(1)) * (radius / scale).view(shape)
    lo, _ = hessian_extremes(data, pts, eps)
    return lo.amin(1)
