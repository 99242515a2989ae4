"""Initialization by the tensor method (Algorithm 2 of the paper; Zhong et al. 2017, [15]).

Moments (Definition 3), with He_j the Hermite tensors and x ~ N(0, I):

    M_j = E[y He_j(x)] = (1/K) sum_i m_j(||w_i*||) wbar_i^{(x) j},     m_j(sigma) = E[phi(sigma z) He_j(z)].

For the sigmoid m_2 = m_4 = 0 (phi - 1/2 is odd), so M_2 = M_4 = 0 and j2 = j3 = 3: both P_2 and P_3 come
from M_3. What is implemented, per training set, batched over sets:

1. Subspace. P_2 = M_3(I, I, alpha) = (1/K) sum_i m_3(sigma_i) (alpha^T wbar_i) wbar_i wbar_i^T, estimated from
   data as (1/n) sum y [(alpha^T x) x x^T - (alpha^T x) I - x alpha^T - alpha x^T]. For one alpha (Algorithm 2)
   P_2 is indefinite, so V keeps the K eigenvectors of largest |eigenvalue| (a symmetric eigensolver stands
   in for the power method). With R alphas V comes from sum_r P_2(alpha_r)^2 (PSD, same column space), which
   no longer fails when some alpha^T wbar_i is small: ``alphas="random"`` draws ``num_alpha`` unit alphas,
   ``alphas="axes"`` (default) takes the d coordinate axes, so the sum is M_(1) M_(1)^T for the d x d^2
   unfolding M_(1) of M_3: its top-K left singular vectors, every entry of M_3 used. ``m1_direction``
   (default) makes M_1 / ||M_1|| the first column of V (M_1 = (1/K) sum_i m_1(sigma_i) wbar_i lies in the
   span and has far lower variance than M_3) and the other K - 1 the top eigenvectors of that matrix
   projected onto its orthogonal complement.
2. Directions. R_3 = M_3(V, V, V) = (1/K) sum_i m_3(sigma_i) u_i^{(x)3}, u_i = V^T wbar_i, estimated as
   (1/n) sum y [u^{(x)3} - u (x)~ I_K] with u = V^T x. The u_i are linearly independent but not
   orthogonal, so instead of whitening + tensor power iterations (KCL in [15], which needs a PSD
   whitening matrix that the indefinite P_2 does not give) R_3 is decomposed by Jennrich's simultaneous
   diagonalization: R_3(I, I, a) R_3(I, I, b)^{-1} = U diag(<u_i, a>/<u_i, b>) U^{-1}, so its eigenvectors are
   the u_i up to scale and sign; of ``jennrich_tries`` random (a, b) pairs the one with the best separated
   real eigenvalues is kept. Jennrich reads R_3 through two slices only: ``cp_iters`` (default 20)
   Levenberg-Marquardt steps then fit min ||R_3 - sum_i w_i^{(x)3}||_F from it (:func:`cp_refine`; a set whose
   fit merges two columns keeps Jennrich's). A complex-conjugate eigenvalue pair (noise) yields the real and
   imaginary parts of its eigenvector (they span the pair's plane), not two equal real parts.
   Directions v_i = V u_i / ||V u_i|| = s_i wbar_i with unknown signs s_i.
3. Signs and magnitudes. (a) RecMag (the paper's Appendix E, part (b); ``magnitudes="link"``): with
   Q_1 = M_{l1}(I, alpha, ...) for the first nonzero moment l1 -- M_1 for the sigmoid (m_1 = gamma_1 > 0):
   Q_1 = (1/K) sum_i m_1(sigma_i) wbar_i -- solve the linear least-squares problem Q_1 ~ (1/K) sum_i beta_i v_i;
   then beta_i = s_i m_1(sigma_i), so s_i = sign(beta_i) and sigma_i = m_1^{-1}(|beta_i|) by root finding on the
   quadrature link function (:func:`curvlab.recovery.gaussian_integrals.invert_link`). ``magnitude_moment=3``
   uses Q_1 = M_3(I, alpha, alpha) instead (the paper's worked example (105)-(110); m_3 < 0, so s_i = -sign of
   the normalised beta_i). (b) Fit (default, ``magnitudes="fit"``), replacing step 5 (RecMag) of Algorithm 2:
   m_1 is flat at the norms of Gaussian columns (||w_i*|| ~ sqrt(d); m_1'(3) = 0.028, m_1'(4) = 0.014), so the
   inversion (109)-(111) multiplies the error of beta_i by |g'| = 1/m_1' ~ 35-70: W0 approached W* slowly and
   erratically (median error 1.29, 1.17, 0.48, 0.24 at n = 3e4, 1e5, 3e5, 1e6, quartiles 0.13-0.50 at 1e6;
   d = 10, K = 3, the old directions).
   Instead the K signed scalars c_i of W0 = [c_1 v_1, ..., c_K v_K] minimize the empirical cross
   entropy f_n (eq. (4)) of the paper's own model along the directions, by a batched float64 Newton solve
   in K variables started from (a)'s estimate (:func:`fit_scalars`; a few steps, each one pass over the
   projected data X V U). The signs come from the fit too.

Measured ||W0 - W*||_F / ||W*||_F (d = 10, K = 3, median over 30 sets, seeds 0-2, defaults) at n = 3e4, 1e5,
3e5, 1e6: Gaussian W* 0.27, 0.15, 0.073, 0.041 (before: 1.29, 1.17, 0.48, 0.24; Algorithm 2 as written:
0.94, 0.92, 1.21, 1.10); unit-norm columns (m_3(1) = -0.06: the directions are the weak step there) 1.12,
0.89, 0.46, 0.19 (before: 0.95, 0.94, 0.86, 0.54). At 1e5 (Gaussian) / 3e5 (unit): 0.21 / 0.60 without
the CP fit, 0.20 / 0.79 with 3 random alphas instead of the axes, 0.15 / 0.46 without m1_direction; the fit
alone on the old directions 0.32 / 0.82.

CNN (one kernel w in R^m, K patches): the patches of one input are i.i.d. N(0, I_m), so the patch-pooled
moments sum_k E[y He_j(x^(k))] = m_j(||w*||) wbar^{(x) j} have the FCN form with one component; the same
steps run on the n K (patch, label) pairs with rank 1 ([42] for the general multi-kernel case; with
``m1_direction`` the direction is M_1's), and the fit is over the one scalar of the CNN's own loss.

Sample splitting (the D_1, D_2, D_3 of Algorithm 2) is an option (``split=True``); it only serves the
proof's independence, so by default every step uses all n samples. Algorithm 2 as written:
``alphas="random", num_alpha=1, m1_direction=False, cp_iters=0, magnitudes="link", split=True``
(:func:`tensor_method` is the link version; its defaults are the steps 1-3 of before: random alphas,
num_alpha = 3, no M_1 column, no CP fit, no split).
"""

from __future__ import annotations


import numpy as np
import torch
from torch import Tensor

from curvlab.recovery import losses
from curvlab.recovery.gaussian_integrals import invert_link
from curvlab.recovery.init import draw
from curvlab.recovery.teacher import TeacherData, patch_size


CHUNK_ELEMENTS = 20_000_000  # elements of the largest intermediate of empirical_p2 (160 MB in float64)
ALPHAS = ("random", "axes")  # the alphas of the P_2 subspace step
MAGNITUDES = ("fit", "link")  # how the scalars along the directions are recovered
QUADRATIC = 1e-10  # Newton decrement below which fit_scalars takes full steps
DONE = 1e-20  # ... and at or below which it stops
WARM = 20_000  # samples of fit_scalars' first stage (at most)
STEP_MAX = 1.0  # largest change of one scalar in one Newton step
MERGED = 0.98  # |cos| of two CP columns that cp_refine reads as a degenerate fit


def _unit(v: Tensor, dim: int = -1) -> Tensor:
    return v / v.norm(dim=dim, keepdim=True).clamp_min(1e-300)


def empirical_p2(X: Tensor, y: Tensor, alphas: Tensor) -> Tensor:
    """P_2(alpha) = M_3(I, I, alpha) from samples: X (S, n, d), y (S, n), alphas (S, R, d) -> (S, R, d, d)."""
    S, n, d = X.shape
    ax = torch.einsum("snd,srd->snr", X, alphas)  # alpha^T x
    A = y.unsqueeze(-1) * ax  # (S, n, R)
    R = A.shape[-1]
    step = max(1, CHUNK_ELEMENTS // max(S * R * d, 1))  # samples per chunk: bounded memory at any n
    T1 = X.new_zeros(S, R * d, d)
    for a in range(0, n, step):
        Z = (A[:, a:a + step].unsqueeze(-1) * X[:, a:a + step].unsqueeze(-2)).reshape(S, -1, R * d)
        T1.baddbmm_(Z.transpose(1, 2), X[:, a:a + step])
    T1 = T1.view(S, R, d, d) / n
    m_ax = A.mean(1)  # (S, R): mean of y alpha^T x
    m1 = (y.unsqueeze(-1) * X).mean(1)  # (S, d): mean of y x
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    outer = m1[:, None, :, None] * alphas[:, :, None, :]  # (S, R, d, d): x alpha^T term
    return T1 - m_ax[..., None, None] * eye - outer - outer.transpose(-1, -2)


def subspace(P2: Tensor, rank: int, first: Tensor | None = None) -> Tensor:
    """V (S, d, rank): for R = 1 the eigenvectors of P_2 with the largest |eigenvalue|; for R > 1 the top
    eigenvectors of sum_r P_2(alpha_r)^2. With ``first`` (S, d), a unit vector known to lie in the span, V is
    ``first`` and the top rank - 1 eigenvectors of that matrix projected onto its orthogonal complement."""
    if first is not None:
        d = P2.shape[-1]
        Pp = torch.eye(d, dtype=P2.dtype, device=P2.device) - first.unsqueeze(-1) * first.unsqueeze(-2)
        Q = (P2[:, 0] if P2.shape[1] == 1 else (P2 @ P2).sum(1))
        Q = Pp @ Q @ Pp
        evals, evecs = torch.linalg.eigh(Q)
        idx = evals.abs().argsort(dim=-1, descending=True)[:, :rank - 1]
        rest = torch.gather(evecs, 2, idx.unsqueeze(1).expand(-1, d, -1))
        return torch.cat([first.unsqueeze(-1), rest], -1)
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
    i = torch.arange(S, device=vec.device)
    v, im = vec[i, best], lam[i, best].imag
    # a complex-conjugate pair (noise merged two real eigenvalues) has eigenvectors z, conj(z): their real parts
    # coincide; Re z and Im z span the pair's plane, which the CP fit (cp_refine) can then resolve
    v = torch.where(im.unsqueeze(1) < 0, v.imag, v.real)
    return _unit(v, dim=1)


def _cp_residual(R3: Tensor, w: Tensor) -> Tensor:
    S, k = R3.shape[:2]
    return (R3 - torch.einsum("sai,sbi,sci->sabc", w, w, w)).reshape(S, -1)


def cp_refine(R3: Tensor, u: Tensor, iters: int = 20) -> Tensor:
    """Least-squares symmetric CP fit min_w ||R3 - sum_i w_i^{(x)3}||_F by Levenberg-Marquardt from the columns
    u (S, k, k) (Jennrich's, scaled by the least-squares weights); returns the unit columns w_i / ||w_i||.
    Jennrich reads R3 through two random slices only; the fit uses every entry. A set whose fitted columns
    come closer than |cos| = ``MERGED`` (and closer than Jennrich's) keeps Jennrich's."""
    S, k = R3.shape[:2]
    if iters <= 0 or k == 1:
        return u
    eye = torch.eye(k, dtype=R3.dtype, device=R3.device)
    Phi = torch.einsum("sai,sbi,sci->sabci", u, u, u).reshape(S, k**3, k)
    lam = torch.linalg.lstsq(Phi, R3.reshape(S, -1, 1)).solution.squeeze(-1)  # (S, k)
    w = u * (lam.abs().pow(1.0 / 3.0) * torch.sign(lam)).unsqueeze(1)
    r = _cp_residual(R3, w)
    cost = r.square().sum(-1)
    mu = torch.full_like(cost, 1e-3)
    eye2 = torch.eye(k * k, dtype=R3.dtype, device=R3.device)
    for _ in range(iters):
        # d (sum_i w_i^3)_{pqr} / d w_{ai} = d_pa w_qi w_ri + w_pi d_qa w_ri + w_pi w_qi d_ra
        J = (torch.einsum("pa,sqi,sri->spqrai", eye, w, w) + torch.einsum("spi,qa,sri->spqrai", w, eye, w)
             + torch.einsum("spi,sqi,ra->spqrai", w, w, eye)).reshape(S, k**3, k * k)
        JtJ = J.transpose(1, 2) @ J
        scale = JtJ.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-300)
        step = torch.linalg.solve(JtJ + (mu * scale)[:, None, None] * eye2, (J.transpose(1, 2) @ r.unsqueeze(-1)))
        cand = w + step.view(S, k, k)
        rc = _cp_residual(R3, cand)
        cc = rc.square().sum(-1)
        ok = cc < cost
        w = torch.where(ok[:, None, None], cand, w)
        r = torch.where(ok[:, None], rc, r)
        cost = torch.where(ok, cc, cost)
        mu = torch.where(ok, mu / 3.0, mu * 4.0)
    w = _unit(w, dim=1)
    # a CP fit can degenerate (two columns merge, with large cancelling weights): keep Jennrich's columns there
    merged = _max_cos(w) > torch.maximum(_max_cos(u), torch.full_like(cost, MERGED))
    return torch.where(merged[:, None, None], u, w)


def _max_cos(u: Tensor) -> Tensor:
    """Largest |cos| between two of the unit columns of u (S, k, k): (S,)."""
    G = (u.transpose(1, 2) @ u).abs()
    return (G - torch.eye(u.shape[-1], dtype=u.dtype, device=u.device) * 2.0).amax((1, 2))


def _magnitudes(beta: Tensor, j: int, sigma_max: float) -> tuple[Tensor, Tensor]:
    """Signs s_i and norms sigma_i from beta_i = s_i m_j(sigma_i) (m_1 > 0, m_3 < 0)."""
    sign = torch.sign(beta) if j == 1 else -torch.sign(beta)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    target = beta.abs() if j == 1 else -beta.abs()
    sig = invert_link(target.detach().cpu().numpy().ravel(), j=j, sigma_max=sigma_max)
    return sign, torch.as_tensor(np.asarray(sig), dtype=beta.dtype, device=beta.device).view_as(beta)


def _steps(X: Tensor, y: Tensor, rank: int, prefactor: float, generator: torch.Generator, num_alpha: int,
           magnitude_moment: int, jennrich_tries: int, split: bool, sigma_max: float, alphas: str = "random",
           m1_direction: bool = False, cp_iters: int = 0) -> tuple[Tensor, Tensor]:
    """Steps 1-3 of Algorithm 2: unit directions (S, p, rank) and the signed link-inversion scalars (S, rank)."""
    S, n, p = X.shape
    if rank > p:
        raise ValueError(f"tensor method: rank {rank} exceeds the dimension {p}")
    if magnitude_moment not in (1, 3):
        raise ValueError(f"magnitude_moment must be 1 or 3, got {magnitude_moment}")
    if num_alpha < 1:
        raise ValueError(f"num_alpha must be >= 1, got {num_alpha}")
    if split:
        if n < 3:
            raise ValueError("split=True needs at least 3 samples")
        cut = [0, n // 3, 2 * n // 3, n]
        parts = [(X[:, a:b], y[:, a:b]) for a, b in zip(cut[:-1], cut[1:])]
    else:
        parts = [(X, y)] * 3
    if alphas not in ALPHAS:
        raise ValueError(f"alphas must be one of {ALPHAS}, got {alphas!r}")
    rand = _unit(draw(torch.randn, (S, num_alpha, p), generator, X))
    X1, y1 = parts[0]
    axes = torch.eye(p, dtype=X.dtype, device=X.device).expand(S, p, p)
    first = _unit((y1.unsqueeze(-1) * X1).mean(1)) if m1_direction else None  # M_1 lies in the span
    V = subspace(empirical_p2(X1, y1, axes if alphas == "axes" else rand), rank, first)  # (S, p, rank)
    X2, y2 = parts[1]
    R3 = empirical_r3(X2 @ V, y2)
    u = cp_refine(R3, jennrich(R3, generator, jennrich_tries), cp_iters)  # (S, rank, rank)
    dirs = _unit(V @ u, dim=1)  # (S, p, rank), column i = s_i wbar_i
    X3, y3 = parts[2]
    if magnitude_moment == 1:
        Q = (y3.unsqueeze(-1) * X3).mean(1)  # M_1
    else:
        a = rand[:, 0]
        ax = (X3 @ a.unsqueeze(-1)).squeeze(-1)  # (S, n)
        aa = a.square().sum(-1, keepdim=True)
        Q = (y3.unsqueeze(-1) * ((ax.square().unsqueeze(-1) - aa.unsqueeze(1)) * X3)).mean(1) \
            - 2.0 * (y3 * ax).mean(1, keepdim=True) * a
    beta = torch.linalg.lstsq(dirs, Q.unsqueeze(-1)).solution.squeeze(-1) / prefactor  # (S, rank)
    if magnitude_moment == 3:
        beta = beta / (a.unsqueeze(1) @ dirs).squeeze(1).square().clamp_min(1e-300)
    sign, sig = _magnitudes(beta, magnitude_moment, sigma_max)
    return dirs, sign * sig


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
    alphas: str = "random",
    m1_direction: bool = False,
    cp_iters: int = 0,
) -> Tensor:
    """Algorithm 2 (steps 1-3 above, magnitudes by link inversion) for a model whose moments are
    M_j = prefactor sum_i m_j(||w_i||) wbar_i^{(x) j}.

    X (S, n, p), y (S, n). Returns (S, p, rank)."""
    dirs, c = _steps(X, y, rank, prefactor, generator, num_alpha, magnitude_moment, jennrich_tries, split,
                     sigma_max, alphas, m1_direction, cp_iters)
    return dirs * c.unsqueeze(1)


# --------------------------------------------------------------------------------------------------
# magnitudes by fitting the cross entropy along the recovered directions


def _scalar_loss(T: Tensor, y: Tensor, c: Tensor, eps: float = losses.DEFAULT_EPS) -> Tensor:
    """f_n(c) = the empirical cross entropy (losses.py) of H = mean_k sigmoid(c_k t_k): T (S, n, K), c (S, r)
    with r = K or 1 (broadcast over the K neurons: the CNN's one kernel); labels y (S, n) in {0, 1}. (S,)."""
    H = torch.sigmoid(T * c.unsqueeze(1)).mean(-1, keepdim=True)
    return losses.loss_from_output(H, y, eps).mean((1, 2))


def _scalar_fgh(T: Tensor, y: Tensor, c: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_scalar_loss` (S,), its gradient (S, r) and exact Hessian (S, r, r) in c, in one pass (the chain
    rule of losses.py: with z_k = c_k t_k, dH/dc_k = s_k' t_k / K and d^2 H / dc_k^2 = s_k'' t_k^2 / K)."""
    S, n, K = T.shape
    s = torch.sigmoid(T * c.unsqueeze(1))
    H = s @ torch.full((K, 1), 1.0 / K, dtype=s.dtype, device=s.device)  # (S, n, 1)
    # losses.loss_from_output / dloss_dH for labels in {0, 1}: with q = H (y = 1) or 1 - H (y = 0), clipped,
    # l = -log q, l'(H) = (1 - 2 y) / q, l''(H) = 1 / q^2, both zero where H is clipped
    Hc = H.clamp(eps, 1.0 - eps)
    yy = y.unsqueeze(-1)
    q = torch.where(yy > 0.5, Hc, 1.0 - Hc)
    f = -torch.log(q).mean((1, 2))
    r = (H == Hc).to(H.dtype).div_(q)
    l1, l2 = (1.0 - 2.0 * yy) * r, r * r
    J = torch.addcmul(s, s, s, value=-1.0).mul_(T)  # K dH/dc_k = s'(z_k) t_k
    D = s.mul_(-2.0).add_(1.0).mul_(T).mul_(J)  # K d^2 H / dc_k^2 = s''(z_k) t_k^2, s'' = s' (1 - 2 s)
    if c.shape[1] == 1:  # one shared scalar
        J, D = J.sum(-1, keepdim=True), D.sum(-1, keepdim=True)
    Jt = J.transpose(1, 2)
    g = torch.bmm(Jt, l1).squeeze(-1) / (K * n)
    curv = torch.bmm(D.transpose(1, 2), l1).squeeze(-1) / (K * n)  # l'(H) d^2 H / dc_k^2
    Hm = torch.bmm(Jt, l2 * J) / (K * K * n) + torch.diag_embed(curv)
    return f, g, Hm


def _newton(T: Tensor, y: Tensor, c: Tensor, iters: int, eps: float) -> Tensor:
    f, g, Hm = _scalar_fgh(T, y, c, eps)
    active = torch.ones_like(f, dtype=torch.bool)
    for _ in range(iters):
        lam, Q = torch.linalg.eigh(Hm)
        pd = lam.amin(-1) > 0
        lam = lam.abs().clamp_min(1e-8 * lam.abs().amax(-1, keepdim=True).clamp_min(1e-300))
        p = -(Q @ ((Q.transpose(-1, -2) @ g.unsqueeze(-1)) / lam.unsqueeze(-1))).squeeze(-1)
        p = p * (STEP_MAX / p.abs().amax(-1, keepdim=True).clamp_min(1e-300)).clamp_max(1.0)
        dec = -(g * p).sum(-1)  # Newton decrement^2 >= 0 (of the capped step)
        active = active & (dec > DONE)
        quad = pd & (dec < QUADRATIC)
        t = torch.ones_like(f)
        pending = active.clone()
        for _ in range(31):
            if not bool(pending.any()):
                break
            cand = c + (t * pending).unsqueeze(-1) * p
            fc, gc, Hc = _scalar_fgh(T, y, cand, eps)
            ok = pending & (quad | (fc <= f - 1e-4 * t * dec))
            c = torch.where(ok.unsqueeze(-1), cand, c)
            f, g = torch.where(ok, fc, f), torch.where(ok.unsqueeze(-1), gc, g)
            Hm = torch.where(ok[:, None, None], Hc, Hm)
            pending = pending & ~ok
            t = torch.where(pending, 0.5 * t, t)
        active = active & ~pending  # no decrease found: stationary to round-off
        if not bool(active.any()):
            break
    return c


def fit_scalars(T: Tensor, y: Tensor, c0: Tensor, iters: int = 30, eps: float = losses.DEFAULT_EPS) -> Tensor:
    """argmin_c f_n(c) of :func:`_scalar_loss` by damped Newton from c0 (S, r), batched over the S sets.

    Each step solves with |Hessian| (eigenvalues by absolute value, floored at 1e-8 of the largest: a
    descent direction outside convex regions too), is capped at ``STEP_MAX`` in every scalar (a flat
    direction: two nearly equal directions, or a saturated sigmoid) and halves the step until the loss
    decreases (Armijo, c = 1e-4); once the Newton decrement g^T |H|^-1 g is below ``QUADRATIC`` at a positive
    definite Hessian the full step is taken (a decrease that small is below the loss's round-off). A set stops
    at its first decrement <= ``DONE`` (c then is within ~1e-9 of the stationary point), when no step length
    down to 2^-30 decreases the loss, or after ``iters`` steps. The solve runs first on the first n / 8^j <= ``WARM``
    samples, then on 8 times as many, ..., then on all n, each from the last (the samples are i.i.d.: a prefix
    is a subsample), so the few full-size steps (one pass over T (S, n, K) each) start next to the minimizer."""
    S, n, K = T.shape
    sizes = [n]
    while sizes[0] > WARM:
        sizes.insert(0, sizes[0] // 8)
    c = c0.clone()
    for m in sizes:
        c = _newton(T[:, :m], y[:, :m], c, iters, eps)
    return c


def tensor_init(data: TeacherData, generator: torch.Generator, magnitudes: str = "fit", fit_iters: int = 30,
                **options) -> Tensor:
    """W0 for every training set of ``data``: (S, d, K) for FCN, (S, m) for CNN. ``magnitudes="link"`` is
    Algorithm 2 (:func:`tensor_method`); ``"fit"`` (default) then fits the signed scalars along its directions
    (:func:`fit_scalars` on all n samples, at most ``fit_iters`` Newton steps per stage, started from Algorithm
    2's estimate). Other options as in :func:`tensor_method`; the defaults are those of conf/init/tensor.yaml."""
    if magnitudes not in MAGNITUDES:
        raise ValueError(f"magnitudes must be one of {MAGNITUDES}, got {magnitudes!r}")
    S, n, d = data.X.shape
    K = data.K
    if data.kind == "fcn":
        dirs, c = _steps(data.X, data.y, K, 1.0 / K, generator, **_defaults(options))
        if magnitudes == "fit":
            c = fit_scalars(data.X @ dirs, data.y, c, fit_iters)
        return dirs * c.unsqueeze(1)
    m = patch_size(d, K)
    Xp = data.X.reshape(S, n * K, m)
    yp = data.y.repeat_interleave(K, dim=1)
    dirs, c = _steps(Xp, yp, 1, 1.0 / K, generator, **_defaults(options))  # (S, m, 1), (S, 1)
    if magnitudes == "fit":
        c = fit_scalars((Xp @ dirs).view(S, n, K), data.y, c, fit_iters)
    return (dirs * c.unsqueeze(1))[:, :, 0]


def _defaults(options: dict) -> dict:
    opts = {"num_alpha": 3, "magnitude_moment": 1, "jennrich_tries": 8, "split": False, "sigma_max": 10.0,
            "alphas": "axes", "m1_direction": True, "cp_iters": 20}
    unknown = set(options) - set(opts)
    if unknown:
        raise TypeError(f"tensor_init: unknown options {sorted(unknown)}")
    return {**opts, **options}


def init_error(kind: str, W0: Tensor, W_star: Tensor) -> Tensor:
    """||W0 - W*||_F / ||W*||_F per set after the best column permutation (FCN): (S,)."""
    from curvlab.recovery.metrics import normalized_error

    return normalized_error(kind, W0.unsqueeze(1), W_star).sqrt()


__all__ = ["tensor_init", "tensor_method", "fit_scalars", "init_error", "jennrich", "cp_refine", "subspace",
           "empirical_p2", "empirical_r3"]
