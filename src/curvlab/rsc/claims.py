"""The RSC paper's claims, each checked on its experiment's runs (:mod:`curvlab.report`).

Every claim function takes the finished runs of one experiment and returns its :class:`Row` s;
a width-scaling claim fits one slope per curve (a seed at one setting of the other swept keys) and
bootstraps over curves; the others resample their units (:func:`curvlab.claims.bootstrap`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np

from curvlab.claims import Row, above, below, bootstrap, loglog_slope, spearman, within
from curvlab.rsc.figures import at_init, check_series, group_by, width_of
from curvlab.run.store import Run, is_result_key
from curvlab.run.table import split_config

SLOPE_TOL = 0.2  # a fitted slope "near" a predicted one: within this distance


def _curves(runs: list[Run], value: Callable[[Run], float]) -> tuple[list[int], np.ndarray, list[str]]:
    """(widths, values (curves, widths), the keys that tell curves apart): a curve is one setting of
    every swept result-defining key but the width (seed, sigma_1, depth, ...), NaN where a width is
    missing; widths without a finite value are left out."""
    _, swept, flats = split_config(runs)
    keys = [k for k in swept if k != "model.width" and is_result_key(k)]
    widths = sorted({width_of(r) for r in runs})
    curves: dict[str, np.ndarray] = {}
    for r, flat in zip(runs, flats):
        curve = curves.setdefault(json.dumps([flat.get(k) for k in keys], default=str), np.full(len(widths), np.nan))
        curve[widths.index(width_of(r))] = value(r)
    values = np.array(list(curves.values()))
    seen = np.isfinite(values).any(axis=0)
    return [m for m, ok in zip(widths, seen) if ok], values[:, seen], keys


def _slope_row(claim: str, paper: str, experiment: str, what: str, runs: list[Run], value: Callable[[Run], float],
               threshold: str, verdict: Callable[[float, float], str]) -> Row:
    """The mean over curves of each curve's log-log slope of ``value`` vs m, its CI a bootstrap over
    curves: curves of other settings (sigma_1, depth) have other intercepts, so slopes are fitted
    within a curve, never across."""
    widths, values, keys = _curves(runs, value)
    slopes = np.array([loglog_slope(np.array(widths), v) for v in values])
    slopes = slopes[np.isfinite(slopes)]
    statistic = f"mean over curves of the log-log slope of {what} vs m"
    if not len(slopes):
        return Row(claim, paper, experiment, statistic, threshold=threshold, verdict="not run",
                   units=f"{len(widths)} width(s): a slope needs 2 on one curve")
    slope, lo, hi = bootstrap([slopes], lambda g: float(np.mean(g[0])))
    rho = spearman(widths, np.nanmean(values, axis=0))
    units = f"{len(slopes)} curves ({', '.join(keys) or 'one run per width'}) x {len(widths)} widths ({widths[0]}-{widths[-1]})"
    return Row(claim, paper, experiment, f"{statistic} (Spearman rho of the mean {rho:+.2f})", slope, lo, hi,
               threshold, verdict(lo, hi), units)


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
