"""Paper figures from a sweep's results: ``python -m curvlab.figures NAME SWEEP_DIR [--out DIR]``.

Each figure is a function ``(runs: list[Run], out_dir: Path) -> list[Path]`` registered in
:data:`FIGURES` as "module:function"; runs come from :func:`curvlab.store.load_runs`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from curvlab.store import Run, load_runs  # noqa: E402
from curvlab.wandb_runs import load_wandb_runs  # noqa: E402

FIGURES: dict[str, str] = {
    "fig1": "curvlab.figures_rsc:fig1",
    "hessian_width": "curvlab.figures_geometry:hessian_width",
    "ball_distances": "curvlab.figures_geometry:ball_distances",
    "rsc_vs_ntk": "curvlab.figures_geometry:rsc_vs_ntk",
    "restricted_curvature": "curvlab.figures_geometry:restricted_curvature",
    "fig2": "curvlab.figures_recovery:fig2",
    "fig3a": "curvlab.figures_recovery:fig3a",
    "fig3b": "curvlab.figures_recovery:fig3b",
    "fig4a": "curvlab.figures_recovery:fig4a",
    "fig4b": "curvlab.figures_recovery:fig4b",
    "tensor_init": "curvlab.figures_recovery:tensor_init",
    "lsc": "curvlab.figures_recovery:lsc",
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
    module, fn = FIGURES[name].split(":")
    return getattr(importlib.import_module(module), fn)


def draw(name: str, sweep_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw figure ``name`` from the finished runs under ``sweep_dir`` (default out: sweep_dir/figures)."""
    runs = load_runs(sweep_dir)
    if not runs:
        raise SystemExit(f"no finished runs (summary.json) under {sweep_dir}")
    return figure_fn(name)(runs, Path(out_dir) if out_dir else Path(sweep_dir) / "figures")


def draw_from_wandb(name: str, project_path: str, group: str | None, out_dir: Path, api: Any = None) -> list[Path]:
    """Draw figure ``name`` from the W&B runs of ``ENTITY/PROJECT`` (optionally one group)."""
    runs = load_wandb_runs(project_path, group, api)
    if not runs:
        raise SystemExit(f"no finished curvlab runs in W&B project {project_path} (group {group})")
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
