"""Cross-library check: the loss-Hessian lambda_max and trace of curvlab's engine against
curvlinops' HessianLinearOperator (a dev dependency), on the paper's MLP and a small conv net."""

from __future__ import annotations

import curvlinops
import pytest
import torch
from geometry_helpers import tiny
from test_geometry_engine import convnet
from torch import nn

from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.spectral import hvp_operator, loss_hessian_extremes
from curvlab.geometry.trace import hutchpp_trace
from curvlab.rsc.losses import square_loss


def _models():
    mlp, x, y = tiny(k=1, n=9, depth=2)
    net, xc, yc = convnet(k=1)
    return [("mlp", mlp, mlp.params(), x, y), ("convnet", net, list(net.parameters()), xc, yc)]


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_lambda_max_and_trace_agree_with_curvlinops(name):
    _, module, params, x, y = next(m for m in _models() if m[0] == name)
    # k = 1: curvlab's square loss (1/n) sum_i (f_i - y_i)^2 is MSELoss with mean reduction
    H = curvlinops.HessianLinearOperator(module, nn.MSELoss(), params, [(x, y)])
    p = sum(q.numel() for q in params)
    dense = H @ torch.eye(p, dtype=torch.float64)
    ref_max, ref_trace = float(torch.linalg.eigvalsh(0.5 * (dense + dense.T))[-1]), float(dense.trace())
    fm = FunctionalModel.of(module, params)
    theta, loss = fm.theta(), fm.loss_fn(square_loss, x, y)
    top, _ = loss_hessian_extremes(loss, theta, with_min=False, tol=1e-12, maxiter=3000, ncv=20)
    assert top.value == pytest.approx(ref_max, rel=1e-9)
    exact = hutchpp_trace(hvp_operator(loss, theta), p, theta, matvecs=3 * p)  # the sketch spans R^p: exact
    assert exact == pytest.approx(ref_trace, rel=1e-9)
