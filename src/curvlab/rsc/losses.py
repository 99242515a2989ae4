"""The losses of the RSC setting, L(theta) = (1/n) sum_i l(y_i, f(theta; x_i)), each with l' and l''
in closed form (RSC paper, Assumption 3: a <= l'' <= b; Appendix B, Theorems B.1 and B.2), listed in
:data:`LOSSES` (the ``loss`` config group):

* ``square``         l = ||y - z||^2,           l' = 2 (z - y),        l'' = 2 I (a = b = 2)
* ``cross_entropy``  one-hot y in R^k,          l = logsumexp(z) - <y, z>,
                     l' = softmax(z) - y,       l'' = diag(p) - p p^T with p = softmax(z)
* ``logistic``       y in {0, 1}, k = 1,        l = softplus(z) - y z,
                     l' = sigmoid(z) - y,       l'' = sigmoid(z) (1 - sigmoid(z))

Neither cross-entropy nor the logistic loss meets Assumption 3 (i) uniformly: l'' -> 0 as the fit
gets confident, and for cross-entropy l'' is singular along z + c 1 (a shift of every logit), which
is the output direction of g_bar itself (Definition C.1); ``curvature_range`` reports a_t and b_t
as measured, so a run shows how far the assumption holds along training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

PerSample = Callable[[Tensor, Tensor], Tensor]  # (outputs z (n, k), targets y) -> (n, ...) per sample


@dataclass(frozen=True)
class Loss:
    """A per-sample loss l(y, z) with its first and second derivatives in z, and the data targets it
    takes (``data.target``)."""

    name: str
    targets: tuple[str, ...]
    value: PerSample  # (n,) l(y_i, z_i)
    d1: PerSample  # (n, k) l'_i
    d2: PerSample  # (n, k, k) l''_i

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        """L = (1/n) sum_i l(y_i, f(theta; x_i))."""
        return self.value(out, y).mean()

    def grad_out(self, out: Tensor, y: Tensor) -> Tensor:
        """dL/df = l'_i / n, the output cotangent of the loss gradient."""
        return self.d1(out, y) / out.shape[0]

    def lambda_t(self, out: Tensor, y: Tensor) -> Tensor:
        """lambda_t = (1/n) sum_i ||l'_i||^2 (Theorems B.1 and B.2; 4 L for the square loss)."""
        return self.d1(out, y).pow(2).sum(1).mean()

    def curvature_range(self, out: Tensor, y: Tensor) -> tuple[float, float]:
        """(a_t, b_t): the smallest and largest eigenvalue of l''_i over the n samples at f(theta_t; x_i),
        Assumption 3's a and b where the iterate is."""
        ev = torch.linalg.eigvalsh(self.d2(out, y).to(torch.float64))
        return float(ev.min()), float(ev.max())


def _square_d2(out: Tensor, y: Tensor) -> Tensor:
    n, k = out.shape
    return 2.0 * torch.eye(k, dtype=out.dtype, device=out.device).expand(n, k, k)


def _softmax_d2(out: Tensor, y: Tensor) -> Tensor:
    p = out.softmax(dim=1)
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def _logistic_d2(out: Tensor, y: Tensor) -> Tensor:
    s = torch.sigmoid(out)
    return (s * (1 - s))[:, :, None]


LOSSES: dict[str, Loss] = {
    "square": Loss(
        "square", ("scalar", "onehot"),
        value=lambda out, y: (out - y).pow(2).sum(1),
        d1=lambda out, y: 2.0 * (out - y),
        d2=_square_d2,
    ),
    "cross_entropy": Loss(
        "cross_entropy", ("onehot",),
        value=lambda out, y: torch.logsumexp(out, dim=1) - (y * out).sum(1),
        d1=lambda out, y: out.softmax(dim=1) - y,
        d2=_softmax_d2,
    ),
    "logistic": Loss(
        "logistic", ("binary",),
        value=lambda out, y: (F.softplus(out) - y * out).sum(1),
        d1=lambda out, y: torch.sigmoid(out) - y,
        d2=_logistic_d2,
    ),
}
square_loss: Loss = LOSSES["square"]  # the paper's main text (Section 3; Theorem 5.1)
