"""Paper figures from a sweep's results: ``python -m curvlab.figures NAME SWEEP_DIR [--out DIR]``.

Each figure is a function ``(runs: list[Run], out_dir: Path) -> list[Path]`` listed in
:data:`FIGURES` with what it plots: the task and statuses of its runs, the summary entries they must
hold and the geometry checks they must have run; runs come from :func:`curvlab.store.load_runs`. A
sweep without such a run exits with one line saying what is missing and what was found, and no PNG.
"""

from __future__ import annotations

import argparse
import importlib
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from curvlab.store import FINISHED, Run, load_runs  # noqa: E402
from curvlab.wandb_runs import load_wandb_runs  # noqa: E402

OK = ("completed", "converged")  # statuses of a run whose numbers are plotted as data


class Figure(NamedTuple):
    fn: str  # "module:function"
    task: str  # the task of the runs it plots
    statuses: tuple[str, ...] = OK  # the statuses of the runs it plots
    keys: tuple[str, ...] = ()  # summary keys those runs must hold
    kind: str | None = None  # recovery model (summary "kind") those runs must be
    init: str | None = None  # recovery initialization (summary "init") those runs must use
    checks: tuple[str, ...] = ()  # geometry checks (checks/ group) one of them must have run


FIGURES: dict[str, Figure] = {
    "fig1": Figure("curvlab.figures_rsc:fig1", "rsc", FINISHED),
    "hessian_width": Figure("curvlab.figures_geometry:hessian_width", "rsc", FINISHED, checks=("hessian",)),
    "ball_distances": Figure("curvlab.figures_geometry:ball_distances", "rsc", checks=("distance",)),
    "rsc_vs_ntk": Figure("curvlab.figures_geometry:rsc_vs_ntk", "rsc", FINISHED, checks=("ntk",)),
    "restricted_curvature": Figure("curvlab.figures_geometry:restricted_curvature", "rsc",
                                   checks=("restricted_curvature",)),
    "fig2": Figure("curvlab.figures_recovery:fig2", "recovery", keys=("rho_fcn",)),
    "fig3a": Figure("curvlab.figures_recovery:fig3a", "recovery", keys=("success_rate",), kind="fcn"),
    "fig3b": Figure("curvlab.figures_recovery:fig3b", "recovery", keys=("error_mean",), kind="fcn"),
    "fig4a": Figure("curvlab.figures_recovery:fig4a", "recovery", keys=("success_rate",), kind="cnn"),
    "fig4b": Figure("curvlab.figures_recovery:fig4b", "recovery", keys=("error_mean",), kind="cnn"),
    "tensor_init": Figure("curvlab.figures_recovery:tensor_init", "recovery", keys=("init_error_mean",),
                          init="tensor"),
    "lsc": Figure("curvlab.figures_recovery:lsc", "recovery", keys=("lambda_min_truth",)),
}

DIVERGED_STYLE = dict(marker="x", color="crimson", linestyle="none", markersize=8, label="diverged")


def save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def figure(name: str) -> Figure:
    if name not in FIGURES:
        raise SystemExit(f"unknown figure {name!r}; choose one of {sorted(FIGURES)}")
    return FIGURES[name]


def figure_fn(name: str) -> Callable[[list[Run], Path], list[Path]]:
    module, fn = figure(name).fn.split(":")
    return getattr(importlib.import_module(module), fn)


def _plots(fig: Figure, run: Run) -> bool:
    s = run.summary
    return (run.config.get("task") == fig.task and run.status in fig.statuses and all(k in s for k in fig.keys)
            and fig.kind in (None, s.get("kind")) and fig.init in (None, s.get("init")))


def selected(name: str, runs: list[Run], statuses: tuple[str, ...] | None = None) -> list[Run]:
    """The runs figure ``name`` plots, as :data:`FIGURES` declares them; with ``statuses``, those of
    its runs with these statuses instead (e.g. the diverged ones it marks)."""
    fig = figure(name)
    fig = fig._replace(statuses=statuses) if statuses else fig
    return [r for r in runs if _plots(fig, r)]


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


def require(name: str, runs: list[Run], source: str) -> None:
    """Exit with one line if ``runs`` hold no run that figure ``name`` plots, or none of those ran a
    check it plots."""
    fig = figure(name)
    mine = selected(name, runs)
    if not mine:
        raise SystemExit(f"{name}: no {_wanted(fig)} in {source} (found: {_found(runs)})")
    for check in fig.checks:
        if not any(ran_check(r, check) for r in mine):
            raise SystemExit(f"{name}: its runs in {source} ({_found(mine)}) did not run the {check!r} check "
                             f"it plots; run the sweep with checks=default (or add checks.{check})")


def draw(name: str, sweep_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw figure ``name`` from the finished runs under ``sweep_dir`` (default out: sweep_dir/figures)."""
    try:
        runs = load_runs(sweep_dir)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    require(name, runs, str(sweep_dir))
    return figure_fn(name)(runs, Path(out_dir) if out_dir else Path(sweep_dir) / "figures")


def draw_from_wandb(name: str, project_path: str, group: str | None, out_dir: Path, api: Any = None) -> list[Path]:
    """Draw figure ``name`` from the W&B runs of ``ENTITY/PROJECT`` (optionally one group)."""
    runs = load_wandb_runs(project_path, group, api)
    require(name, runs, f"W&B project {project_path}" + (f" (group {group})" if group else ""))
    return figure_fn(name)(runs, Path(out_dir))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m curvlab.figures", description=__doc__)
    parser.add_argument("figure", choices=sorted(FIGURES))
    parser.add_argument("sweep_dir", type=Path, nargs="?", help="a Hydra multirun folder")
    parser.add_argument("--from-wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    parser.add_argument("--group", help="with --from-wandb: only this W&B group")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: SWEEP_DIR/figures)")
    args = parser.parse_args(argv)
    if args.from_wandb:
        paths = draw_from_wandb(args.figure, args.from_wandb, args.group, args.out or Path("figures"))
    elif args.sweep_dir is not None:
        paths = draw(args.figure, args.sweep_dir, args.out)
    else:
        parser.error("give a SWEEP_DIR or --from-wandb ENTITY/PROJECT")
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
