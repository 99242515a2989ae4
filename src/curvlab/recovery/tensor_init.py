"""Initialization by the tensor method (Algorithm 2 of the paper; Zhong et al. 2017, [15]).

Moments (Definition 3), with He_j the Hermite tensors and x ~ N(0, I):

    M_j = E[y He_j(x)] = (1/K) sum_i m_j(||w_i*||) wbar_i^{(x) j},     m_j(sigma) = E[phi(sigma z) He_j(z)].

For the sigmoid m_2 = m_4 = 0 (phi - 1/2 is odd), so M_2 = M_4 = 0 and j2 = j3 = 3: both P_2 and P_3 come
from M_3. What is implemented, per training set, batched over sets:

1. Subspace. P_2 = M_3(I, I, alpha) = (1/K) sum_i m_3(sigma_i) (alpha^T wbar_i) wbar_i wbar_i^T for a random
   unit alpha, estimated from data as (1/n) sum y [(alpha^T x) x x^T - (alpha^T x) I - x alpha^T - alpha x^T].
   P_2 is indefinite (the coefficients m_3 (alpha^T wbar_i) have either sign), so V keeps the K eigenvectors
   of largest |eigenvalue| (a symmetric eigensolver stands in for the power method). With
   ``num_alpha`` = R > 1 the subspace comes instead from sum_r P_2(alpha_r)^2 (PSD, same column space),
   which no longer fails when some alpha^T wbar_i happens to be small (default R = 3: measured median
   error 0.28 vs 0.46 for R = 1 at d = 10, K = 3, n = 4e5); R = 1 is Algorithm 2 as written.
2. Directions. R_3 = M_3(V, V, V) = (1/K) sum_i m_3(sigma_i) u_i^{(x)3}, u_i = V^T wbar_i, estimated as
   (1/n) sum y [u^{(x)3} - u (x)~ I_K] with u = V^T x. The u_i are linearly independent but not
   orthogonal, so instead of whitening + tensor power iterations (KCL in [15], which needs a PSD
   whitening matrix that the indefinite P_2 does not give) R_3 is decomposed by Jennrich's simultaneous
   diagonalization: R_3(I, I, a) R_3(I, I, b)^{-1} = U diag(<u_i, a>/<u_i, b>) U^{-1}, so its eigenvectors are
   the u_i up to scale and sign; of ``jennrich_tries`` random (a, b) pairs the one with the best separated
   real eigenvalues is kept. Directions v_i = V u_i / ||V u_i|| = s_i wbar_i with unknown signs s_i.
3. Signs and magnitudes (RecMag; the paper's Appendix E, part (b)). With Q_1 = M_{l1}(I, alpha, ...) for
   the first nonzero moment l1 — M_1 for the sigmoid (m_1 = gamma_1 > 0): Q_1 = (1/K) sum_i m_1(sigma_i) wbar_i —
   solve the linear least-squares problem Q_1 ~ (1/K) sum_i beta_i v_i; then beta_i = s_i m_1(sigma_i), so
   s_i = sign(beta_i) and sigma_i = m_1^{-1}(|beta_i|) by root finding on the quadrature link function
   (:func:`curvlab.recovery.gaussian_integrals.invert_link`). ``magnitude_moment=3`` uses Q_1 = M_3(I, alpha, alpha)
   instead (the paper's worked example (105)-(110); m_3 < 0, so s_i = -sign of the normalised beta_i).
   M_1 is the default: a first moment has far lower variance than a third.

CNN (one kernel w in R^m, K patches): the patches of one input are i.i.d. N(0, I_m), so the patch-pooled
moments sum_k E[y He_j(x^(k))] = m_j(||w*||) wbar^{(x) j} have the FCN form with one component; the same
three steps run on the n K (patch, label) pairs with rank 1 ([42] for the general multi-kernel case).

Sample splitting (the D_1, D_2, D_3 of Algorithm 2) is an option (``split=True``); it only serves the
proof's independence, so by default every step uses all n samples.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import Tensor

from curvlab.recovery.gaussian_integrals import invert_link
from curvlab.recovery.init import draw
from curvlab.recovery.teacher import TeacherData, patch_size


def _unit(v: Tensor, dim: int = -1) -> Tensor:
    return v / v.norm(dim=dim, keepdim=True).clamp_min(1e-300)


def empirical_p2(X: Tensor, y: Tensor, alphas: Tensor) -> Tensor:
    """P_2(alpha) = M_3(I, I, alpha) from samples: X (S, n, d), y (S, n), alphas (S, R, d) -> (S, R, d, d)."""
    S, n, d = X.shape
    ax = torch.einsum("snd,srd->snr", X, alphas)  # alpha^T x
    A = y.unsqueeze(-1) * ax  # (S, n, R)
    T1 = torch.einsum("snr,sna,snb->srab", A, X, X) / n
    m_ax = A.mean(1)  # (S, R): mean of y alpha^T x
    m1 = (y.unsqueeze(-1) * X).mean(1)  # (S, d): mean of y x
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    outer = m1[:, None, :, None] * alphas[:, :, None, :]  # (S, R, d, d): x alpha^T term
    return T1 - m_ax[..., None, None] * eye - outer - outer.transpose(-1, -2)


def subspace(P2: Tensor, rank: int) -> Tensor:
    """V (S, d, rank): for R = 1 the eigenvectors of P_2 with the largest |eigenvalue|; for R > 1 the top
    eigenvectors of sum_r P_2(alpha_r)^2."""
    if P2.shape[1] == 1:
        evals, evecs = torch.linalg.eigh(P2[:, 0])
        idx = evals.abs().argsort(dim=-1, descending=True)[:, :rank]
        return torch.gather(evecs, 2, idx.unsqueeze(1).expand(-1, evecs.shape[1], -1))
    Q = (P2 @ P2).sum(1)
    evals, evecs = torch.linalg.eigh(Q)
    return evecs[:, :, -rank:].flip(-1)


def empirical_r3(U: Tensor, y: Tensor) -> Tensor:
    """R_3 = M_3(V, V, V) from the projected samples U = X V (S, n, k): (S, k, k, k)."""
    S, n, k = U.shape
    T = torch.einsum("sn,sna,snb,snc->sabc", y, U, U, U) / n
    m = (y.unsqueeze(-1) * U).mean(1)  # (S, k)
    eye = torch.eye(k, dtype=U.dtype, device=U.device)
    corr = (m[:, :, None, None] * eye[None, None] + m[:, None, :, None] * eye[None, :, None, :]
            + m[:, None, None, :] * eye[None, :, :, None])
    return T - corr


def jennrich(R3: Tensor, generator: torch.Generator, tries: int = 8) -> Tensor:
    """Columns u_i (unit, sign arbitrary) of a non-orthogonal symmetric CP decomposition of R3 (S, k, k, k)."""
    S, k = R3.shape[:2]
    if k == 1:
        return torch.ones(S, 1, 1, dtype=R3.dtype, device=R3.device)
    ab = draw(torch.randn, (S, tries, 2, k), generator, R3)
    Ma = torch.einsum("sijc,stc->stij", R3, ab[:, :, 0])
    Mb = torch.einsum("sijc,stc->stij", R3, ab[:, :, 1])
    Mab = Ma @ torch.linalg.pinv(Mb)
    lam, vec = torch.linalg.eig(Mab)  # (S, T, k), (S, T, k, k) complex
    # score: smallest pairwise eigenvalue gap relative to the spread, minus imaginary contamination
    gaps = (lam.unsqueeze(-1) - lam.unsqueeze(-2)).abs() + torch.eye(k, device=lam.device) * 1e300
    scale = lam.abs().amax(-1).clamp_min(1e-300)
    score = gaps.flatten(-2).amin(-1) / scale - lam.imag.abs().amax(-1) / scale
    best = score.argmax(1)  # (S,)
    v = vec[torch.arange(S, device=vec.device), best].real
    return _unit(v, dim=1)


def _magnitudes(beta: Tensor, j: int, sigma_max: float) -> tuple[Tensor, Tensor]:
    """Signs s_i and norms sigma_i from beta_i = s_i m_j(sigma_i) (m_1 > 0, m_3 < 0)."""
    sign = torch.sign(beta) if j == 1 else -torch.sign(beta)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    target = beta.abs() if j == 1 else -beta.abs()
    sig = invert_link(target.detach().cpu().numpy().ravel(), j=j, sigma_max=sigma_max)
    return sign, torch.as_tensor(np.asarray(sig), dtype=beta.dtype, device=beta.device).view_as(beta)


def tensor_method(
    X: Tensor,
    y: Tensor,
    rank: int,
    prefactor: float,
    generator: torch.Generator,
    num_alpha: int = 3,
    magnitude_moment: int = 1,
    jennrich_tries: int = 8,
    split: bool = False,
    sigma_max: float = 10.0,
) -> Tensor:
    """Estimate the ``rank`` columns of a model whose moments are M_j = prefactor sum_i m_j(||w_i||) wbar_i^{(x) j}.

    X (S, n, p), y (S, n). Returns (S, p, rank)."""
    S, n, p = X.shape
    if rank > p:
        raise ValueError(f"tensor method: rank {rank} exceeds the dimension {p}")
    if magnitude_moment not in (1, 3):
        raise ValueError(f"magnitude_moment must be 1 or 3, got {magnitude_moment}")
    if split:
        if n < 3:
            raise ValueError("split=True needs at least 3 samples")
        cut = [0, n // 3, 2 * n // 3, n]
        parts = [(X[:, a:b], y[:, a:b]) for a, b in zip(cut[:-1], cut[1:])]
    else:
        parts = [(X, y)] * 3
    alphas = _unit(draw(torch.randn, (S, num_alpha, p), generator, X))
    V = subspace(empirical_p2(*parts[0], alphas), rank)  # (S, p, rank)
    X2, y2 = parts[1]
    u = jennrich(empirical_r3(X2 @ V, y2), generator, jennrich_tries)  # (S, rank, rank)
    dirs = _unit(V @ u, dim=1)  # (S, p, rank), column i = s_i wbar_i
    X3, y3 = parts[2]
    if magnitude_moment == 1:
        Q = (y3.unsqueeze(-1) * X3).mean(1)  # M_1
    else:
        a = alphas[:, 0]
        ax = (X3 @ a.unsqueeze(-1)).squeeze(-1)  # (S, n)
        aa = a.square().sum(-1, keepdim=True)
        Q = (y3.unsqueeze(-1) * ((ax.square().unsqueeze(-1) - aa.unsqueeze(1)) * X3)).mean(1) \
            - 2.0 * (y3 * ax).mean(1, keepdim=True) * a
    beta = torch.linalg.lstsq(dirs, Q.unsqueeze(-1)).solution.squeeze(-1) / prefactor  # (S, rank)
    if magnitude_moment == 3:
        beta = beta / (a.unsqueeze(1) @ dirs).squeeze(1).square().clamp_min(1e-300)
    sign, sig = _magnitudes(beta, magnitude_moment, sigma_max)
    return dirs * (sign * sig).unsqueeze(1)


def tensor_init(data: TeacherData, generator: torch.Generator, **options) -> Tensor:
    """W0 for every training set of ``data``: (S, d, K) for FCN, (S, m) for CNN. Options as in
    :func:`tensor_method`."""
    S, n, d = data.X.shape
    K = data.K
    if data.kind == "fcn":
        return tensor_method(data.X, data.y, K, 1.0 / K, generator, **options)
    m = patch_size(d, K)
    Xp = data.X.reshape(S, n * K, m)
    yp = data.y.repeat_interleave(K, dim=1)
    return tensor_method(Xp, yp, 1, 1.0 / K, generator, **options)[:, :, 0]


def init_error(kind: str, W0: Tensor, W_star: Tensor) -> Tensor:
    """||W0 - W*||_F / ||W*||_F per set after the best column permutation (FCN): (S,)."""
    from curvlab.recovery.metrics import normalized_error

    return normalized_error(kind, W0.unsqueeze(1), W_star).sqrt()


__all__ = ["tensor_init", "tensor_method", "init_error", "jennrich", "subspace", "empirical_p2", "empirical_r3"]
