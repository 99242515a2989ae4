"""Gaussian-input teachers of the recovery paper (Fu, Chi, Liang 2020, eqs. (1)-(3)).

x ~ N(0, I_d) and y ~ Bernoulli(H(W*, x)) with

* FCN: H(W, x) = (1/K) sum_k sigmoid(w_k^T x),            W in R^{d x K};
* CNN: H(w, x) = (1/K) sum_k sigmoid(w^T x^(k)),           w in R^m, d = m K, x^(k) = x[m(k-1):mk].

Many training sets are drawn at once: ``X`` has shape (S, n, d), ``y`` (S, n) and the ground truth
(S, d, K) for FCN or (S, m) for CNN; set s uses ground truth s. All draws come from one seeded
``torch.Generator`` (ground truths first, then inputs, then label uniforms), on the generator's device,
so a (seed, S, n, d, K) tuple always gives the same sets; :meth:`TeacherData.to` moves them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from curvlab.run.values import require_ints

KINDS = ("fcn", "cnn")
WEIGHTS = ("gaussian", "orthonormal", "unit")


@dataclass
class TeacherData:
    """S training sets of one (kind, d, K, n) point."""

    kind: str
    K: int
    X: Tensor  # (S, n, d)
    y: Tensor  # (S, n), values in {0, 1}, same dtype as X
    W_star: Tensor  # (S, d, K) for FCN, (S, m) for CNN

    @property
    def S(self) -> int:
        return self.X.shape[0]

    @property
    def n(self) -> int:
        return self.X.shape[1]

    @property
    def d(self) -> int:
        return self.X.shape[2]

    def subset(self, idx: Tensor | slice | list[int]) -> "TeacherData":
        """The training sets ``idx`` (keeps the set axis)."""
        return TeacherData(self.kind, self.K, self.X[idx], self.y[idx], self.W_star[idx])

    def to(self, device: torch.device | str) -> "TeacherData":
        """The same sets on ``device``."""
        return TeacherData(self.kind, self.K, self.X.to(device), self.y.to(device), self.W_star.to(device))


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown network kind {kind!r}; choose one of {KINDS}")
    return kind


def patch_size(d: int, K: int) -> int:
    """m = d / K for the non-overlapping CNN; raises unless K divides d."""
    if K < 1 or d < 1:
        raise ValueError(f"need d >= 1 and K >= 1, got d={d}, K={K}")
    if d % K:
        raise ValueError(f"non-overlapping CNN needs d = m K: d={d} is not divisible by K={K}")
    return d // K


def teacher_output(kind: str, W: Tensor, X: Tensor, K: int) -> Tensor:
    """H(W, x_i) for every sample: W (S, d, K) [FCN] or (S, m) [CNN], X (S, n, d) -> (S, n)."""
    check_kind(kind)
    if kind == "fcn":
        return torch.sigmoid(torch.bmm(X, W)).mean(-1)
    S, n, d = X.shape
    m = patch_size(d, K)
    z = torch.bmm(X.reshape(S, n * K, m), W.unsqueeze(-1)).view(S, n, K)
    return torch.sigmoid(z).mean(-1)


def sample_weights(
    kind: str,
    S: int,
    d: int,
    K: int,
    generator: torch.Generator,
    weights: str = "gaussian",
    cond: float | None = None,
    scale: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """S ground truths.

    ``weights``: ``gaussian`` (i.i.d. N(0, 1) entries: the paper's experiments), ``orthonormal``
    (orthonormal columns, FCN only, K <= d) or ``unit`` (Gaussian columns rescaled to norm 1).
    ``cond`` (FCN only): replace the singular values of each W* by linspace(s_1, s_1/cond, K), s_1 its
    largest singular value, so W* has condition number exactly ``cond``. ``scale`` multiplies the result.
    """
    check_kind(kind)
    if weights not in WEIGHTS:
        raise ValueError(f"unknown teacher weights {weights!r}; choose one of {WEIGHTS}")
    if kind == "cnn":
        if cond is not None:
            raise ValueError("a condition number applies to the FCN teacher only (the CNN has one kernel)")
        w = torch.randn(S, patch_size(d, K), generator=generator, dtype=dtype, device=generator.device)
        if weights in ("orthonormal", "unit"):
            w = w / w.norm(dim=-1, keepdim=True)
        return scale * w
    W = torch.randn(S, d, K, generator=generator, dtype=dtype, device=generator.device)
    if weights == "orthonormal":
        if K > d:
            raise ValueError(f"orthonormal columns need K <= d, got K={K}, d={d}")
        W, _ = torch.linalg.qr(W)
    elif weights == "unit":
        W = W / W.norm(dim=1, keepdim=True)
    if cond is not None:
        if cond < 1:
            raise ValueError(f"condition number must be >= 1, got {cond}")
        U, s, Vh = torch.linalg.svd(W, full_matrices=False)
        t = torch.linspace(0.0, 1.0, K, dtype=dtype, device=s.device)
        new_s = s[:, :1] * (1.0 + t * (1.0 / cond - 1.0))
        W = U @ torch.diag_embed(new_s) @ Vh
    return scale * W


def sample_teacher(
    kind: str,
    S: int,
    n: int,
    d: int,
    K: int,
    seed: int | torch.Generator,
    weights: str = "gaussian",
    cond: float | None = None,
    scale: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> TeacherData:
    """S independent training sets of n samples each, one ground truth per set."""
    check_kind(kind)
    require_ints("teacher", S=S, n=n, d=d, K=K)
    if kind == "cnn":
        patch_size(d, K)
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    W = sample_weights(kind, S, d, K, gen, weights, cond, scale, dtype)
    X = torch.randn(S, n, d, generator=gen, dtype=dtype, device=gen.device)
    u = torch.rand(S, n, generator=gen, dtype=dtype, device=gen.device)
    y = (u < teacher_output(kind, W, X, K)).to(dtype)
    return TeacherData(kind, K, X, y, W)
