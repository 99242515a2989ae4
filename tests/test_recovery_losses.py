"""Closed-form gradient and exact Hessian of the empirical cross entropy (FCN and CNN) against
autograd, torch.func.hessian and finite differences, in float64."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest
import torch

from curvlab.recovery import losses
from curvlab.recovery.teacher import sample_teacher, teacher_output


def _points(td, P, scale, seed=3):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(td.S, P, *td.W_star.shape[1:], generator=g, dtype=torch.float64)
    return td.W_star.unsqueeze(1) + scale * noise


def _vec_fcn(W):  # (d, K) -> [w_1; ...; w_K]
    return W.T.reshape(-1)


@pytest.mark.parametrize("kind,d,K", [("fcn", 6, 3), ("cnn", 12, 3), ("cnn", 8, 4)])
def test_grad_and_hessian_match_autograd(kind, d, K):
    td = sample_teacher(kind, 2, 80, d, K, seed=0)
    W = _points(td, 3, 0.5)
    g = losses.grad(kind, td.X, td.y, W, K)
    H = losses.hessian(kind, td.X, td.y, W, K)
    f = losses.loss(kind, td.X, td.y, W, K)
    for s in range(td.S):
        for p in range(W.shape[1]):
            Wsp = W[s, p].clone().requires_grad_(True)
            fs = losses.loss_single(kind, td.X[s], td.y[s], Wsp, K)
            (gs,) = torch.autograd.grad(fs, Wsp)
            assert torch.allclose(fs, f[s, p], rtol=1e-13, atol=0)
            assert torch.allclose(gs, g[s, p], rtol=1e-10, atol=1e-15)
            if kind == "fcn":
                fun = lambda v: losses.loss_single(kind, td.X[s], td.y[s], v.reshape(K, d).T, K)  # noqa: E731
                hs = torch.func.hessian(fun)(_vec_fcn(W[s, p]))
            else:
                hs = torch.func.hessian(lambda v: losses.loss_single(kind, td.X[s], td.y[s], v, K))(W[s, p])
            assert torch.allclose(hs, H[s, p], rtol=1e-10, atol=1e-15)
            assert torch.allclose(H[s, p], H[s, p].T, atol=1e-16)


@pytest.mark.parametrize("kind,d,K", [("fcn", 6, 3), ("cnn", 12, 3)])
def test_hessian_in_sample_chunks_equals_one_pass(kind, d, K, monkeypatch):
    """At large n the Hessian is summed over sample chunks (bounded memory): same result."""
    td = sample_teacher(kind, 2, 80, d, K, seed=0)
    W = _points(td, 3, 0.5)
    H = losses.hessian(kind, td.X, td.y, W, K)
    per = K * K * d if kind == "fcn" else 2 * d
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 2 * 7 * per)  # one point, 7 samples per chunk
    assert len(losses._chunks(80, 2 * per)) == 12
    assert torch.allclose(losses.hessian(kind, td.X, td.y, W, K), H, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("kind,d,K", [("fcn", 5, 2), ("cnn", 9, 3)])
def test_finite_differences(kind, d, K):
    td = sample_teacher(kind, 1, 60, d, K, seed=1)
    W = _points(td, 1, 0.3)
    g = losses.grad(kind, td.X, td.y, W, K)
    H = losses.hessian(kind, td.X, td.y, W, K)[0, 0]
    h = 1e-5
    flat = W.reshape(-1)
    p = flat.numel()
    fd_g = torch.empty(p, dtype=torch.float64)
    fd_cols = []
    for i in range(p):
        e = torch.zeros(p, dtype=torch.float64)
        e[i] = h
        Wp, Wm = (flat + e).view_as(W), (flat - e).view_as(W)
        fd_g[i] = (losses.loss(kind, td.X, td.y, Wp, K) - losses.loss(kind, td.X, td.y, Wm, K)).item() / (2 * h)
        fd_cols.append(((losses.grad(kind, td.X, td.y, Wp, K) - losses.grad(kind, td.X, td.y, Wm, K)) / (2 * h)).reshape(-1))
    assert torch.allclose(fd_g, g.reshape(-1), rtol=1e-6, atol=1e-10)
    fd_H = torch.stack(fd_cols, 1)  # in W's memory order: (d, K) row-major for FCN
    if kind == "fcn":
        perm = torch.arange(d * K).view(d, K).T.reshape(-1)  # vec index k d + i <- memory index i K + k
        fd_H = fd_H[perm][:, perm]
    assert torch.allclose(fd_H, H, rtol=1e-5, atol=1e-9)


def test_cnn_gradient_uses_every_patch():
    """A gradient built from the first patch only (the paper's eq. (12) shape) differs from ours."""
    kind, d, K = "cnn", 12, 3
    td = sample_teacher(kind, 1, 200, d, K, seed=2)
    w = _points(td, 1, 0.4)
    g = losses.grad(kind, td.X, td.y, w, K)[0, 0]
    n, m = td.n, d // K
    Xp = td.X[0].reshape(n, K, m)
    z = Xp @ w[0, 0]
    s = torch.sigmoid(z)
    H = s.mean(-1)
    r = (H - td.y[0]) / (H * (1 - H))
    per_patch = [((r * s[:, k] * (1 - s[:, k])).unsqueeze(1) * Xp[:, k]).mean(0) / K for k in range(K)]
    assert torch.allclose(sum(per_patch), g, rtol=1e-12, atol=1e-15)
    assert (per_patch[0] - g).norm() > 0.1 * g.norm()


def test_clipping_zeroes_saturated_samples():
    # a sample with H == 1 exactly (z huge) and y = 0 would give inf without clipping
    X = torch.tensor([[[50.0, 0.0], [0.3, -0.2]]], dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    W = torch.tensor([[[[1.0], [0.5]]]], dtype=torch.float64)  # (S=1, P=1, d=2, K=1)
    f = losses.loss("fcn", X, y, W, 1)
    g = losses.grad("fcn", X, y, W, 1)
    assert torch.isfinite(f).all() and torch.isfinite(g).all()
    # only the second sample contributes to the gradient
    g2 = losses.grad("fcn", X[:, 1:], y[:, 1:], W, 1) / 2
    assert torch.allclose(g, g2)


def test_output_matches_teacher():
    for kind, d, K in (("fcn", 7, 3), ("cnn", 9, 3)):
        td = sample_teacher(kind, 3, 20, d, K, seed=4)
        H = losses.output(kind, td.X, td.W_star.unsqueeze(1), K)[..., 0]
        assert torch.allclose(H, teacher_output(kind, td.W_star, td.X, K))
