"""Loss-Hessian lambda_max: curvlab's engine (HVPs + ARPACK) against curvlinops'
HessianLinearOperator + scipy eigsh at the same tolerance, on the RSC MLP and the conv net of
``model=convnet`` (d = 784, n = 512, fp32, k = 1), curvlab in its ``reverse`` (default) and
``linearize`` HVP modes (the time of ``linearize`` includes its trace). Ratios are measured in this
run, interleaved.

Usage: python bench/bench_vs_curvlinops.py [--width 512] [--conv-width 16] [--threads 1]
"""

from __future__ import annotations

import numpy as np
import torch
from curvlinops import HessianLinearOperator
from scipy.sparse.linalg import eigsh
from torch import nn

from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.spectral import loss_hessian_extremes
from curvlab.rsc.losses import square_loss
from curvlab.rsc.nets import ConvNet
from timing import bench_args, fig1_workload, median_seconds

TOL = 1e-3


def _curvlinops_lambda_max(module: nn.Module, params: list, x: torch.Tensor, y: torch.Tensor) -> float:
    H = HessianLinearOperator(module, nn.MSELoss(), params, [(x, y)], check_deterministic=False).to_scipy()
    v0 = np.random.default_rng(0).standard_normal(H.shape[0]).astype(np.float32)
    return float(eigsh(H, k=1, which="LA", tol=TOL, ncv=12, maxiter=300, v0=v0)[0][0])


def main() -> None:
    args = bench_args(__doc__, repeats=3, width=512, conv_width=16)
    x, y, mlp = fig1_workload(args.n, args.width)
    conv = ConvNet(784, args.conv_width, 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {args.n}, fp32, tol {TOL}")
    print(f"{'model':>10} {'p':>9} {'reverse':>9} {'linearize':>10} {'curvlinops':>11} {'/reverse':>9}"
          f" {'/linearize':>11} {'lambda_max (curvlab, curvlinops)':>33}")
    for name, module, params in (("mlp", mlp, mlp.params()), ("convnet", conv, list(conv.parameters()))):
        fm = FunctionalModel.of(module, params)
        theta, loss = fm.theta(), fm.loss_fn(square_loss, x, y)

        def ours(mode: str) -> float:
            return loss_hessian_extremes(loss, theta, with_min=False, hvp_mode=mode, tol=TOL, ncv=12, maxiter=300)[0].value

        theirs = lambda: _curvlinops_lambda_max(module, params, x, y)  # noqa: E731
        t = median_seconds({"reverse": lambda: ours("reverse"), "linearize": lambda: ours("linearize"),
                            "theirs": theirs}, args.repeats)
        print(f"{name:>10} {theta.numel():>9} {t['reverse']:>8.2f}s {t['linearize']:>9.2f}s {t['theirs']:>10.2f}s"
              f" {t['theirs'] / t['reverse']:>9.2f} {t['theirs'] / t['linearize']:>11.2f}"
              f" {ours('reverse'):>16.5g} {theirs():>16.5g}")


if __name__ == "__main__":
    main()
