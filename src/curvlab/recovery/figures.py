"""Figures of the recovery paper (Fu, Chi, Liang 2020) from a sweep's runs (tasks ``recovery`` and ``rho``).

* :func:`fig2`        rho_FCN(sigma) and rho_CNN(sigma) (experiment ``fig2_rho``)
* :func:`fig3a`       FCN success rate vs n / (d log^2 d), one curve per d (``fig3a_fcn_success``)
* :func:`fig3b`       FCN average estimation error vs n / (d log^2 d) (``fig3b_fcn_error``)
* :func:`fig4a`       CNN success rate (``fig4a_cnn_success``)
* :func:`fig4b`       CNN average estimation error (``fig4b_cnn_error``)
* :func:`tensor_init` tensor-method init error and the error after GD from it vs n (``tensor_init_error``)
* :func:`lsc`         lambda_min of the empirical Hessian (at W*, min over the ball, at W_hat) and the
                      fitted GD contraction factor vs n (``lsc_vs_n``)

Every point is one run (one (d, n) grid point) and reads its summary only; a grid point whose every
trial diverged (status ``diverged``; its GD results measure nothing) is marked at its x on the top
edge of the axes instead. Success rates and errors are a line with a band over the training sets:
the rate's 95% Wilson interval, the 10-90th percentiles of the per-set errors. The x-axis is
n / (d log^2 d) (Theorem 1's sample complexity); ``CURVLAB_RECOVERY_XAXIS=n`` plots raw n instead.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from curvlab.plotting import DIVERGED_STYLE, band, claim, save
from curvlab.recovery.metrics import scaled_n
from curvlab.run.store import DIVERGED, Run


def _split(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """The grid points plotted as data, and those whose every trial diverged (marked)."""
    return [r for r in runs if r.status != DIVERGED], [r for r in runs if r.status == DIVERGED]


def _xaxis() -> str:
    return "n" if os.environ.get("CURVLAB_RECOVERY_XAXIS", "scaled") == "n" else "scaled"


def _x(r: Run) -> float:
    s = r.summary
    return float(s["n"]) if _xaxis() == "n" else scaled_n(s["n"], s["d"])


def _xlabel() -> str:
    return "n" if _xaxis() == "n" else r"$n / (d \log^2 d)$"


def by_d(runs: list[Run]) -> dict[int, list[Run]]:
    groups: dict[int, list[Run]] = defaultdict(list)
    for r in runs:
        groups[int(r.summary["d"])].append(r)
    return {d: sorted(g, key=lambda r: r.summary["n"]) for d, g in sorted(groups.items())}


_Stat = Callable[[Run], tuple[float, float, float]]  # a run's (value, band low, band high)


def _curves(ax, runs: list[Run], stat: _Stat) -> None:
    """``stat`` against the x-axis, one line with its band per d."""
    for d, group in by_d(runs).items():
        band(ax, [_x(r) for r in group], *np.array([stat(r) for r in group]).T, marker="o", label=f"d = {d}")


def _rate_band(r: Run, z: float = 1.96) -> tuple[float, float, float]:
    """The success rate over the run's training sets with its 95% Wilson score interval."""
    p, n = float(r.summary["success_rate"]), max(int(r.summary.get("sets", 1)), 1)
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n) if math.isfinite(p) else math.nan
    return p, center - half, center + half


def _per_set_errors(r: Run) -> list[float] | None:
    return (r.summary.get("per_set") or {}).get("error")


def _error_band(r: Run) -> tuple[float, float, float]:
    """The mean error over the run's training sets, with the 10-90th percentiles of the per-set errors
    (mean ± std where the run kept no per-set errors)."""
    mean, per_set = float(r.summary["error_mean"]), _per_set_errors(r)
    if per_set:
        lo, hi = np.nanpercentile(np.asarray(per_set, dtype=float), [10, 90])
        return mean, float(lo), float(hi)
    std = float(r.summary.get("error_std", math.nan))
    return mean, mean - std, mean + std


def _sets(runs: list[Run]) -> str:
    """The numbers of training sets of ``runs``, e.g. "20" or "10/20"."""
    sets = sorted({int(r.summary.get("sets", 1)) for r in runs})
    return "/".join(map(str, sets))


def _mark_diverged(ax, runs: list[Run], x: Callable[[Run], float] = _x) -> None:
    """Mark diverged grid points at their x on the top edge of ``ax``, off its (log) y scale."""
    if runs:
        ax.plot([x(r) for r in runs], [1.0] * len(runs), transform=ax.get_xaxis_transform(), clip_on=False,
                **DIVERGED_STYLE)


def _k_of(runs: list[Run]) -> str:
    ks = sorted({int(r.summary["K"]) for r in runs})
    return ", ".join(str(k) for k in ks)


def fig2(runs: list[Run], out_dir: Path) -> list[Path]:
    """Fig. 2: rho(sigma) for FCN and CNN with the sigmoid."""
    s = runs[-1].summary
    sig, f, c = np.asarray(s["sigma"]), np.asarray(s["rho_fcn"]), np.asarray(s["rho_cnn"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, scale in ((ax1, "linear"), (ax2, "log")):
        ax.plot(sig, f, label=r"$\rho_{FCN}(\sigma)$")
        ax.plot(sig, c, label=r"$\rho_{CNN}(\sigma)$")
        ax.set_yscale(scale)
        ax.set(xlabel=r"$\sigma$", ylabel=r"$\rho(\sigma)$")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_title("key quantities for the sigmoid")
    ax2.set_title(r"log scale ($\rho_{FCN}$ peaks at $\sigma \approx$ %.2f)" % sig[int(np.argmax(f))])
    claim(fig, "Fig. 2: ρ(σ) > 0 for every σ > 0, so Theorem 1's Hessian lower bound is positive, and "
               "ρ_CNN(σ) > ρ_FCN(σ); the paper also reads ρ as increasing in σ")
    return [save(fig, out_dir / "fig2_rho.png")]


def _success(runs: list[Run], png: str, title: str, out_dir: Path) -> list[Path]:
    rs, bad = _split(runs)
    kind = rs[0].summary["kind"]
    thr = rs[0].summary.get("threshold")
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    _curves(ax, rs, _rate_band)
    _mark_diverged(ax, bad)
    ax.set(xlabel=_xlabel(), ylabel=f"success rate (band: 95% Wilson interval, {_sets(rs)} sets)",
           ylim=(-0.03, 1.03), title=f"{kind.upper()}, K = {_k_of(rs)}, SD$_n \\leq$ {thr:g}")
    ax.grid(alpha=0.3)
    ax.legend()
    claim(fig, f"{title}: once n ≳ C d log² d, GD from random initializations reaches one local minimum "
               f"(SD_n ≤ {thr:g}) with high probability, alike for every d on the scaled axis")
    return [save(fig, out_dir / f"{png}.png")]


def _error_plot(runs: list[Run], png: str, title: str, out_dir: Path) -> list[Path]:
    rs, bad = _split(runs)
    kind = rs[0].summary["kind"]
    spread = "10-90th percentile" if all(map(_per_set_errors, rs)) else "±1 std"
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    _curves(ax, rs, _error_band)
    _mark_diverged(ax, bad)
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set(xlabel=_xlabel(), ylabel=r"$\sum_\ell \|\hat W^{(\ell)} - W^*\|_F^2 / (L \|W^*\|_F^2)$",
           title=f"{kind.upper()}, K = {_k_of(rs)}: average estimation error")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title=f"mean over {_sets(rs)} sets; band: {spread}", title_fontsize=8)
    claim(fig, f"{title}: GD started near W* reaches an estimate whose average error falls steadily as n "
               "grows (Theorem 2), alike for every d on the scaled axis")
    return [save(fig, out_dir / f"{png}.png")]


def fig3a(runs: list[Run], out_dir: Path) -> list[Path]:
    return _success(runs, "fig3a_fcn_success", "Fig. 3(a)", out_dir)


def fig3b(runs: list[Run], out_dir: Path) -> list[Path]:
    return _error_plot(runs, "fig3b_fcn_error", "Fig. 3(b)", out_dir)


def fig4a(runs: list[Run], out_dir: Path) -> list[Path]:
    return _success(runs, "fig4a_cnn_success", "Fig. 4(a)", out_dir)


def fig4b(runs: list[Run], out_dir: Path) -> list[Path]:
    return _error_plot(runs, "fig4b_cnn_error", "Fig. 4(b)", out_dir)


def tensor_init(runs: list[Run], out_dir: Path) -> list[Path]:
    """Init error of the tensor method, and the error after GD from it, vs n (log-log)."""
    rs, bad = _split(runs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for kind in ("fcn", "cnn"):
        sub = [r for r in rs if r.summary["kind"] == kind]
        for d, group in by_d(sub).items():
            n = np.array([r.summary["n"] for r in group], dtype=float)
            med = "init_error_median" in group[0].summary
            ax.plot(n, [r.summary["init_error_median" if med else "init_error_mean"] for r in group], "o-",
                    label=f"{kind.upper()} d = {d}: tensor init")
            ax.plot(n, [r.summary["error_median" if med else "error_mean"] for r in group], "s--",
                    label=f"{kind.upper()} d = {d}: after GD")
    _mark_diverged(ax, bad, lambda r: float(r.summary["n"]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="n", ylabel=r"$\|W - W^*\|_F^2 / \|W^*\|_F^2$ (median over sets)",
           title="Tensor-method initialization (Algorithm 2) vs n")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    claim(fig, "Theorem 3: with n ≥ d poly(K, κ, log d, 1/ε) the tensor method (Algorithm 2) starts GD within ε‖W*‖ "
               "of W*, in the basin where GD then converges to Ŵ_n close to W*")
    return [save(fig, out_dir / "tensor_init_error.png")]


def lsc(runs: list[Run], out_dir: Path) -> list[Path]:
    """Local strong convexity vs n: lambda_min at W*, min over the ball, at W_hat; GD contraction."""
    rs, bad = _split(runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = (("lambda_min_truth", "o-", r"at $W^*$"), ("lambda_min_ball", "v--", r"min over $B(W^*, r)$"),
              ("lambda_min_hat", "s:", r"at $\hat W$"))
    for kind in ("fcn", "cnn"):
        sub = [r for r in rs if r.summary["kind"] == kind]
        for d, group in by_d(sub).items():
            x = [_x(r) for r in group]
            for key, st, lab in styles:
                if any(key in r.summary for r in group):
                    ax1.plot(x, [r.summary.get(key, np.nan) for r in group], st, label=f"{kind.upper()} d={d} {lab}")
            ax2.plot(x, [r.summary.get("contraction_median", np.nan) for r in group], "o-", label=f"{kind.upper()} d={d}")
    for ax in (ax1, ax2):
        _mark_diverged(ax, bad)
    ax1.axhline(0.0, color="k", lw=0.8)
    ax1.set_yscale("symlog", linthresh=1e-5)
    ax1.set(xlabel=_xlabel(), ylabel=r"$\lambda_{\min}(\nabla^2 f_n)$", title="Local strong convexity vs n (Theorem 1)")
    ax1.legend(fontsize=7)
    ax2.set(xlabel=_xlabel(), ylabel="fitted contraction factor (median over trials)", title="Linear convergence of GD")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    claim(fig, "Theorem 1 / Theorem 2: once n is large enough, the empirical Hessian is positive definite around "
               "W* (λmin > 0) and GD converges linearly (contraction factor < 1)")
    return [save(fig, out_dir / "lsc_vs_n.png")]
