"""The recovery paper's claims, each checked on its experiment's runs (:mod:`curvlab.report`).

A grid point's units are its training sets: the bootstrap resamples each point's per-set values
(``summary["per_set"]``) on its own (:func:`curvlab.claims.bootstrap`).
"""

from __future__ import annotations

import math

import numpy as np

from curvlab.claims import FAILS, HOLDS, Row, above, below, bootstrap, slope_of
from curvlab.recovery.figures import by_d
from curvlab.recovery.metrics import scaled_n
from curvlab.run.store import DIVERGED, Run

SUCCESS_LOW, SUCCESS_HIGH = 0.1, 0.9  # "success ~0" and "success ~1"


def _per_set(run: Run, key: str) -> np.ndarray:
    vals = np.asarray((run.summary.get("per_set") or {}).get(key, []), dtype=float)
    return vals[np.isfinite(vals)]


def _plotted(runs: list[Run], kind: str) -> list[Run]:
    return [r for r in runs if r.status != DIVERGED and r.summary.get("kind") == kind and "per_set" in r.summary]


def rho_increasing(runs: list[Run], experiment: str) -> list[Row]:
    """Fig. 2: rho(sigma) > 0 for sigma > 0, and increasing in sigma, for FCN and CNN."""
    s = runs[-1].summary
    sigma = np.asarray(s["sigma"], dtype=float)
    grid = f"sigma grid {sigma[0]:g}-{sigma[-1]:g}, {len(sigma)} points (quadrature: no sampling)"
    rows = []
    for name in ("fcn", "cnn"):
        rho = np.asarray(s[f"rho_{name}"], dtype=float)
        low = float(rho.min())
        rows.append(Row(f"rho_{name.upper()}(sigma) > 0 for sigma > 0", "Fig. 2, Sec. III", experiment,
                        "min of rho over the grid", low, threshold="> 0", verdict=HOLDS if low > 0 else FAILS, units=grid))
        peak = float(sigma[int(np.argmax(rho))])
        rows.append(Row(f"rho_{name.upper()}(sigma) increasing in sigma", "Fig. 2, Sec. III", experiment,
                        "sigma at which rho peaks", peak, threshold=f"at the grid's end ({sigma[-1]:g})",
                        verdict=HOLDS if peak == sigma[-1] else FAILS, units=grid))
    return rows


def _success_rate(groups: list[np.ndarray]) -> float:
    return float(min(g.mean() for g in groups))


def success_transition(runs: list[Run], experiment: str, kind: str, d: int, n_low: int | None,
                       n_high: int) -> list[Row]:
    """Figs. 3(a), 4(a): at dimension d the success rate is ~0 at n_low and ~1 for every n >= n_high."""
    rs = [r for r in _plotted(runs, kind) if int(r.summary["d"]) == d]
    paper = "Fig. 3(a)" if kind == "fcn" else "Fig. 4(a)"
    rows = []
    if n_low is not None:
        low = [r for r in rs if int(r.summary["n"]) == n_low]
        if low:
            sets = _per_set(low[0], "success")
            v, lo, hi = bootstrap([sets], _success_rate)
            rows.append(Row(f"{kind.upper()} d = {d}: success ~0 at n = {n_low}", paper, experiment,
                            "success rate", v, lo, hi, f"< {SUCCESS_LOW}", below(lo, hi, SUCCESS_LOW),
                            f"{len(sets)} training sets"))
    high = [r for r in rs if int(r.summary["n"]) >= n_high]
    if high:
        groups = [_per_set(r, "success") for r in high]
        v, lo, hi = bootstrap(groups, _success_rate)
        rows.append(Row(f"{kind.upper()} d = {d}: success ~1 for n >= {n_high}", paper, experiment,
                        f"min over n >= {n_high} of the success rate", v, lo, hi, f"> {SUCCESS_HIGH}",
                        above(lo, hi, SUCCESS_HIGH), f"{len(groups[0])} training sets x {len(groups)} n"))
    if not rows:
        rows.append(Row(f"{kind.upper()} d = {d}: success transition", paper, experiment, "success rate",
                        units=f"no run at d = {d}"))
    return rows


def _half_point(ns: np.ndarray, groups: list[np.ndarray]) -> float:
    """The n at which the success rate first reaches 1/2 (log-linear interpolation), nan if never."""
    rate = np.array([g.mean() for g in groups])
    hit = np.nonzero(rate >= 0.5)[0]
    if not len(hit):
        return math.nan
    i = hit[0]
    if i == 0:
        return float(ns[0])
    t = (0.5 - rate[i - 1]) / (rate[i] - rate[i - 1])
    return float(np.exp(np.log(ns[i - 1]) + t * (np.log(ns[i]) - np.log(ns[i - 1]))))


def transition_scaling(runs: list[Run], experiment: str) -> list[Row]:
    """Fig. 3(a)'s x-axis: the success transition sits at n ~ d log^2 d (Theorem 1's sample size),
    so n_1/2 / (d log^2 d) is about the same for every d."""
    curves = {d: rs for d, rs in by_d(_plotted(runs, "fcn")).items() if len(rs) >= 2}
    if len(curves) < 2:
        return [Row("success transition at n ~ d log^2 d", "Fig. 3(a), Thm 1", experiment, "", units="fewer than 2 d")]
    ds = list(curves)
    ns = [np.array([float(r.summary["n"]) for r in rs]) for rs in curves.values()]
    sizes = [len(x) for x in ns]
    groups = [_per_set(r, "success") for rs in curves.values() for r in rs]

    def spread(gs: list[np.ndarray]) -> float:
        cuts = np.cumsum([0, *sizes])
        scaled = [scaled_n(_half_point(x, list(gs[a:b])), d) for x, d, a, b in zip(ns, ds, cuts[:-1], cuts[1:])]
        return float(max(scaled) / min(scaled)) if all(np.isfinite(scaled)) else math.nan

    v, lo, hi = bootstrap(groups, spread)
    return [Row("success transition at n ~ d log^2 d", "Fig. 3(a), Thm 1", experiment,
                f"max / min over d = {ds} of n_1/2 / (d log^2 d)", v, lo, hi, "< 2", below(lo, hi, 2.0),
                f"{len(groups[0])} training sets x {len(groups)} grid points")]


def error_decreases(runs: list[Run], experiment: str, kind: str, key: str = "error", paper: str = "") -> list[Row]:
    """Figs. 3(b), 4(b) (``key`` error) and the tensor init (``init_error``): the mean error falls with
    n, per d (Theorem 2: ||W_hat - W*||_F^2 ~ d log n / n, a log-log slope near -1)."""
    rows = []
    for d, rs in by_d(_plotted(runs, kind)).items():
        groups = [_per_set(r, key) for r in rs]
        ns = [float(r.summary["n"]) for r in rs]
        what = "the squared relative error" if key == "error" else "the relative init error"
        if len(ns) < 2:
            rows.append(Row(f"{kind.upper()} d = {d}: {what} falls with n", paper, experiment, "", units="one n"))
            continue
        v, lo, hi = bootstrap(groups, slope_of(ns))
        rows.append(Row(f"{kind.upper()} d = {d}: {what} falls with n", paper, experiment,
                        f"log-log slope of the mean of {what} vs n", v, lo, hi, "< 0", below(lo, hi, 0.0),
                        f"{len(groups[0])} training sets x {len(ns)} n ({int(ns[0])}-{int(ns[-1])})"))
    return rows


def local_convexity(runs: list[Run], experiment: str) -> list[Row]:
    """Theorem 1: the Hessian of f_n is positive definite on B(W*, r) from some n on, per d."""
    rows = []
    for d, rs in by_d(_plotted(runs, "fcn")).items():
        with_ball = [r for r in rs if len(_per_set(r, "lambda_min_ball"))]
        if not with_ball:
            continue
        pd = [(_per_set(r, "lambda_min_ball") > 0).astype(float) for r in with_ball]
        ns = [int(r.summary["n"]) for r in with_ball]
        from_n = next((n for i, n in enumerate(ns) if all(p.all() for p in pd[i:])), None)
        v, lo, hi = bootstrap([pd[-1]], lambda g: float(g[0].mean()))
        rows.append(Row(f"FCN d = {d}: Hessian PD on B(W*, r) at large n", "Thm 1", experiment,
                        f"share of sets with min over the ball of lambda_min > 0 at n = {ns[-1]} "
                        f"({f'every set PD from n = {from_n}' if from_n else 'no n from which every set is PD'})",
                        v, lo, hi, "> 0.9", above(lo, hi, 0.9),
                        f"{len(pd[-1])} training sets"))
    return rows
