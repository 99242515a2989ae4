"""Statistics of an empirical NTK Gram matrix, whatever model produced it.

RSC paper, Section 3: K_ntk(x_i, x_j; theta) = <grad_theta f(theta; x_i), grad_theta f(theta; x_j)>;
Remark 5.5: the NTK condition is lambda_min(K) >= c_0 > 0 (eq. 15, inf over unit v of
||sum_i v_i grad f_i||^2), while the RSC condition (eq. 16) is the same quadratic form at the one
vector v = 1/sqrt(n): ||g_bar||^2 = 1^T K 1 / n^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class NTKStats:
    lambda_min: float
    lambda_max: float
    trace_mean: float  # tr(K) / N: mean ||grad f_i||^2
    quad_rsc: float  # v^T K v at v = 1/sqrt(N): the RSC quadratic form of Remark 5.5
    gbar_sq: float  # ||g_bar||^2 from the kernel, 1^T K 1 / N^2 (N = n, or n k for "full")
    n_small: int  # eigenvalues below 1e-6 lambda_max: numerical nullity of K

    def as_dict(self) -> dict[str, float]:
        d = dict(self.__dict__)
        d["lambda_min_rel"] = self.lambda_min / self.lambda_max if self.lambda_max > 0 else math.nan
        return d


def ntk_stats(K: Tensor) -> NTKStats:
    """Spectrum extremes by float64 ``eigvalsh`` and the RSC quantity 1^T K 1 / N^2 of an NTK."""
    K64 = K.to(torch.float64)
    N = K64.shape[0]
    ev = torch.linalg.eigvalsh(0.5 * (K64 + K64.T))
    total = K64.sum()
    lmax = float(ev[-1])
    return NTKStats(
        lambda_min=float(ev[0]),
        lambda_max=lmax,
        trace_mean=float(torch.diagonal(K64).mean()),
        quad_rsc=float(total / N),
        gbar_sq=float(total / N**2),
        n_small=int((ev < 1e-6 * lmax).sum()),
    )
