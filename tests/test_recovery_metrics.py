"""SD_n, success, permutation-aligned error and the fitted contraction factor on hand-made cases."""

import math

import torch

from curvlab.recovery import metrics


def test_sd_identical_outputs_is_zero_and_success():
    W = torch.randn(1, 3, 4, dtype=torch.float64).expand(3, 20, 3, 4).clone()
    sd = metrics.sd_n(W)
    assert torch.equal(sd, torch.zeros(3, dtype=torch.float64))
    assert metrics.success(sd, 1e-14).all()


def test_sd_value_and_threshold():
    W = torch.zeros(1, 2, 3, dtype=torch.float64)
    W[0, 1, 0] = 2.0  # two points at distance 2: SD = sqrt(mean(1, 1)) = 1
    assert math.isclose(metrics.sd_n(W).item(), 1.0)
    assert not metrics.success(metrics.sd_n(W), 1e-4).any()
    assert not metrics.success(torch.tensor([float("nan")]), 1e-4).any()


def test_permuted_fcn_solution_has_zero_error_after_alignment():
    g = torch.Generator().manual_seed(0)
    W_star = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    W_hat = torch.stack([W_star[:, :, [2, 0, 1]], W_star[:, :, [1, 0, 2]], W_star], 1)  # (2, 3, 6, 3)
    assert metrics.normalized_error("fcn", W_hat, W_star).abs().max() < 1e-30
    assert metrics.normalized_error("fcn", W_hat, W_star, align=False).max() > 0.1
    # SD of permuted copies after alignment is zero as well
    assert metrics.sd_n(metrics.align_columns(W_hat, W_star)).max() < 1e-15


def test_normalized_error_value():
    W_star = torch.ones(1, 4, dtype=torch.float64)  # CNN: ||w*||^2 = 4
    W_hat = torch.ones(1, 2, 4, dtype=torch.float64)
    W_hat[0, 0, 0] += 1.0  # squared errors 1 and 0 -> mean 0.5, / 4
    assert math.isclose(metrics.normalized_error("cnn", W_hat, W_star).item(), 0.125)


def test_alignment_large_K_uses_assignment():
    g = torch.Generator().manual_seed(1)
    W_star = torch.randn(1, 10, 8, generator=g, dtype=torch.float64)
    perm = torch.randperm(8, generator=g)
    W_hat = W_star[:, :, perm].unsqueeze(1) + 1e-3
    assert torch.allclose(metrics.align_columns(W_hat, W_star)[:, 0], W_star + 1e-3)


def test_contraction_factor_recovers_a_geometric_rate():
    T = 200
    t = torch.arange(T + 1, dtype=torch.float64)
    hist = torch.full((T + 1, 1, 2), float("nan"))
    hist[:, 0, 0] = (3.0 * 0.9**t).float()
    hist[:121, 0, 1] = (1.0 * 0.97 ** t[:121]).float()
    iters = torch.tensor([[T, 120]])
    q = metrics.contraction_factor(hist, iters)
    assert abs(q[0, 0] - 0.9) < 1e-4 and abs(q[0, 1] - 0.97) < 1e-4
