"""Paper figures from a sweep's results: ``python -m curvlab.figures NAME SWEEP_DIR [--out DIR]``.

Each figure is a function ``(runs: list[Run], out_dir: Path) -> list[Path]`` listed in
:data:`FIGURES` with the task of its runs and the geometry checks they must have run; runs come from
:func:`curvlab.store.load_runs`. A figure with no finished run of its task, or whose runs lack a check
it plots, exits with one line saying what is missing instead of drawing empty axes.
"""

from __future__ import annotations

import argparse
import importlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from curvlab.store import FINISHED, Run, load_runs  # noqa: E402
from curvlab.wandb_runs import load_wandb_runs  # noqa: E402


class Figure(NamedTuple):
    fn: str  # "module:function"
    task: str  # the task of the runs it plots
    checks: tuple[str, ...] = ()  # geometry checks (checks/ group) its runs must have run


FIGURES: dict[str, Figure] = {
    "fig1": Figure("curvlab.figures_rsc:fig1", "rsc"),
    "hessian_width": Figure("curvlab.figures_geometry:hessian_width", "rsc", ("hessian",)),
    "ball_distances": Figure("curvlab.figures_geometry:ball_distances", "rsc", ("distance",)),
    "rsc_vs_ntk": Figure("curvlab.figures_geometry:rsc_vs_ntk", "rsc", ("ntk",)),
    "restricted_curvature": Figure("curvlab.figures_geometry:restricted_curvature", "rsc", ("restricted_curvature",)),
    "fig2": Figure("curvlab.figures_recovery:fig2", "recovery"),
    "fig3a": Figure("curvlab.figures_recovery:fig3a", "recovery"),
    "fig3b": Figure("curvlab.figures_recovery:fig3b", "recovery"),
    "fig4a": Figure("curvlab.figures_recovery:fig4a", "recovery"),
    "fig4b": Figure("curvlab.figures_recovery:fig4b", "recovery"),
    "tensor_init": Figure("curvlab.figures_recovery:tensor_init", "recovery"),
    "lsc": Figure("curvlab.figures_recovery:lsc", "recovery"),
}

DIVERGED_STYLE = dict(marker="x", color="crimson", linestyle="none", markersize=8, label="diverged")


def save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def figure_fn(name: str) -> Callable[[list[Run], Path], list[Path]]:
    if name not in FIGURES:
        raise SystemExit(f"unknown figure {name!r}; choose one of {sorted(FIGURES)}")
    module, fn = FIGURES[name].fn.split(":")
    return getattr(importlib.import_module(module), fn)


def ran_check(run: Run, check: str) -> bool:
    """True if ``check`` ran at some step of ``run`` or at its end."""
    prefix = f"check/{check}/"
    return (any(k.startswith(prefix) for k in run.summary.get("final_checks") or {})
            or any(k.startswith(prefix) for k in run.history()))


def require(name: str, runs: list[Run], source: str) -> None:
    """Exit with one line if figure ``name`` has no finished run of its task in ``runs``, or none of
    them ran a check the figure plots."""
    fig = FIGURES[name]
    mine = [r for r in runs if r.config.get("task") == fig.task]
    finished = [r for r in mine if r.status in FINISHED]
    if not finished:
        found = ", ".join(f"{n} {status}" for status, n in sorted(Counter(r.status for r in mine).items()))
        raise SystemExit(f"{name}: no finished {fig.task} run in {source} (its {fig.task} runs: {found or 'none'})")
    for check in fig.checks:
        if not any(ran_check(r, check) for r in finished):
            raise SystemExit(f"{name}: no {fig.task} run in {source} ran the {check!r} check it plots; "
                             f"run the sweep with checks=default (or add checks.{check})")


def draw(name: str, sweep_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw figure ``name`` from the finished runs under ``sweep_dir`` (default out: sweep_dir/figures)."""
    runs = load_runs(sweep_dir)
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
