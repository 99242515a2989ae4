"""Shared pieces of the paper figures: which runs a figure plots (:class:`Figure`,
:func:`selected`, :func:`require`), a mean line with its spread band (:func:`mean_band`), the claim
a figure tests (:func:`claim`), and saving a PNG.

A figure function takes ``(runs, out_dir)`` — the runs its :class:`Figure` selects, the ones it
marks (e.g. diverged grid points) included — and returns the paths of the PNGs it wrote.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from curvlab.run.store import PLOTTED, Run  # noqa: E402

FigureFn = Callable[[list[Run], Path], list[Path]]
DIVERGED_STYLE = dict(marker="x", color="crimson", linestyle="none", markersize=8, label="diverged")


class Figure(NamedTuple):
    fn: FigureFn
    task: str  # the task of the runs it plots
    statuses: tuple[str, ...] = PLOTTED  # the statuses of the runs it plots as data
    keys: tuple[str, ...] = ()  # summary keys those runs must hold
    kind: str | None = None  # recovery model (summary "kind") those runs must be
    init: str | None = None  # recovery initialization (summary "init") those runs must use
    checks: tuple[str, ...] = ()  # geometry checks (checks/ group) one of them must have run
    marks: tuple[str, ...] = ()  # statuses of further runs it marks instead of plotting (e.g. diverged)
    history: bool = False  # it reads the runs' per-step histories (results/ keep them for it)


def padded(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Ragged curves as the rows of one array, NaN past each curve's end."""
    out = np.full((len(curves), max((len(c) for c in curves), default=0)), np.nan)
    for i, c in enumerate(curves):
        out[i, : len(c)] = c
    return out


def band(ax: plt.Axes, x, center, lo, hi, **style) -> None:
    """A line through ``center`` and a shaded band from ``lo`` to ``hi`` in the line's colour."""
    (line,) = ax.plot(x, center, **style)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)


def mean_band(ax: plt.Axes, x, samples, **style) -> None:
    """The mean of ``samples`` (one row per seed, NaN or inf where missing; one column per x) as a line, and
    their min-max over the rows as a band. Columns without a value are left out; nothing is drawn if
    none has one."""
    s = np.atleast_2d(np.asarray(samples, dtype=float))
    s[~np.isfinite(s)] = np.nan
    ok = np.isfinite(s).any(axis=0)
    if ok.any():
        s = s[:, ok]
        band(ax, np.asarray(x, dtype=float)[ok], np.nanmean(s, axis=0), np.nanmin(s, axis=0), np.nanmax(s, axis=0),
             **style)


def legend(ax: plt.Axes, **kw) -> None:
    """A legend, if anything on ``ax`` has a label."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def seeds_note(runs: list[Run]) -> str:
    """How a figure over ``runs`` averages: "mean of 3 seeds, bands min-max", or "1 seed"."""
    n = len({r.config.get("seed") for r in runs})
    return "1 seed" if n == 1 else f"lines: mean of {n} seeds, bands: min-max"


def claim(fig: plt.Figure, text: str) -> None:
    """State the claim the figure tests as its title line (wrapped to the figure's width)."""
    width = int(fig.get_figwidth() * 13)
    fig.suptitle("\n".join(textwrap.wrap(text, width)), fontsize=10)


def save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _plots(fig: Figure, run: Run, statuses: tuple[str, ...]) -> bool:
    s = run.summary
    return (run.config.get("task") == fig.task and run.status in statuses and all(k in s for k in fig.keys)
            and fig.kind in (None, s.get("kind")) and fig.init in (None, s.get("init")))


def selected(fig: Figure, runs: list[Run], marked: bool = True) -> list[Run]:
    """The runs ``fig`` plots, and with ``marked`` those it marks."""
    statuses = fig.statuses + (fig.marks if marked else ())
    return [r for r in runs if _plots(fig, r, statuses)]


def ran_check(run: Run, check: str) -> bool:
    """True if ``check`` measured something in ``run``, at some step or at its end."""
    prefix = f"check/{check}/"
    history = run.history()
    return (any(k.startswith(prefix) for k in run.summary.get("final_checks") or {})
            or any(k.startswith(prefix) and not all(map(math.isnan, history[k])) for k in history))


def _or(words: tuple[str, ...]) -> str:
    return " or ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} or {words[-1]}"


def _wanted(fig: Figure) -> str:
    """The runs ``fig`` plots, in words: "completed or converged CNN recovery run recording error_mean"."""
    words = (_or(fig.statuses), fig.kind and fig.kind.upper(), fig.task, "run", fig.init and f"with {fig.init} init",
             fig.keys and f"recording {', '.join(fig.keys)}")
    return " ".join(w for w in words if w)


def _found(runs: list[Run]) -> str:
    counts = Counter(f"{r.status} {r.config.get('task')}" for r in runs)
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "no runs"


def require(name: str, fig: Figure, runs: list[Run], source: str) -> None:
    """Exit with one line if ``runs`` hold no run that figure ``name`` plots, or none of those ran a
    check it plots."""
    mine = selected(fig, runs, marked=False)
    if not mine:
        raise SystemExit(f"{name}: no {_wanted(fig)} in {source} (found: {_found(runs)})")
    for check in fig.checks:
        if not any(ran_check(r, check) for r in mine):
            raise SystemExit(f"{name}: its runs in {source} ({_found(mine)}) did not run the {check!r} check "
                             f"it plots; run the sweep with checks=default (or add checks.{check})")
