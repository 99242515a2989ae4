"""``RSCModule``: full-batch GD on the deep MLP (RSC paper, Section 6 / Figure 1).

Every step logs, at the iterate theta_t before its update: the square loss, ||grad L||,
||g_bar_t|| (Theorem 5.1; Definition C.1 for k outputs) and cos(-grad L, g_bar_t). Both gradients
come from one fused backward pass (:mod:`curvlab.mlp_grads`). Stops when the loss is below
``loss_tol`` (converged), at ``max_steps`` (completed), or on NaN/inf/blow-up (diverged);
a callback that ends training earlier leaves it ``stopped``.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from curvlab.checks import CheckRunner, build_checks
from curvlab.data.images import load_images
from curvlab.geometry_checks import CheckContext
from curvlab.init import gaussian_init, rsc_init
from curvlab.lit.common import is_diverged, log_row, resolve_dtype
from curvlab.mlp_grads import FusedGrads, loss_grad_and_gbar
from curvlab.models import DeepMLP


def _norm(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum(t.pow(2).sum() for t in ts))


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((u * v).sum() for u, v in zip(a, b))


class RSCModule(L.LightningModule):
    def __init__(
        self,
        model: DeepMLP,
        x: torch.Tensor,
        y: torch.Tensor,
        lr: float,
        loss_tol: float,
        diverge_loss: float,
        checks: CheckRunner | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.register_buffer("x", x)
        self.register_buffer("y", y)
        self.lr, self.loss_tol, self.diverge_loss = lr, loss_tol, diverge_loss
        self.checks = checks
        self.status = "running"
        self.last_good_step = -1
        self.min_gbar = math.inf
        self.final_loss = math.nan
        self.final_checks: dict[str, float] = {}
        self._theta0: list[torch.Tensor] | None = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.params(), lr=self.lr)  # plain GD: full batch, no momentum

    def _context(self, step: int, fused: FusedGrads, final: bool) -> CheckContext:
        return CheckContext(self.model, self.x, self.y, step, fused, self._theta0, self.lr, final)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        step = self.global_step
        if self._theta0 is None:
            self._theta0 = [p.detach().clone() for p in self.model.params()]
        fused = loss_grad_and_gbar(self.model, self.x, self.y)
        loss = fused.loss.item()
        self.final_loss = loss
        grad_norm, gbar_norm = _norm(fused.grad), _norm(fused.gbar)
        cos = -_dot(fused.grad, fused.gbar) / (grad_norm * gbar_norm).clamp_min(1e-30)
        metrics = {"loss": fused.loss, "grad_norm": grad_norm, "gbar_norm": gbar_norm, "cos_neg_grad_gbar": cos}
        self.log_dict({"L": fused.loss, "gbar": gbar_norm}, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        if is_diverged(loss, self.diverge_loss):  # logged, so the history shows where it blew up
            self.status = "diverged"
            self.trainer.should_stop = True
            log_row(self, metrics, step)
            return
        self.min_gbar = min(self.min_gbar, gbar_norm.item())
        self.last_good_step = step
        if self.checks is not None:
            metrics.update(self.checks.run(self._context(step, fused, final=False)))
        log_row(self, metrics, step)
        if loss < self.loss_tol:
            self.status = "converged"
            self.trainer.should_stop = True
            return
        opt = self.optimizers()
        for p, g in zip(self.model.params(), fused.grad):
            p.grad = g
        opt.step()

    def on_train_end(self) -> None:
        if self.status == "running" and self.global_step >= self.trainer.max_steps:
            self.status = "completed"  # else a callback (e.g. a Timer) ended it early: summary() says stopped
        if self.checks is not None and self.status != "diverged" and self._theta0 is not None:
            fused = loss_grad_and_gbar(self.model, self.x, self.y)
            self.final_checks = self.checks.run(self._context(self.global_step, fused, final=True))
            log_row(self, self.final_checks, self.global_step)

    def summary(self) -> dict[str, Any]:
        out = {
            "status": "stopped" if self.status == "running" else self.status,  # a callback ended fit early,
            # before or during training (on_train_end does not run when a callback stops fit at its start)
            "steps": self.global_step,
            "last_good_step": self.last_good_step,
            "final_loss": self.final_loss,
            "min_gbar_norm": self.min_gbar,
            "final_checks": self.final_checks,
        }
        if self.checks is not None:
            out["check_seconds"] = self.checks.total_seconds
            out["check_failures"] = self.checks.failures
        return out


def build(cfg: DictConfig) -> RSCModule:
    """Model, init and data of the RSC setting from the composed config."""
    dtype = resolve_dtype(cfg.dtype)
    data = load_images(
        cfg.data.name, cfg.data.n, cfg.data.seed, cfg.data.target, cfg.data.root, cfg.data.download,
        duplicates=cfg.data.get("duplicates", 0.0), duplicate_noise=cfg.data.get("duplicate_noise", 0.0),
    )
    x, y = data.x.to(dtype), data.y.to(dtype)
    model = DeepMLP(x.shape[1], cfg.model.width, cfg.model.depth, y.shape[1], cfg.model.activation).to(dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.init.name == "rsc":
        rsc_init(model, cfg.init.sigma1, gen)
    else:  # gaussian (config_checks.validate allows no other)
        gaussian_init(model, cfg.init.std, gen)
    return RSCModule(
        model, x, y,
        lr=cfg.optimizer.lr,
        loss_tol=cfg.optimizer.loss_tol,
        diverge_loss=cfg.optimizer.diverge_loss,
        checks=build_checks(cfg.get("checks")),
    )
