"""What Lightning adds to an RSC GD step: ``RSCModule`` through a Lightning Trainer (CSV logger, no
progress bar, as a sweep job runs) against a bare loop doing the same math (fused loss, gradient and
g_bar pass, the logged norms and cosine, SGD update), on the Fig. 1 MLP (d = 784, n = 512, fp32).
Per-step times are medians over interleaved rounds (bare, Lightning, bare, ...); a round times
``--steps`` steps after the Trainer has started (its set-up is not a step's cost). Lightning's own
per-step cost, a module whose step only calls ``opt.step()``, is printed as the floor of the ratio.

Usage: python bench/bench_step_overhead.py [--widths 64 256] [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import statistics
import tempfile
import time

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from curvlab.rsc.gbar import fused_grads
from curvlab.rsc.module import RSCModule
from curvlab.run.loaders import full_batch_loader
from timing import bench_args, fig1_workload


def bare_step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.SGD(model.params(), lr=8.0)
    t0 = time.perf_counter()
    for _ in range(steps):
        fused = fused_grads(model, x, y)
        fused.step_metrics()
        for p, grad in zip(model.params(), fused.grad):
            p.grad = grad
        opt.step()
    return (time.perf_counter() - t0) / steps


class _StepClock(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, module):
        self.seconds = (time.perf_counter() - self.t0) / trainer.global_step


class _EmptyStep(L.LightningModule):
    """Lightning's own per-step cost: a manual-optimization step that only calls ``opt.step()``."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.w = torch.nn.Parameter(torch.zeros(1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.w], lr=1.0)

    def train_dataloader(self):
        return full_batch_loader()

    def training_step(self, batch, batch_idx) -> None:
        self.w.grad = torch.zeros_like(self.w)
        self.optimizers().step()


def fit_step_seconds(module: L.LightningModule, steps: int) -> float:
    """Seconds per step of ``module`` through a Trainer set up as a sweep job's (CSV logger, no bar)."""
    clock = _StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        L.Trainer(max_steps=steps, logger=CSVLogger(tmp, name="", version=""), callbacks=[clock], devices=1,
                  accelerator="cpu", log_every_n_steps=1, enable_checkpointing=False, enable_model_summary=False,
                  enable_progress_bar=False, limit_val_batches=0, num_sanity_val_steps=0).fit(module)
    return clock.seconds


def lightning_step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    module = RSCModule(model, x, y, lambda ps: torch.optim.SGD(ps, lr=8.0), loss_tol=0.0, diverge_loss=1e4)
    return fit_step_seconds(module, steps)


def main() -> None:
    args = bench_args(__doc__, repeats=5, widths=[64, 256], steps=200)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {args.n}, d = 784, depth 3, fp32")
    empty = statistics.median(fit_step_seconds(_EmptyStep(), args.steps) for _ in range(args.repeats + 1))
    print(f"Lightning's own cost per step (empty training_step calling opt.step()): {empty * 1e3:.3f} ms")
    print(f"{'width':>6} {'bare':>10} {'Lightning':>10} {'Lightning/bare':>15} {'empty step/bare':>16}")
    for m in args.widths:
        x, y, model = fig1_workload(args.n, m)
        times: dict[str, list[float]] = {"bare": [], "lightning": []}
        for _ in range(args.repeats + 1):  # the first round warms up
            times["bare"].append(bare_step_seconds(model, x, y, args.steps))
            times["lightning"].append(lightning_step_seconds(model, x, y, args.steps))
        bare, lit = (statistics.median(v[1:]) for v in times.values())
        print(f"{m:>6} {bare * 1e3:>8.2f}ms {lit * 1e3:>8.2f}ms {lit / bare:>15.3f} {empty / bare:>16.3f}")


if __name__ == "__main__":
    main()
