"""``RSCModule``: full-batch GD (RSC paper, Section 6 / Figure 1), or any optimizer on mini-batches,
on the deep MLP or any model of the ``model`` group.

Every step logs, at the iterate theta_t before its update and on the full training set: the loss
(``loss`` group), ||grad L||, ||g_bar_t|| (Theorem 5.1; Definition C.1 for k outputs) and
cos(-grad L, g_bar_t). Both gradients come from one fused backward pass (:mod:`curvlab.rsc.gbar`).
Full-batch GD (``data.batch_size`` null; plain ``torch.optim.SGD``) applies that loss gradient; with
``data.batch_size`` set, the optimizer of the ``optimizer`` group (SGD with momentum, Adam, ...)
steps on shuffled mini-batches through Lightning's automatic optimization. Stops when the loss is below
``loss_tol`` (converged), at ``trainer.max_steps`` (completed), or on NaN/inf/blow-up (diverged);
a callback that ends training earlier leaves it ``stopped`` (:attr:`RSCModule.status`). With
``optimizer.lr=auto`` the step is omega / beta_0 (:func:`auto_lr`; beta0 and lr go to the summary).

The geometry checks run in :class:`curvlab.rsc.callback.GeometryCallback`, which measures the
iterate of :meth:`RSCModule.check_context` and adds its values to the step's :attr:`row`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from curvlab.geometry.spectral import loss_hessian_extremes
from curvlab.rsc.callback import GeometryCallback
from curvlab.rsc.checks import CheckContext
from curvlab.rsc.data import load_images
from curvlab.rsc.gbar import FusedGrads, functional, fused_grads
from curvlab.rsc.init import normal_init, rsc_init
from curvlab.rsc.losses import LOSSES, Loss, square_loss
from curvlab.run.instantiate import safe_instantiate
from curvlab.run.loaders import full_batch_loader, minibatch_loader
from curvlab.run.loggers import log_row, row_due
from curvlab.run.store import COMPLETED, CONVERGED, DIVERGED, STOPPED
from curvlab.run.values import resolve_dtype

OptimizerFactory = Callable[..., torch.optim.Optimizer]
NOT_NET_KEYS = ("module", "allow_nonsmooth")  # model keys that are not the network's arguments
NOT_OPTIMIZER_KEYS = ("omega",)  # optimizer keys that set the step size instead of reaching the optimizer


def is_diverged(loss: float, bound: float) -> bool:
    """A loss that is NaN/inf or above ``bound`` marks the run diverged."""
    return not math.isfinite(loss) or loss > bound


class RSCModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizer: OptimizerFactory,
        loss_tol: float,
        diverge_loss: float,
        loss: Loss = square_loss,
        step_size: dict[str, float] | None = None,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        self.automatic_optimization = batch_size is not None  # full-batch GD applies its fused gradient
        self.model = model
        self.register_buffer("x", x)
        self.register_buffer("y", y)
        self.optimizer = optimizer
        self._params = functional(model).params()
        self.loss_tol, self.diverge_loss = loss_tol, diverge_loss
        self.loss = loss
        self.step_size = step_size or {}  # how lr=auto chose the step (beta0, lr), for the summary
        self.row: dict[str, float] = {}  # what callbacks measured at this step's iterate, for its history row
        self.diverged = self.converged = False
        self.last_good_step = -1
        self.min_gbar = math.inf
        self.final_loss = math.nan
        self._max_steps = -1
        self._theta0: list[torch.Tensor] | None = None
        self._fused: tuple[int, FusedGrads] | None = None  # (step, fused pass at that step's iterate)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.params())

    def train_dataloader(self) -> DataLoader:
        """Full batch (the data stay on the module), or seeded shuffled mini-batches of ``batch_size``."""
        if self.batch_size is None:
            return full_batch_loader()
        return minibatch_loader(self.x, self.y, self.batch_size, self.seed)

    def params(self) -> list[nn.Parameter]:
        """theta's blocks in order (the paper's for DeepMLP), the parameters GD updates."""
        return self._params

    @property
    def lr(self) -> float:
        return float(self.optimizers().param_groups[0]["lr"])

    @property
    def status(self) -> str:
        """The run's status, decided here only (see :mod:`curvlab.run.store`)."""
        if self.diverged:
            return DIVERGED
        if self.converged:
            return CONVERGED
        started = self._theta0 is not None
        return COMPLETED if started and self.global_step >= self._max_steps else STOPPED

    def on_train_start(self) -> None:
        self._max_steps = self.trainer.max_steps
        self._theta0 = [p.detach().clone() for p in self.params()]

    def _fused_at(self, step: int) -> FusedGrads:
        """Loss, gradient and g_bar at the current iterate, computed once per step."""
        if self._fused is None or self._fused[0] != step:
            self._fused = (step, fused_grads(self.model, self.x, self.y, self.loss))
        return self._fused[1]

    def check_context(self, final: bool) -> CheckContext | None:
        """The iterate the current step starts from (``final``: the last one), or None once the run
        has diverged or before it started."""
        if self._theta0 is None or self.diverged:
            return None
        step = self.global_step
        fused = fused_grads(self.model, self.x, self.y, self.loss) if final else self._fused_at(step)
        if not final and is_diverged(fused.loss.item(), self.diverge_loss):
            return None
        return CheckContext(self.model, self.x, self.y, step, fused, self._theta0, self.lr, final, self.loss)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """Log theta_t's metrics on the full training set, then update: GD applies the fused full-batch
        gradient; with mini-batches the batch loss goes to Lightning's automatic optimization."""
        fused = self._fused_at(self.global_step)
        if not self._record(fused):
            return None
        if self.batch_size is None:
            opt = self.optimizers()
            for p, g in zip(self.params(), fused.grad):
                p.grad = g
            opt.step()
            return None
        xb, yb = batch
        return self.loss(self.model(xb), yb)

    def _record(self, fused: FusedGrads) -> bool:
        """Log the step's row; False once the run stops here (diverged, or converged before updating)."""
        step = self.global_step
        metrics = fused.step_metrics()
        loss = self.final_loss = metrics["loss"]
        if self.trainer.progress_bar_callback is not None:  # Lightning's logging costs ~1.8 ms a step
            self.log_dict({"L": loss, "gbar": metrics["gbar_norm"]}, on_step=True, on_epoch=False, prog_bar=True,
                          logger=False)
        if is_diverged(loss, self.diverge_loss):  # logged, so the history shows where it blew up
            self.diverged = True
            self.trainer.should_stop = True
            log_row(self, metrics, step)
            return False
        self.min_gbar = min(self.min_gbar, metrics["gbar_norm"])
        self.last_good_step = step
        if self.row or row_due(self, step):
            log_row(self, {**metrics, **self.row}, step)
            self.row = {}
        if loss < self.loss_tol:
            self.converged = True
            self.trainer.should_stop = True
            return False
        return True

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "steps": self.global_step,
            "last_good_step": self.last_good_step,
            "final_loss": self.final_loss,
            "min_gbar_norm": self.min_gbar,
            **self.step_size,
            "final_checks": {},  # the GeometryCallback's summary replaces it when checks ran
        }


def auto_lr(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss, omega: float) -> dict[str, float]:
    """Lemma 5.2's step eta = omega / beta with beta_0 = lambda_max of the loss Hessian at theta_0
    (Lanczos to 1e-4): {"beta0", "lr"}."""
    fm = functional(model)
    top, _ = loss_hessian_extremes(fm.loss_fn(loss, x, y), fm.theta(), with_min=False, tol=1e-4, maxiter=1000)
    if not (math.isfinite(top.value) and top.value > 0):
        raise RuntimeError(f"optimizer.lr=auto: lambda_max of the loss Hessian at theta_0 is {top.value:g}, "
                           "not a positive number; set optimizer.lr to a number")
    return {"beta0": top.value, "lr": omega / top.value}


def build(cfg: DictConfig) -> tuple[RSCModule, list[L.Callback]]:
    """Data, model, init and optimizer of the RSC setting from the composed config, and the
    geometry checks of its ``checks`` group as a callback."""
    dtype = resolve_dtype(cfg.dtype)
    dc = cfg.data
    data = load_images(dc.name, dc.n, dc.seed, dc.target, dc.root, dc.download,
                       duplicates=dc.duplicates, duplicate_noise=dc.duplicate_noise)
    x, y = data.x.to(dtype), data.y.to(dtype)
    net = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k not in NOT_NET_KEYS}
    model = safe_instantiate(net, base=nn.Module)(in_dim=x.shape[1], out_dim=y.shape[1]).to(dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.init.name == "rsc":
        rsc_init(model, cfg.init.sigma1, gen)
    elif cfg.init.name == "gaussian":
        normal_init(model, cfg.init.std, gen)  # "torch": the module's own init, seeded by seed_everything
    loss = LOSSES[cfg.loss.name]
    opt = {k: v for k, v in OmegaConf.to_container(cfg.optimizer, resolve=True).items() if k not in NOT_OPTIMIZER_KEYS}
    step_size = {}
    if opt["lr"] == "auto":
        step_size = auto_lr(model, x, y, loss, cfg.optimizer.omega)
        opt["lr"] = step_size["lr"]
    optimizer = safe_instantiate(opt, base=torch.optim.Optimizer)
    module = RSCModule(model, x, y, optimizer, loss_tol=cfg.trainer.loss_tol, diverge_loss=cfg.trainer.diverge_loss,
                       loss=loss, step_size=step_size, batch_size=dc.batch_size, seed=cfg.seed)
    gc = cfg.geometry
    callbacks: list[L.Callback] = ([GeometryCallback(dict(cfg.checks), gc.budget, gc.subset, gc.subset_seed)]
                                   if cfg.get("checks") else [])
    return module, callbacks
