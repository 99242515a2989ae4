"""Statistics of an empirical NTK Gram matrix, whatever model produced it.

RSC paper, Section 3: K_ntk(x_i, x_j; theta) = <grad_theta f(theta; x_i), grad_theta f(theta; x_j)>;
Remark 5.5: the NTK condition is lambda_min(K) >= c_0 > 0 (eq. 15, inf over unit v of
||sum_i v_i grad f_i||^2), while the RSC condition (eq. 16) is the same quadratic form at the one
vector v = 1/sqrt(n): ||g_bar||^2 = 1^T K 1 / n^2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import jacrev, jvp, vjp, vmap

from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.spectral import extreme_eigenvalues


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


# -- the empirical NTK of any model ------------------------------------------------------------------
# K[(h, i), (h', j)] = <grad f_h(x_i), grad f_h'(x_j)> (row h n + i, ``kind="full"``), or the n x n
# kernel of the output-averaged predictor (1/k) sum_h f_h (``kind="mean"``, Definition C.1's g_bar:
# ||g_bar||^2 = 1^T K 1 / n^2). Built from per-sample Jacobian rows in chunks, or matrix-free.

NTK_KINDS = ("mean", "full")


def _rows(model: FunctionalModel, theta: Tensor, x: Tensor, kind: str) -> Tensor:
    """Jacobian rows of the inputs ``x``: (k, c, p) for ``full``, (1, c, p) for ``mean``."""

    def f(th: Tensor, xi: Tensor) -> Tensor:
        out = model(th, xi[None])[0]
        return out.mean() if kind == "mean" else out

    rows = vmap(jacrev(f), in_dims=(None, 0))(theta, x)  # (c, p) or (c, k, p)
    return rows[None] if kind == "mean" else rows.permute(1, 0, 2)


def _check_kind(kind: str) -> None:
    if kind not in NTK_KINDS:
        raise ValueError(f"unknown NTK kind {kind!r}; choose one of {NTK_KINDS}")


def ntk_gram(model: FunctionalModel, theta: Tensor, x: Tensor, kind: str = "mean", chunk: int | None = None,
             dtype: torch.dtype = torch.float64, max_elements: int = 2**25) -> Tensor:
    """K(theta) of shape (n, n) (``mean``) or (n k, n k) (``full``) from the Jacobian rows of ``chunk``
    inputs at a time: at most two chunks of rows (2 chunk k p numbers) are in memory. By default a
    chunk holds up to ``max_elements`` numbers: the whole Jacobian in one pass when it fits (the
    fastest), chunks of rows (each pair of chunks recomputed) when it does not. The Gram products are
    formed in ``dtype``."""
    _check_kind(kind)
    theta = theta.detach()
    n = x.shape[0]
    if chunk is None:
        rows_per_input = 1 if kind == "mean" else model(theta, x[:1]).shape[1]
        chunk = max(1, max_elements // (rows_per_input * theta.numel()))
    starts = list(range(0, n, chunk))
    K: Tensor | None = None
    for a in starts:
        Ja = _rows(model, theta, x[a:a + chunk], kind).to(dtype)
        if K is None:
            c = Ja.shape[0]
            K = torch.zeros(c, n, c, n, dtype=dtype, device=x.device)
        for b in starts:
            if b < a:
                continue
            Jb = Ja if b == a else _rows(model, theta, x[b:b + chunk], kind).to(dtype)
            block = torch.einsum("hip,gjp->higj", Ja, Jb)
            K[:, a:a + chunk, :, b:b + chunk] = block
            K[:, b:b + chunk, :, a:a + chunk] = block.permute(2, 3, 0, 1)
    c = K.shape[0]
    return K.reshape(c * n, c * n)


def ntk_matvec(model: FunctionalModel, theta: Tensor, x: Tensor, kind: str = "mean") -> Callable[[Tensor], Tensor]:
    """v -> K v matrix-free, as J (J^T v): one VJP and one JVP per product, O(p + n k) memory."""
    _check_kind(kind)
    theta = theta.detach()
    out, vjp_fn = vjp(lambda th: model(th, x), theta)
    n, k = out.shape

    def mv(v: Tensor) -> Tensor:
        cot = (v[:, None] / k).expand(n, k) if kind == "mean" else v.reshape(k, n).T
        (u,) = vjp_fn(cot.to(out.dtype))
        _, Ju = jvp(lambda th: model(th, x), (theta,), (u,))
        return Ju.mean(1) if kind == "mean" else Ju.T.reshape(-1)

    return mv


def ntk_stats_matrix_free(model: FunctionalModel, theta: Tensor, x: Tensor, kind: str = "mean",
                          **eig_options: Any) -> dict[str, float]:
    """lambda_max and lambda_min of the NTK by Lanczos on :func:`ntk_matvec`, and the RSC form
    1^T K 1 / N^2 (= ||g_bar||^2 for ``mean``) from one product: for n k too large to hold K."""
    mv = ntk_matvec(model, theta, x, kind)
    n = x.shape[0]
    N = n if kind == "mean" else n * model(theta, x[:1]).shape[1]
    ones = torch.ones(N, dtype=theta.dtype, device=theta.device)
    top, low = extreme_eigenvalues(mv, N, ones, **eig_options)
    quad = float(torch.dot(ones, mv(ones)))
    return {"lambda_max": top.value, "lambda_min": low.value if low else math.nan, "gbar_sq": quad / N**2,
            "quad_rsc": quad / N, "converged": float(top.converged and bool(low and low.converged)),
            "matvecs": float(top.matvecs + (low.matvecs if low else 0) + 1)}
