"""The model-agnostic engine (curvlab.geometry on torch.func) against the DeepMLP closed forms, and
the two HVP modes against each other. Ratios are measured in this run, in interleaved rounds.

  gbar:  loss gradient + g_bar, generic (one forward, one batched VJP with two cotangents) vs
         the closed form (curvlab.rsc.gbar) on the RSC Figure 1 MLP (d = 784, n = 512, fp32, k = 1)
  hvp:   one loss-Hessian-vector product, reverse-over-reverse (vjp of grad, graph built once) vs
         forward-over-reverse (jvp of grad), on the same MLP

Usage: python bench/bench_engine.py [--widths 512 1024] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.gradients import loss_grad_and_gbar
from curvlab.geometry.spectral import hvp_operator
from curvlab.rsc import gbar as closed_form
from curvlab.rsc.model import square_loss
from timing import fig1_workload, median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y, _ = fig1_workload(args.n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {args.n}, d = 784, depth 3, fp32")
    print(f"{'width':>6} {'closed form':>12} {'generic':>10} {'generic/closed':>15}"
          f" {'hvp rev':>10} {'hvp fwd':>10} {'fwd/rev':>8}")
    for m in args.widths:
        _, _, model = fig1_workload(args.n, m)
        fm = FunctionalModel.of(model, model.params())
        theta = fm.theta()
        loss = fm.loss_fn(square_loss, x, y)
        v = torch.randn_like(theta)
        rev, fwd = hvp_operator(loss, theta, "reverse"), hvp_operator(loss, theta, "forward")
        t = median_seconds({
            "closed": lambda: closed_form.loss_grad_and_gbar(model, x, y),
            "generic": lambda: loss_grad_and_gbar(fm, theta, x, y, square_loss),
            "rev": lambda: rev(v),
            "fwd": lambda: fwd(v),
        }, args.repeats)
        print(f"{m:>6} {t['closed'] * 1e3:>10.1f}ms {t['generic'] * 1e3:>8.1f}ms {t['generic'] / t['closed']:>15.2f}"
              f" {t['rev'] * 1e3:>8.1f}ms {t['fwd'] * 1e3:>8.1f}ms {t['fwd'] / t['rev']:>8.2f}")


if __name__ == "__main__":
    main()
