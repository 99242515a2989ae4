"""Cost of tracking g_bar_t = (1/n) sum_i grad_theta f(theta_t; x_i) next to the GD gradient.

Times, on the RSC Figure 1 workload (3-layer tanh MLP, d = 784, n = 512, fp32, k = 1):
  grad only   - loss gradient alone (our closed-form backprop, one cotangent)
  autograd    - loss gradient by loss.backward()
  two-pass    - autograd loss gradient + a second backward for g_bar (what a naive run does)
  fused       - loss gradient and g_bar from one fused backward (curvlab.rsc.gbar)
and prints the ratios measured in this run. Usage: python bench/bench_gbar.py [--widths ...] [--threads 1]
"""

from __future__ import annotations

import torch

from curvlab.rsc.gbar import backprop, forward_cache, loss_grad_and_gbar
from curvlab.rsc.losses import square_loss
from timing import bench_args, fig1_workload, median_seconds


def main() -> None:
    args = bench_args(__doc__, repeats=21, threads=None, widths=[256, 512, 1024])
    x, y, _ = fig1_workload(args.n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {args.n}, d = 784, depth 3, fp32")
    print(f"{'width':>6} {'grad only':>10} {'autograd':>10} {'two-pass':>10} {'fused':>10}"
          f" {'fused/grad':>11} {'two-pass/autograd':>18} {'two-pass/fused':>15}")
    for m in args.widths:
        _, _, model = fig1_workload(args.n, m)
        params = model.params()

        def grad_only():
            with torch.no_grad():
                cache = forward_cache(model, x)
                backprop(model, cache, (2.0 * (cache.out - y) / args.n)[None])

        def autograd():
            torch.autograd.grad(square_loss(model(x), y), params)

        def two_pass():
            out = model(x)
            torch.autograd.grad(square_loss(out, y), params, retain_graph=True)
            torch.autograd.grad(out.mean(), params)

        def fused():
            loss_grad_and_gbar(model, x, y)

        t = median_seconds({"grad": grad_only, "auto": autograd, "two": two_pass, "fused": fused}, args.repeats)
        print(f"{m:>6} {t['grad'] * 1e3:>8.1f}ms {t['auto'] * 1e3:>8.1f}ms {t['two'] * 1e3:>8.1f}ms"
              f" {t['fused'] * 1e3:>8.1f}ms {t['fused'] / t['grad']:>11.2f} {t['two'] / t['auto']:>18.2f}"
              f" {t['two'] / t['fused']:>15.2f}")


if __name__ == "__main__":
    main()
