"""``RecoveryModule``: the recovery paper's GD experiments at one (kind, d, K, n) grid point.

Each ``training_step`` is one batched GD iteration over all trials of the grid point (S training
sets x L initial points, :class:`curvlab.recovery.gd.BatchedGD`, the ``optimizer`` group) with
per-trial early stopping; training ends, inside ``fit``, at the step where no trial is left running:
the one after ``trainer.max_steps`` iterations (the paper's cap, 3500) at the latest, which only
evaluates the capped trials' final gradient norms. Lightning drives the steps so a recovery run has
the same loggers, progress display, callbacks and signal handling as an RSC run. Every
``logger.every_n_steps`` steps it logs the fraction of trials still running and the median gradient
norm among them; at the end it measures, per grid point: success rate (SD_n <= threshold over the
inits of a set), normalized error (FCN columns aligned by the best permutation), iterations used,
fraction converged, the fitted linear contraction factor, and the ``measures`` group's Hessian
eigenvalues. All of it goes into the run's summary (:mod:`curvlab.run.store`). Data and initial
points are generated on the CPU (seeded: the same on every device) and moved to the module's device
when fit starts; GD and the measurements run there.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from curvlab.recovery import metrics
from curvlab.recovery.gd import STATUS_CAPPED, STATUS_CONVERGED, STATUS_DIVERGED, BatchedGD, GDResult
from curvlab.recovery.init import gaussian_init, local_init
from curvlab.recovery.measures import MEASURES, measure_specs
from curvlab.recovery.teacher import TeacherData, sample_teacher
from curvlab.recovery.tensor_init import tensor_init
from curvlab.run.instantiate import safe_instantiate
from curvlab.run.loaders import full_batch_loader
from curvlab.run.loggers import log_row, row_due
from curvlab.run.store import COMPLETED, DIVERGED, STOPPED
from curvlab.run.values import resolve_dtype

warnings.filterwarnings("ignore", message=r".*configure_optimizers.* returned .None.*")

GDFactory = Callable[..., BatchedGD]



class RecoveryModule(L.LightningModule):
    def __init__(
        self,
        data: TeacherData,
        W0: torch.Tensor,
        optimizer: GDFactory,
        max_steps: int,
        threshold: float,
        stop: dict[str, Any] | None = None,
        measures: dict[str, dict[str, Any]] | None = None,
        init_name: str = "local",
        seed: int = 0,
        setup_seconds: float = 0.0,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.data, self.W0 = data, W0
        self.optimizer = optimizer
        self.max_steps, self.threshold = max_steps, threshold
        self.stop = dict(stop or {})
        self.measures = dict(measures or {})
        self.init_name, self.seed = init_name, seed
        self.setup_seconds = setup_seconds
        self.gd: BatchedGD | None = None
        self.all_diverged = False  # every trial diverged: the grid point measures nothing
        self._t_gd = 0.0
        self._summary: dict[str, Any] = {}

    def configure_optimizers(self) -> None:
        return None  # GD updates are done by BatchedGD on its own packed tensors

    def train_dataloader(self) -> DataLoader:
        return full_batch_loader()  # the data stay on the module

    @property
    def status(self) -> str:
        """The run's status, decided here only (see :mod:`curvlab.run.store`)."""
        if self.gd is None or not self.gd.done:
            return STOPPED
        return DIVERGED if self.all_diverged else COMPLETED

    def on_fit_start(self) -> None:
        """Move data and initial points to the module's device (generated on the CPU, so a seed gives
        the same numbers on every device); Lightning has placed the module by now."""
        self.data, self.W0 = self.data.to(self.device), self.W0.to(self.device)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self.gd is None:
            self.gd = self.optimizer(self.data, self.W0, max_iter=self.max_steps, **self.stop)
        t0 = time.perf_counter()
        running = self.gd.step()
        self._t_gd += time.perf_counter() - t0
        step = self.gd.steps - 1  # the row describes the iterate this step started from
        due, bar = row_due(self, step), self.trainer.progress_bar_callback is not None
        if due or bar:
            row = self._row()
            if due:
                log_row(self, row, step)
            if bar:  # Lightning's logging costs ~2 ms a step: only for the progress display
                self.log_dict(row, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        if not running:
            self.trainer.should_stop = True

    def _row(self) -> dict[str, float]:
        """The fraction of trials still running and their median gradient norm."""
        g = self.gd.last_gn  # NaN at frozen slots
        frac = self.gd.running.float().mean().to(g.dtype)
        frac, g_med = torch.stack([frac, g.nanmedian() if g.numel() else frac.new_tensor(math.nan)]).tolist()
        return {"running_fraction": frac, "grad_norm_median": g_med}

    def on_train_end(self) -> None:
        if self.gd is None or not self.gd.done:
            return  # a callback ended training early: nothing is measured, the run is stopped
        self.gd.close()
        res = self.gd.result()
        self.all_diverged = bool((res.status == STATUS_DIVERGED).all())
        t1 = time.perf_counter()
        self._summary = self._measure(res)
        self._summary["measure_seconds"] = time.perf_counter() - t1
        flat = {k: v for k, v in self._summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        log_row(self, flat, self.gd.steps)

    def _measure(self, res: GDResult) -> dict[str, Any]:
        data = self.data
        kind, K = data.kind, data.K
        S, n, d = data.X.shape
        L_ = res.W.shape[1]
        W_hat = metrics.align_columns(res.W, data.W_star) if kind == "fcn" else res.W
        sd = metrics.sd_n(W_hat)
        ok = metrics.success(sd, self.threshold)
        err = metrics.normalized_error(kind, res.W, data.W_star)
        err0 = metrics.normalized_error(kind, self.W0, data.W_star)
        q = (metrics.contraction_factor(res.history, res.iters) if res.history is not None
             else torch.full((S, L_), math.nan, device=res.W.device))
        conv = res.status == STATUS_CONVERGED
        diverged = res.status == STATUS_DIVERGED
        out: dict[str, Any] = {
            "kind": kind, "d": d, "K": K, "n": n, "sets": S, "inits": L_, "init": self.init_name,
            "n_scaled": metrics.scaled_n(n, d),
            "threshold": self.threshold,
            # SD_n over a single init is 0 by definition: success needs >= 2 inits per set
            "success_rate": metrics.nanmean(ok.float()) if L_ > 1 else math.nan,
            "sd_median": float(sd.median()),
            "error_mean": metrics.nanmean(err),
            "error_std": float(err.std()) if S > 1 else 0.0,
            "error_median": float(err.median()),
            "init_error_mean": metrics.nanmean(err0),
            "init_error_median": float(err0.median()),
            "iters_mean": metrics.nanmean(res.iters.double()),
            "iters_max": int(res.iters.max()),
            "frac_converged": metrics.nanmean(conv.float()),
            "frac_capped": metrics.nanmean((res.status == STATUS_CAPPED).float()),
            "frac_diverged": metrics.nanmean(diverged.float()),
            "contraction_median": float(q[torch.isfinite(q)].median()) if torch.isfinite(q).any() else math.nan,
            "eta_mean": metrics.nanmean(self.gd.eta),
            "gd_steps": res.steps,
            "trial_steps": res.trial_steps,
            "gd_seconds": self._t_gd,
            "setup_seconds": self.setup_seconds,
            "per_set": {"sd": sd.tolist(), "success": ok.tolist(), "error": err.tolist(),
                        "init_error": err0.tolist()},
        }
        gen = torch.Generator().manual_seed(self.seed + 7919)
        for name, options in self.measures.items():
            values = MEASURES[name](data, W_hat, gen, **options)
            out["per_set"].update(values.pop("per_set", {}))
            out.update(values)
        return out

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, **self._summary}


def build(cfg: DictConfig) -> tuple[RecoveryModule, list[L.Callback]]:
    """Teacher data and initial points of one recovery grid point from the composed config
    (validated by :func:`curvlab.recovery.config.validate`)."""
    t0 = time.perf_counter()
    dtype = resolve_dtype(cfg.dtype)
    kind, K = cfg.model.name, int(cfg.model.K)
    dc = cfg.data
    data = sample_teacher(kind, int(dc.sets), int(dc.n), int(dc.d), K, seed=int(dc.seed), weights=dc.weights,
                          cond=dc.cond, scale=float(dc.scale), dtype=dtype)
    gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
    ic = cfg.init
    L_ = int(ic.inits)
    if ic.name == "local":
        W0 = local_init(data.W_star, L_, float(ic.radius), gen, ic.mode)
    elif ic.name == "gaussian":
        W0 = gaussian_init(data.W_star, L_, float(ic.std), gen)
    else:
        options = {k: v for k, v in OmegaConf.to_container(ic, resolve=True).items() if k not in ("name", "inits")}
        one = tensor_init(data, gen, **options)  # every option of the init config (TensorInitConfig) flows through
        W0 = one.unsqueeze(1).expand(-1, L_, *one.shape[1:]).clone()
    threshold = cfg.model.success_threshold
    threshold = float(threshold) if threshold is not None else metrics.SUCCESS_THRESHOLD[kind]
    tc = cfg.trainer
    stop = {"tol": float(tc.tol), "stall_patience": int(tc.stall_patience), "stall_tol": float(tc.stall_tol)}
    module = RecoveryModule(data, W0, safe_instantiate(cfg.optimizer, base=BatchedGD), max_steps=int(tc.max_steps),
                            threshold=threshold, stop=stop, measures=measure_specs(cfg.get("measures")),
                            init_name=ic.name, seed=int(cfg.seed), setup_seconds=time.perf_counter() - t0)
    return module, []
