"""Batched GD over trials: same iterates as one trial alone, per-trial early stop, repacking."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest
import torch

from curvlab.recovery import gd, losses
from curvlab.recovery.init import local_init
from curvlab.recovery.teacher import sample_teacher


def _setup(kind, S=4, L=5, n=300, d=12, K=3, radius=0.3, seed=0):
    td = sample_teacher(kind, S, n, d, K, seed=seed)
    W0 = local_init(td.W_star, L, radius, torch.Generator().manual_seed(seed + 1))
    return td, W0, gd.step_sizes(td)


def _reference(td, W0, eta, steps):
    W = W0.clone()
    shape = (-1,) + (1,) * (W0.dim() - 1)
    for _ in range(steps):
        W = W - eta.view(shape) * losses.grad(td.kind, td.X, td.y, W, td.K)
    return W


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_batched_equals_single_trial(kind):
    td, W0, eta = _setup(kind)
    res = gd.run_gd(td, W0, eta, max_iter=40, tol=0.0, block_elements=2000, workers=2)
    assert torch.allclose(res.W, _reference(td, W0, eta, 40), rtol=1e-11, atol=1e-13)
    for s, l in ((0, 0), (2, 3), (3, 4)):
        one = gd.run_gd(td.subset(slice(s, s + 1)), W0[s:s + 1, l:l + 1], eta[s:s + 1], max_iter=40, tol=0.0)
        assert torch.allclose(one.W[0, 0], res.W[s, l], rtol=1e-12, atol=1e-14)
    assert (res.iters == 40).all() and (res.status == gd.STATUS_CAPPED).all()


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_early_stop_freezes_each_trial_at_its_own_iterate(kind):
    td, W0, eta = _setup(kind, n=3000, d=6, radius=0.1)
    # make trial (1, 2) start exactly at a GD-converged point: it must stop at 0 updates
    conv = gd.run_gd(td, W0, eta, max_iter=3000, tol=1e-9, compact_every=5)
    assert conv.converged[1, 2] and conv.converged[0, 0] and conv.converged[3, 4]
    W0b = W0.clone()
    W0b[1, 2] = conv.W[1, 2]
    res = gd.run_gd(td, W0b, eta, max_iter=3000, tol=1e-9, compact_every=5)
    assert res.iters[1, 2] == 0 and res.converged[1, 2]
    assert torch.equal(res.W[1, 2], W0b[1, 2])
    # every other trial took as many steps as when run alone, and stopped at the first iterate <= tol
    for s, l in ((0, 0), (3, 4)):
        it = int(res.iters[s, l])
        assert it > 5
        ref = _reference(td.subset(slice(s, s + 1)), W0b[s:s + 1, l:l + 1], eta[s:s + 1], it)
        assert torch.allclose(res.W[s, l], ref[0, 0], rtol=1e-10, atol=1e-12)
        gprev = losses.grad(kind, td.X[s:s + 1], td.y[s:s + 1],
                            _reference(td.subset(slice(s, s + 1)), W0b[s:s + 1, l:l + 1], eta[s:s + 1], it - 1), td.K)
        assert gprev.norm() > 1e-9 >= res.grad_norm[s, l]
    # history: finite up to the stop, NaN after
    h = res.history[:, 0, 0]
    it = int(res.iters[0, 0])
    assert torch.isfinite(h[: it + 1]).all() and torch.isnan(h[it + 1:]).all()
    # repacking saved work
    assert res.trial_steps < res.steps * td.S * W0.shape[1]


def test_repacking_and_blocking_do_not_change_results():
    td, W0, eta = _setup("fcn", S=5, L=6, n=1500, d=6, radius=0.1)
    a = gd.run_gd(td, W0, eta, max_iter=400, tol=1e-7, compact_every=1, compact_below=1.0, block_elements=1000)
    b = gd.run_gd(td, W0, eta, max_iter=400, tol=1e-7, compact_every=10 ** 6, workers=1)
    assert torch.equal(a.iters, b.iters) and torch.equal(a.status, b.status)
    assert torch.allclose(a.W, b.W, rtol=1e-11, atol=1e-13)


def test_divergence_is_detected():
    """A huge step blows W up until every sample saturates and the clipped gradient is exactly 0:
    that must read as diverged, not converged."""
    td, W0, eta = _setup("fcn", S=2, L=2, n=200)
    res = gd.run_gd(td, W0, eta * 1e6, max_iter=200, tol=1e-10)
    assert (res.status == gd.STATUS_DIVERGED).all()
    ok = gd.run_gd(td, W0, eta, max_iter=5, tol=1e-10)
    assert not (ok.status == gd.STATUS_DIVERGED).any()


def test_step_size_is_inverse_lambda_max_at_truth():
    td, _, eta = _setup("cnn", S=3)
    H = losses.hessian("cnn", td.X, td.y, td.W_star.unsqueeze(1), td.K)[:, 0]
    assert torch.allclose(eta, 1.0 / torch.linalg.eigvalsh(H)[:, -1])
    assert torch.allclose(gd.step_sizes(td, eta=0.5), torch.full((3,), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError):
        gd.step_sizes(td, eta=-1.0)


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_fused_kernel_and_eager_ops_agree(kind, monkeypatch):
    from curvlab.recovery import fused

    if fused.kernel() is None:
        pytest.skip("fused kernel unavailable here (no g++): the eager path is what runs")
    td, W0, eta = _setup(kind, n=500)
    a = gd.run_gd(td, W0, eta, max_iter=50, tol=0.0, block_elements=3000)
    monkeypatch.setenv("CURVLAB_NO_FUSED", "1")
    assert fused.kernel() is None
    b = gd.run_gd(td, W0, eta, max_iter=50, tol=0.0, block_elements=3000)
    assert torch.allclose(a.W, b.W, rtol=1e-12, atol=1e-14)
    assert torch.allclose(a.grad_norm, b.grad_norm, rtol=1e-9)
