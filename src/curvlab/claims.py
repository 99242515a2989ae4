"""What a paper claim's check is made of: a :class:`Row` of the report, the statistics that test it
(log-log slopes, rank correlation) and percentile-bootstrap confidence intervals over the
independent units of a sweep (seeds, training sets), and the verdict of a CI against a threshold.

The claims themselves live with their paper (:mod:`curvlab.rsc.claims`, :mod:`curvlab.recovery.claims`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, UNSURE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
LEVEL = 0.95  # confidence level of every interval
REPS = 2000  # bootstrap replicates


@dataclass
class Row:
    """One paper claim, checked: the statistic's value with its CI, the threshold and the verdict."""

    claim: str
    paper: str  # where the paper states it
    experiment: str
    statistic: str
    value: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    threshold: str = ""
    verdict: str = NOT_RUN
    units: str = ""  # what the bootstrap resampled, e.g. "3 curves (seed) x 5 widths"


def not_run(claim: str, paper: str, experiment: str, statistic: str, why: str = "") -> Row:
    return Row(claim, paper, experiment, statistic, threshold=why, verdict=NOT_RUN)


Groups = Sequence[np.ndarray]  # one array of unit values (seeds, sets) per grid point


def bootstrap(groups: Groups, statistic: Callable[[Groups], float], reps: int = REPS,
              seed: int = 0) -> tuple[float, float, float]:
    """(statistic, CI low, CI high): each group resampled with replacement on its own (a stratified
    percentile bootstrap), :data:`LEVEL` two-sided."""
    groups = [np.asarray(g, dtype=float) for g in groups]
    value = float(statistic(groups))
    rng = np.random.default_rng(seed)
    samples = [g[rng.integers(0, len(g), (reps, len(g)))] for g in groups]  # (reps, len(g)) per group
    draws = np.array([statistic([s[r] for s in samples]) for r in range(reps)])
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return value, float("nan"), float("nan")
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return value, float(lo), float(hi)


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x over the finite y > 0 (nan with fewer than 2 distinct x)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(y) & (y > 0)
    if len(np.unique(x[ok])) < 2:
        return float("nan")
    lx, ly = np.log(x[ok]), np.log(y[ok])
    dx = lx - lx.mean()
    return float(dx @ (ly - ly.mean()) / (dx @ dx))


def slope_of(x: Sequence[float], reduce: Callable[[np.ndarray], float] = np.mean) -> Callable[[Groups], float]:
    """The statistic "log-log slope of reduce(group) against x", for :func:`bootstrap`."""
    return lambda groups: loglog_slope(np.asarray(x), np.array([reduce(g) for g in groups]))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (no ties expected: x is a grid)."""
    rx, ry = (np.argsort(np.argsort(np.asarray(v, dtype=float))) for v in (x, y))
    return float(np.corrcoef(rx, ry)[0, 1])


def above(lo: float, hi: float, threshold: float) -> str:
    """The claim "statistic > threshold" from its CI."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return UNSURE
    return HOLDS if lo > threshold else FAILS if hi <= threshold else UNSURE


def below(lo: float, hi: float, threshold: float) -> str:
    """The claim "statistic < threshold" from its CI."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return UNSURE
    return HOLDS if hi < threshold else FAILS if lo >= threshold else UNSURE


def within(lo: float, hi: float, low: float, high: float) -> str:
    """The claim "low <= statistic <= high" from its CI."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return UNSURE
    if low <= lo and hi <= high:
        return HOLDS
    return FAILS if hi < low or lo > high else UNSURE
