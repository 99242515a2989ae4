"""``make reproduce``: every paper experiment at full size, then its results table, figures and the report.

For each experiment (default: all of :data:`REPRODUCED`, in order) a Hydra multirun of its own grid
runs into ``SWEEPS/<experiment>`` (:func:`curvlab.launch.sweep`: finished jobs of the same config are
skipped, so a killed or repeated reproduce loses and duplicates nothing); the sweep is then exported
to ``RESULTS/<experiment>/`` (:func:`curvlab.run.table.export`: ``runs.csv``, the histories its
figures need, the measured wall time), its figures are drawn there, and finally
``RESULTS/report.md`` checks every paper claim (:mod:`curvlab.report`). ``--export-only`` redoes
the last steps from the sweep folders without launching anything.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from curvlab.figures import EXPERIMENT_FIGURES, FIGURES, draw
from curvlab.launch import experiment_grid, grid_size, sweep, wall_seconds
from curvlab.report import experiment_rows, write_report
from curvlab.run.table import export, load
from curvlab.run.wandb_dashboard import log_sweep

# the full-size experiments, cheapest claims first; fig1_cifar10 needs CIFAR-10 (no offline copy)
REPRODUCED: tuple[str, ...] = (
    "fig2_rho", "fig1_mnist", "fig1_fashion_mnist", "fig3a_fcn_success", "fig4a_cnn_success",
    "fig3b_fcn_error", "fig4b_cnn_error", "lsc_vs_n", "tensor_init_error", "rsc_vs_ntk", "geometry_vs_width",
    "hessian_vs_width", "sharpness_vs_lr", "rsc_sgd_vs_gd", "rsc_cross_entropy", "rsc_convnet_width",
    "rsc_resnet_width",
)


def publish(experiment: str, sweep_dir: Path, results: Path) -> list[Path]:
    """Export one sweep to ``results/<experiment>/``, draw its figures there and, when W&B is on, log
    them with the experiment's report rows in its W&B group."""
    figures = EXPERIMENT_FIGURES[experiment]
    out = export(sweep_dir, results / experiment, wall_seconds=wall_seconds(sweep_dir),
                 history=any(FIGURES[f].history for f in figures))
    pngs = [p for fig in figures for p in draw(fig, out, out)]
    rows = [asdict(r) for r in experiment_rows(experiment, load(out))]
    log_sweep(experiment, pngs, rows, out_dir=sweep_dir)
    return pngs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m curvlab.reproduce", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=REPRODUCED, help="run only these experiments")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="jobs at a time (threads=auto shares the cores among them)")
    parser.add_argument("--sweeps", type=Path, default=Path("sweeps_out"), help="where the sweeps run")
    parser.add_argument("--results", type=Path, default=Path("results"), help="where results are published")
    parser.add_argument("--export-only", action="store_true", help="publish the existing sweeps, launch nothing")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_START_METHOD", "thread")
    experiments = args.only or list(REPRODUCED)
    grids = {e: grid_size(experiment_grid(e)) for e in experiments}
    failed = []
    with tqdm(total=sum(grids.values()), unit="job", desc="curvlab reproduce", disable=args.export_only) as bar:
        for exp in experiments:
            bar.set_postfix_str(exp)
            try:
                if not args.export_only:
                    sweep(exp, [f"hydra.launcher.n_jobs={args.jobs}"], args.sweeps / exp, grids[exp], bar)
                if (args.sweeps / exp).exists():
                    for path in publish(exp, args.sweeps / exp, args.results):
                        tqdm.write(str(path))
            except SystemExit as err:  # one experiment's failure (said in one line) does not stop the others
                failed.append(exp)
                tqdm.write(f"{exp}: {err}")
    print(write_report([args.results], args.results / "report.md"))
    if failed:
        raise SystemExit(f"reproduce: {len(failed)} experiment(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
