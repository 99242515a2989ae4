"""The model-agnostic engine (curvlab.geometry on torch.func): against the DeepMLP closed forms, and
its implementation choices against their alternatives. Ratios are measured in this run, in
interleaved rounds (d = 784, n = 512, fp32, k = 1).

  gbar:        loss gradient + g_bar, generic (one forward, two VJPs) vs the closed form
               (curvlab.rsc.gbar) on the RSC Figure 1 MLP
  cotangents:  the generic one's two VJPs in a row vs one vmap of the VJP over both cotangents, on
               the MLP, the conv net and the ResNet of the model group
  hvp:         one loss-Hessian-vector product in each mode of curvlab.geometry.spectral.HVP_MODES
               (reverse-over-reverse, forward-over-reverse, the traced linearization) on the same
               models, and what tracing the linearization costs once

Usage: python bench/bench_engine.py [--widths 512 1024] [--threads 1]
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.func import grad, vjp, vmap

from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.gradients import loss_grad_and_gbar
from curvlab.geometry.spectral import HVP_MODES, hvp_operator
from curvlab.rsc import gbar as closed_form
from curvlab.rsc.losses import square_loss
from curvlab.rsc.nets import ConvNet, ResNet
from timing import bench_args, fig1_workload, median_seconds


def batched_vjp(fm: FunctionalModel, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The alternative to the engine's two VJPs: one ``vmap`` of the VJP over the stacked cotangents."""
    out, vjp_fn = vjp(lambda th: fm(th, x), theta)
    out = out.detach()
    c = grad(lambda o: square_loss(o, y))(out)
    return vmap(vjp_fn)(torch.stack([c, torch.full_like(c, 1.0 / out.numel())]))[0]


def gbar_rows(x: torch.Tensor, y: torch.Tensor, widths: list[int], n: int, repeats: int) -> None:
    print(f"{'width':>6} {'closed form':>12} {'generic':>10} {'generic/closed':>15}")
    for m in widths:
        _, _, model = fig1_workload(n, m)
        fm = FunctionalModel.of(model, model.params())
        theta = fm.theta()
        t = median_seconds({
            "closed": lambda: closed_form.loss_grad_and_gbar(model, x, y),
            "generic": lambda: loss_grad_and_gbar(fm, theta, x, y, square_loss),
        }, repeats)
        print(f"{m:>6} {t['closed'] * 1e3:>10.1f}ms {t['generic'] * 1e3:>8.1f}ms {t['generic'] / t['closed']:>15.2f}")


def engine_rows(x: torch.Tensor, y: torch.Tensor, models: dict[str, tuple[nn.Module, list | None]], repeats: int) -> None:
    modes = " ".join(f"{'hvp ' + mode:>14}" for mode in HVP_MODES)
    print(f"{'model':>12} {'p':>8} {'2 VJPs':>9} {'vmap VJP':>9} {'vmap/2':>7} {modes} {'trace':>7} {'fwd/rev':>8} {'lin/rev':>8}")
    for name, (module, params) in models.items():
        fm = FunctionalModel.of(module, params)
        theta = fm.theta()
        loss = fm.loss_fn(square_loss, x, y)
        v = torch.randn_like(theta)
        t0 = time.perf_counter()
        ops = {mode: hvp_operator(loss, theta, mode) for mode in HVP_MODES}
        traced = time.perf_counter() - t0
        t = median_seconds({
            "seq": lambda: loss_grad_and_gbar(fm, theta, x, y, square_loss),
            "vmap": lambda: batched_vjp(fm, theta, x, y),
            **{mode: (lambda op=op: op(v)) for mode, op in ops.items()},
        }, repeats)
        hvps = " ".join(f"{t[mode] * 1e3:>12.1f}ms" for mode in HVP_MODES)
        print(f"{name:>12} {theta.numel():>8} {t['seq'] * 1e3:>7.1f}ms {t['vmap'] * 1e3:>7.1f}ms {t['vmap'] / t['seq']:>7.2f}"
              f" {hvps} {traced:>6.2f}s {t['forward'] / t['reverse']:>8.2f} {t['linearize'] / t['reverse']:>8.2f}")


def main() -> None:
    args = bench_args(__doc__, repeats=7, widths=[512, 1024], conv_width=16, resnet_width=8)
    x, y, mlp = fig1_workload(args.n, args.widths[0])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {args.n}, d = 784, fp32")
    gbar_rows(x, y, args.widths, args.n, args.repeats)
    torch.manual_seed(0)
    engine_rows(x, y, {
        f"mlp m={args.widths[0]}": (mlp, mlp.params()),
        f"convnet {args.conv_width}": (ConvNet(784, args.conv_width, 1), None),
        f"resnet {args.resnet_width}": (ResNet(784, args.resnet_width, 1), None),
    }, max(3, args.repeats // 2))


if __name__ == "__main__":
    main()
