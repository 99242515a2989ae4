"""Paper figures from a sweep's results: ``python -m curvlab.figures NAME SWEEP_DIR [--out DIR]``.

Every figure is listed in :data:`FIGURES` with what it plots (:class:`curvlab.plotting.Figure`):
the task and statuses of its runs, the summary entries they must hold and the geometry checks they
must have run; runs come from a sweep folder or a ``results/`` folder (:func:`curvlab.run.table.load`),
or from W&B. :data:`EXPERIMENT_FIGURES` names the figures of each experiment. A sweep without such a
run exits with one line saying what is missing and what was found, and no PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from curvlab.plotting import Figure, require, selected
from curvlab.recovery import figures as recovery
from curvlab.rsc import figures as rsc
from curvlab.rsc import figures_training as training
from curvlab.run.store import DIVERGED, FINISHED, Run
from curvlab.run.table import load
from curvlab.run.wandb_runs import load_wandb_runs

FIGURES: dict[str, Figure] = {
    "fig1": Figure(rsc.fig1, "rsc", FINISHED, history=True),
    "hessian_width": Figure(rsc.hessian_width, "rsc", FINISHED, checks=("hessian",), history=True),
    "ball_distances": Figure(rsc.ball_distances, "rsc", checks=("distance",), history=True),
    "rsc_vs_ntk": Figure(rsc.rsc_vs_ntk, "rsc", FINISHED, checks=("ntk",), history=True),
    "restricted_curvature": Figure(rsc.restricted_curvature, "rsc", checks=("restricted_curvature",), history=True),
    "width_scaling": Figure(rsc.width_scaling, "rsc", FINISHED, checks=("hessian",), history=True),
    "sharpness": Figure(training.sharpness, "rsc", FINISHED, history=True),
    "optimizers": Figure(training.optimizers, "rsc", FINISHED, history=True),
    "loss_terms": Figure(training.loss_terms, "rsc", FINISHED, checks=("loss_curvature",), history=True),
    "fig2": Figure(recovery.fig2, "rho", keys=("rho_fcn",)),
    "fig3a": Figure(recovery.fig3a, "recovery", keys=("success_rate",), kind="fcn", marks=(DIVERGED,)),
    "fig3b": Figure(recovery.fig3b, "recovery", keys=("error_mean",), kind="fcn", marks=(DIVERGED,)),
    "fig4a": Figure(recovery.fig4a, "recovery", keys=("success_rate",), kind="cnn", marks=(DIVERGED,)),
    "fig4b": Figure(recovery.fig4b, "recovery", keys=("error_mean",), kind="cnn", marks=(DIVERGED,)),
    "tensor_init": Figure(recovery.tensor_init, "recovery", keys=("init_error_mean",), init="tensor",
                          marks=(DIVERGED,)),
    "lsc": Figure(recovery.lsc, "recovery", keys=("lambda_min_truth",), marks=(DIVERGED,)),
}

# experiment (conf/experiment/NAME.yaml) -> the figures drawn from its sweep
EXPERIMENT_FIGURES: dict[str, tuple[str, ...]] = {
    "fig1_mnist": ("fig1",),
    "fig1_fashion_mnist": ("fig1",),
    "fig1_cifar10": ("fig1",),
    "hessian_vs_width": ("hessian_width",),
    "geometry_vs_width": ("ball_distances", "restricted_curvature"),
    "rsc_vs_ntk": ("rsc_vs_ntk",),
    "rsc_convnet_width": ("width_scaling",),
    "rsc_resnet_width": ("width_scaling",),
    "sharpness_vs_lr": ("sharpness",),
    "rsc_sgd_vs_gd": ("optimizers",),
    "rsc_cross_entropy": ("loss_terms",),
    "fig2_rho": ("fig2",),
    "fig3a_fcn_success": ("fig3a",),
    "fig3b_fcn_error": ("fig3b",),
    "fig4a_cnn_success": ("fig4a",),
    "fig4b_cnn_error": ("fig4b",),
    "tensor_init_error": ("tensor_init",),
    "lsc_vs_n": ("lsc",),
}


def figure(name: str) -> Figure:
    if name not in FIGURES:
        raise SystemExit(f"unknown figure {name!r}; choose one of {sorted(FIGURES)}")
    return FIGURES[name]


def plot(name: str, runs: list[Run], source: str, out_dir: Path) -> list[Path]:
    """Draw figure ``name`` from ``runs`` (read from ``source``), or exit saying what is missing."""
    fig = figure(name)
    require(name, fig, runs, source)
    return fig.fn(selected(fig, runs), out_dir)


def draw(name: str, sweep_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw figure ``name`` from the runs of ``sweep_dir``, a sweep or a results folder (default out:
    sweep_dir/figures)."""
    figure(name)
    try:
        runs = load(sweep_dir)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    return plot(name, runs, str(sweep_dir), Path(out_dir) if out_dir else Path(sweep_dir) / "figures")


def draw_from_wandb(name: str, project_path: str, group: str | None, out_dir: Path, api: Any = None) -> list[Path]:
    """Draw figure ``name`` from the W&B runs of ``ENTITY/PROJECT`` (optionally one group)."""
    runs = load_wandb_runs(project_path, group, api)
    return plot(name, runs, f"W&B project {project_path}" + (f" (group {group})" if group else ""), Path(out_dir))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m curvlab.figures", description=__doc__)
    parser.add_argument("figure", choices=sorted(FIGURES))
    parser.add_argument("sweep_dir", type=Path, nargs="?", help="a Hydra multirun folder or a results/ folder")
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
