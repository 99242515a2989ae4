"""The RSC paper's claims, each checked on its experiment's runs (:mod:`curvlab.report`).

Every claim function takes the finished runs of one experiment and returns its :class:`Row` s;
the bootstrap resamples seeds within each width (:func:`curvlab.claims.bootstrap`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from curvlab.claims import Row, above, below, bootstrap, slope_of, spearman, within
from curvlab.rsc.figures import at_init, check_series, group_by, width_of
from curvlab.run.store import Run

SLOPE_TOL = 0.2  # a fitted slope "near" a predicted one: within this distance


def _by_width(runs: list[Run], value: Callable[[Run], float]) -> tuple[list[int], list[np.ndarray]]:
    """(widths, per width the finite values of ``value`` over its runs/seeds)."""
    widths, groups = [], []
    for m, rs in group_by(runs, width_of).items():
        vals = np.array([value(r) for r in rs], dtype=float)
        if np.isfinite(vals).any():
            widths.append(m)
            groups.append(vals[np.isfinite(vals)])
    return widths, groups


def _units(widths: list[int], groups: list[np.ndarray]) -> str:
    low, high = min(map(len, groups)), max(map(len, groups))
    seeds = f"{low}" if low == high else f"{low}-{high}"
    return f"{seeds} seeds x {len(widths)} widths ({widths[0]}-{widths[-1]})"


def _slope_row(claim: str, paper: str, experiment: str, what: str, runs: list[Run], value: Callable[[Run], float],
               threshold: str, verdict: Callable[[float, float], str]) -> Row:
    widths, groups = _by_width(runs, value)
    if len(widths) < 2:
        return Row(claim, paper, experiment, f"log-log slope of {what} vs m", threshold=threshold,
                   verdict="not run", units=f"{len(widths)} width(s): a slope needs 2")
    slope, lo, hi = bootstrap(groups, slope_of(widths))
    rho = spearman(widths, [g.mean() for g in groups])
    return Row(claim, paper, experiment, f"log-log slope of {what} vs m (Spearman rho {rho:+.2f})", slope, lo, hi,
               threshold, verdict(lo, hi), _units(widths, groups))


def min_gbar_increases(runs: list[Run], experiment: str) -> list[Row]:
    """Fig. 1(b-d): min_t ||g_bar_t|| increases with the width m (the paper's MLP, or any model)."""
    model = str(runs[0].config.model.get("_target_", "mlp")).rsplit(".", 1)[-1]
    return [_slope_row(f"min_t ||g_bar_t|| increases with m ({model}, {runs[0].config.data.name})", "Fig. 1(b-d)", experiment,
                       "min_t ||g_bar_t||", runs, lambda r: r.summary.get("min_gbar_norm", math.nan),
                       "slope > 0", lambda lo, hi: above(lo, hi, 0.0))]


def _inside(runs: list[Run]) -> list[Run]:
    """Runs inside Theorem 4.1's regime, sigma_1 <= 1 (Remark 4.1)."""
    return [r for r in runs if float(r.config.init.sigma1) <= 1.0]


def hessian_scaling(runs: list[Run], experiment: str) -> list[Row]:
    """Theorem 4.1 per depth L (sigma_1 <= 1): ||grad^2 f(theta_0; x)||_2 ~ m^-1/2; Lemma 4.1:
    ||grad_theta f|| = O(1) and ||grad_x f|| ~ m^-1/2 at theta_0."""
    inside = _inside(runs)
    near_half = f"-1/2 +- {SLOPE_TOL}"
    rows = []
    for depth, rs in group_by(inside, lambda r: int(r.config.model.depth)).items():
        rows.append(_slope_row(f"predictor Hessian norm ~ m^-1/2 at theta_0 (L = {depth}, sigma_1 <= 1)",
                               "Thm 4.1 (eq. 5)", experiment, "max_i ||grad^2 f(theta_0; x_i)||_2", rs,
                               lambda r: at_init(r, "hessian", "pred_norm_max"), near_half,
                               lambda lo, hi: within(lo, hi, -0.5 - SLOPE_TOL, -0.5 + SLOPE_TOL)))
    rows.append(_slope_row("||grad_theta f|| = O(1) at theta_0 (all L, sigma_1 <= 1)", "Lemma 4.1", experiment,
                           "max_i ||grad_theta f(theta_0; x_i)||", inside,
                           lambda r: at_init(r, "lipschitz", "grad_theta_max"), f"0 +- {SLOPE_TOL}",
                           lambda lo, hi: within(lo, hi, -SLOPE_TOL, SLOPE_TOL)))
    rows.append(_slope_row("||grad_x f|| ~ m^-1/2 at theta_0 (all L, sigma_1 <= 1)", "Lemma 4.1", experiment,
                           "max_i ||grad_x f(theta_0; x_i)||", inside,
                           lambda r: at_init(r, "lipschitz", "grad_x_max"), near_half,
                           lambda lo, hi: within(lo, hi, -0.5 - SLOPE_TOL, -0.5 + SLOPE_TOL)))
    return rows


def _largest(values: np.ndarray) -> float:
    return float(np.max(values)) if len(values) else math.nan


def _gap_orders(run: Run) -> float:
    """min over the NTK checks of log10(||g_bar_t||^2 / (lambda_min(K_t) / n)): how many orders of
    magnitude the RSC form 1^T K 1 / n^2 stays above the NTK condition's lambda_min / n."""
    _, q = check_series(run, "ntk", "gbar_sq")
    _, lam = check_series(run, "ntk", "lambda_min")
    n = int(run.config.data.n)
    if not len(q) or len(q) != len(lam):
        return math.nan
    ratio = q / np.maximum(lam / n, 1e-300)
    return float(np.log10(ratio).min())


def rsc_without_ntk(runs: list[Run], experiment: str) -> list[Row]:
    """Remarks 5.5-5.6: with exact duplicates lambda_min(K_ntk) is numerically 0 while ||g_bar_t||^2
    stays far from 0."""
    dup = [r for r in runs if float(r.config.data.duplicates) > 0 and float(r.config.data.duplicate_noise) == 0]
    paper = "Rem. 5.5-5.6"
    if not dup:
        return [Row("lambda_min(K_ntk) = 0 with duplicated inputs", paper, experiment, "", verdict="not run",
                    units="no run with exact duplicates")]
    lam = np.array([_largest(check_series(r, "ntk", "lambda_min_rel")[1]) for r in dup])
    units = f"{len(dup)} runs (widths x seeds) with {float(dup[0].config.data.duplicates):.0%} exact duplicates"
    v, lo, hi = bootstrap([lam], lambda g: float(np.max(g[0])))
    rows = [Row("lambda_min(K_ntk) numerically 0 with exact duplicates", paper, experiment,
                "max over runs and checks of lambda_min(K) / lambda_max(K)", v, lo, hi, "< 1e-8",
                below(lo, hi, 1e-8), units)]
    gap = np.array([_gap_orders(r) for r in dup])
    v, lo, hi = bootstrap([gap[np.isfinite(gap)]], lambda g: float(np.min(g[0])))
    rows.append(Row("||g_bar_t||^2 bounded away from 0 on the same runs", paper, experiment,
                    "min over runs and checks of log10(||g_bar_t||^2 / (lambda_min(K_t)/n))", v, lo, hi, "> 3",
                    above(lo, hi, 3.0), units))
    return rows


def _positive_share(run: Run) -> float:
    _, alpha = check_series(run, "restricted_curvature", "alpha")
    return float(np.mean(alpha > 0)) if len(alpha) else math.nan


def positive_curvature(runs: list[Run], experiment: str) -> list[Row]:
    """Theorem 5.1: alpha_t > 0 along GD (at the widths where 2 kappa^2 ||g_bar_t||^2 dominates), per width."""
    rows = []
    for m, rs in group_by(runs, width_of).items():
        shares = np.array([_positive_share(r) for r in rs])
        shares = shares[np.isfinite(shares)]
        if not len(shares):
            continue
        v, lo, hi = bootstrap([shares], lambda g: float(np.mean(g[0])))
        rows.append(Row(f"alpha_t > 0 along GD (m = {m})", "Thm 5.1", experiment,
                        "share of checked steps with alpha_t > 0 (mean over seeds)", v, lo, hi, "> 0.9",
                        above(lo, hi, 0.9), f"{len(shares)} seeds"))
    return rows
