"""``RecoveryModule``: the recovery paper's GD experiments at one (kind, d, K, n) grid point.

One ``training_step`` is one batched GD iteration over all trials of the grid point (S training sets
x L initial points, :class:`curvlab.recovery.gd.BatchedGD`); per-trial early stopping, so the run ends
when every trial has stopped or at ``optimizer.max_steps`` (the paper's iteration cap, 3500). Per step
it logs the fraction of trials still running and the median gradient norm among them; at the end it
measures, per grid point: success rate (SD_n <= threshold over the inits of a set), normalized error
(FCN columns aligned by the best permutation), iterations used, fraction converged, the fitted linear
contraction factor, and the Hessian eigenvalues of the setting (at W*, at W_hat, and the minimum over
points sampled in B(W*, r)). All of it goes into the run's summary (``curvlab.store``). Data, initial
points and step sizes are generated on the CPU (seeded: the same on every device) and moved to the
module's device when fit starts; GD and the measurements run there.

``RhoModule`` (``rho`` set in the config: experiment ``fig2_rho``) evaluates rho_FCN and rho_CNN on a
sigma grid in one step: Fig. 2 of the paper.
"""

from __future__ import annotations

import math
import warnings
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig

from curvlab.data.teacher import TeacherData, sample_teacher
from curvlab.lit.common import log_row, resolve_dtype
from curvlab.recovery import geometry, metrics
from curvlab.recovery.gd import STATUS_CAPPED, STATUS_CONVERGED, STATUS_DIVERGED, BatchedGD, step_sizes
from curvlab.recovery.init import gaussian_init, local_init
from curvlab.recovery.link import rho_cnn, rho_fcn
from curvlab.recovery.tensor_init import tensor_init

warnings.filterwarnings("ignore", message=r".*configure_optimizers.* returned .None.*")


def scaled_n(n: int, d: int) -> float:
    """The paper's x-axis n / (d log^2 d) (Theorem 1's sample complexity)."""
    return n / (d * math.log(d) ** 2)


def _mean(x: torch.Tensor) -> float:
    return metrics.nanmean(x.double().flatten())


class RecoveryModule(L.LightningModule):
    def __init__(
        self,
        data: TeacherData,
        W0: torch.Tensor,
        eta: torch.Tensor,
        max_steps: int,
        tol: float,
        threshold: float,
        gd_options: dict[str, Any] | None = None,
        geometry_options: dict[str, Any] | None = None,
        init_name: str = "local",
        seed: int = 0,
        setup_seconds: float = 0.0,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.data, self.W0, self.eta = data, W0, eta
        self.max_steps, self.tol, self.threshold = max_steps, tol, threshold
        self.gd_options = dict(gd_options or {})
        self.geometry_options = dict(geometry_options or {})
        self.init_name, self.seed = init_name, seed
        self.setup_seconds = setup_seconds
        self.gd: BatchedGD | None = None
        self._t_gd = 0.0
        self._summary: dict[str, Any] = {"status": "stopped"}  # until training ends

    def configure_optimizers(self) -> None:
        return None  # GD updates are done by BatchedGD on its own packed tensors

    def on_fit_start(self) -> None:
        """Move data, initial points and step sizes to the module's device (generated on the CPU, so a
        seed gives the same numbers on every device); Lightning has placed the module by now."""
        self.data, self.W0, self.eta = self.data.to(self.device), self.W0.to(self.device), self.eta.to(self.device)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self.gd is None:
            self.gd = BatchedGD(self.data, self.W0, self.eta, max_iter=self.max_steps, tol=self.tol, **self.gd_options)
        t0 = time.perf_counter()
        running = self.gd.step()
        self._t_gd += time.perf_counter() - t0
        g = self.gd.last_gn  # NaN at frozen slots
        frac = self.gd.running.float().mean().to(g.dtype)
        frac, g_med = torch.stack([frac, g.nanmedian() if g.numel() else frac.new_tensor(math.nan)]).tolist()
        self.log_dict({"running_fraction": frac, "grad_norm_median": g_med},
                      on_step=True, on_epoch=False, prog_bar=True)
        if not running:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        if self.gd is None:
            self.gd = BatchedGD(self.data, self.W0, self.eta, max_iter=self.max_steps, tol=self.tol, **self.gd_options)
        t0 = time.perf_counter()
        while self.gd.step():  # Lightning stopped at max_steps: the final gradient-norm evaluation
            pass
        self._t_gd += time.perf_counter() - t0
        self.gd.close()
        res = self.gd.result()
        t1 = time.perf_counter()
        self._summary = self._measure(res)
        self._summary["measure_seconds"] = time.perf_counter() - t1
        flat = {k: v for k, v in self._summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        log_row(self, flat, self.gd.steps)

    def _measure(self, res) -> dict[str, Any]:
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
            "status": "diverged" if bool(diverged.all()) else "completed",  # no trial left to measure
            "kind": kind, "d": d, "K": K, "n": n, "sets": S, "inits": L_, "init": self.init_name,
            "n_scaled": scaled_n(n, d),
            "threshold": self.threshold,
            # SD_n over a single init is 0 by definition: success needs >= 2 inits per set
            "success_rate": _mean(ok.float()) if L_ > 1 else math.nan,
            "sd_median": float(sd.median()),
            "error_mean": _mean(err),
            "error_std": float(err.std()) if S > 1 else 0.0,
            "error_median": float(err.median()),
            "init_error_mean": _mean(err0),
            "init_error_median": float(err0.median()),
            "iters_mean": _mean(res.iters.double()),
            "iters_max": int(res.iters.max()),
            "frac_converged": _mean(conv.float()),
            "frac_capped": _mean((res.status == STATUS_CAPPED).float()),
            "frac_diverged": _mean(diverged.float()),
            "contraction_median": float(q[torch.isfinite(q)].median()) if torch.isfinite(q).any() else math.nan,
            "eta_mean": _mean(self.eta),
            "gd_steps": res.steps,
            "trial_steps": res.trial_steps,
            "gd_seconds": self._t_gd,
            "setup_seconds": self.setup_seconds,
            "per_set": {"sd": sd.tolist(), "success": ok.tolist(), "error": err.tolist(),
                        "init_error": err0.tolist()},
        }
        go = self.geometry_options
        if go.get("at_truth", True):
            lo, hi = geometry.at_truth(data)
            out.update(lambda_min_truth=_mean(lo), lambda_max_truth=_mean(hi),
                       frac_pd_truth=_mean((lo > 0).float()))
        if go.get("at_hat", True):
            lo, hi = geometry.hessian_extremes(data, W_hat[:, :1])
            out.update(lambda_min_hat=_mean(lo), lambda_max_hat=_mean(hi))
        if int(go.get("ball_points", 0)) > 0:
            gen = torch.Generator().manual_seed(self.seed + 7919)
            bm = geometry.ball_min(data, float(go["ball_radius"]), int(go["ball_points"]), gen)
            out.update(lambda_min_ball=_mean(bm), frac_pd_ball=_mean((bm > 0).float()),
                       ball_radius=float(go["ball_radius"]), ball_points=int(go["ball_points"]))
            out["per_set"]["lambda_min_ball"] = bm.tolist()
        return out

    def summary(self) -> dict[str, Any]:
        return self._summary


class RhoModule(L.LightningModule):
    """rho_FCN(sigma) and rho_CNN(sigma) on a grid (Fig. 2), computed in its single step."""

    def __init__(self, sigmas: np.ndarray):
        super().__init__()
        self.automatic_optimization = False
        self.sigmas = sigmas
        self._summary: dict[str, Any] = {"status": "stopped"}  # until training ends

    def configure_optimizers(self) -> None:
        return None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        t0 = time.perf_counter()
        f, c = rho_fcn(self.sigmas), rho_cnn(self.sigmas)
        self._summary = {"status": "completed", "sigma": self.sigmas.tolist(), "rho_fcn": f.tolist(),
                         "rho_cnn": c.tolist(), "seconds": time.perf_counter() - t0,
                         "rho_fcn_argmax_sigma": float(self.sigmas[int(np.argmax(f))])}
        self.trainer.should_stop = True

    def summary(self) -> dict[str, Any]:
        return self._summary


# --------------------------------------------------------------------------------------------------


def build(cfg: DictConfig) -> L.LightningModule:
    """Teacher data, initial points and step sizes of one recovery grid point from the composed config
    (validated by :func:`curvlab.config_checks.validate`)."""
    if cfg.get("rho") is not None:
        r = cfg.rho
        return RhoModule(np.linspace(float(r.sigma_min), float(r.sigma_max), int(r.points)))
    t0 = time.perf_counter()
    dtype = resolve_dtype(cfg.dtype)
    kind, K = cfg.model.name, int(cfg.model.K)
    dc = cfg.data
    data = sample_teacher(kind, int(dc.sets), int(dc.n), int(dc.d), K, seed=int(dc.seed), weights=dc.weights,
                          cond=dc.get("cond"), scale=float(dc.get("scale", 1.0)), dtype=dtype)
    gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
    ic = cfg.init
    L_ = int(ic.get("inits", 1))
    if ic.name == "local":
        W0 = local_init(data.W_star, L_, float(ic.radius), gen, ic.get("mode", "sphere"))
    elif ic.name == "gaussian":
        W0 = gaussian_init(data.W_star, L_, float(ic.std), gen)
    else:
        one = tensor_init(data, gen, num_alpha=int(ic.num_alpha), magnitude_moment=int(ic.magnitude_moment),
                          jennrich_tries=int(ic.jennrich_tries), split=bool(ic.split), sigma_max=float(ic.sigma_max))
        W0 = one.unsqueeze(1).expand(-1, L_, *one.shape[1:]).clone()
    oc = cfg.optimizer
    eta = step_sizes(data, oc.lr, float(oc.get("eta_scale", 1.0)))
    threshold = cfg.model.get("success_threshold")
    threshold = float(threshold) if threshold is not None else metrics.SUCCESS_THRESHOLD[kind]
    gd_options = {"record_history": bool(oc.get("record_history", True)),
                  "compact_every": int(oc.get("compact_every", 25)),
                  "workers": oc.get("workers"),
                  "stall_patience": int(oc.get("stall_patience", 0)),
                  "stall_tol": float(oc.get("stall_tol", 0.0))}
    geo = dict(cfg.model.get("geometry") or {})
    return RecoveryModule(data, W0, eta, max_steps=int(oc.max_steps), tol=float(oc.tol), threshold=threshold,
                          gd_options=gd_options, geometry_options=geo, init_name=ic.name, seed=int(cfg.seed),
                          setup_seconds=time.perf_counter() - t0)
