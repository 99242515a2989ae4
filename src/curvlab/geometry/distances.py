"""Distance of theta_t from theta_0 in the paper's balls.

* Layerwise spectral ball B^Spec_{rho, rho_1}(theta_0) (Definition 3.1, eq. 3; eq. 43 for k
  outputs): rho_t = max_l ||W_t^(l) - W_0^(l)||_2 and rho_1,t = max_h ||v_{t,h} - v_{0,h}||_2.
  Theorems 4.1 and 5.1 hold for any rho < sqrt(m) (Remark 4.1); Assumption (A4.2) asks that the
  iterates stay inside the ball, which Remark 5.4 says can be verified empirically — this does.
* The Euclidean ball B^Euc_rho(theta_0) (eq. 4) of Liu et al., ||theta_t - theta_0||_2, and the
  layerwise Frobenius norms, for comparison: the spectral ball is much larger.

:func:`ball_distances` reads the paper's layout (W^(1..L), then V); :func:`layer_distances` any
model's named weight tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.sparse.linalg import svds
from torch import Tensor


def spectral_norm(a: Tensor) -> float:
    """||A||_2 in float64: ARPACK ``svds`` (k = 1) for large matrices (one singular triple, accurate to
    machine precision, instead of a full SVD) and ``svdvals`` for small ones."""
    a = a.detach().to(torch.float64)
    if min(a.shape) < 16:
        return float(torch.linalg.svdvals(a)[0])
    if not bool(a.abs().max() > 0):
        return 0.0
    arr = a.cpu().numpy()
    v0 = np.random.default_rng(0).standard_normal(min(arr.shape))
    return float(svds(arr, k=1, return_singular_vectors=False, v0=v0)[0])


@torch.no_grad()
def ball_distances(params: list[Tensor], params0: list[Tensor]) -> dict[str, float]:
    """Spectral and Frobenius distances per layer (``spec_l1``.., ``frob_l1``..), ``head`` (max over
    outputs h of ||v_h - v_h0||), ``spec_max``, ``euclid`` and ``spec_over_sqrt_m`` = rho_t / sqrt(m)
    (the ratio Remark 4.1 wants below 1 - sigma_1 for gamma <= 1)."""
    *ws, head = params
    *ws0, head0 = params0
    out: dict[str, float] = {}
    total = 0.0
    spec = []
    for l, (w, w0) in enumerate(zip(ws, ws0), start=1):
        diff = (w - w0).to(torch.float64)
        s = spectral_norm(diff)
        f = float(torch.linalg.matrix_norm(diff, ord="fro"))
        out[f"spec_l{l}"], out[f"frob_l{l}"] = s, f
        spec.append(s)
        total += f * f
    dv = (head - head0).to(torch.float64)
    out["head"] = float(dv.norm(dim=1).max())
    total += float(dv.pow(2).sum())
    out["spec_max"] = max(spec)
    out["euclid"] = math.sqrt(total)
    out["spec_over_sqrt_m"] = max(spec) / math.sqrt(head.shape[1])
    return out


@torch.no_grad()
def layer_distances(names: Sequence[str], params: Sequence[Tensor], params0: Sequence[Tensor]) -> dict[str, float]:
    """Distances to theta_0 of any model: for each weight tensor (2 or more dimensions; a conv kernel
    as the (out, in kh kw) matrix it multiplies with) its spectral distance ``spec/<name>``, their
    maximum ``spec_max``, and ``euclid`` = ||theta_t - theta_0||_2 over all parameters."""
    out: dict[str, float] = {}
    total = 0.0
    for name, p, p0 in zip(names, params, params0):
        diff = (p - p0).to(torch.float64)
        total += float(diff.pow(2).sum())
        if diff.dim() >= 2:
            out[f"spec/{name}"] = spectral_norm(diff.reshape(diff.shape[0], -1))
    specs = [v for k, v in out.items() if k.startswith("spec/")]
    out["spec_max"] = max(specs) if specs else math.nan
    out["euclid"] = math.sqrt(total)
    return out
