"""``make demo``: reduced reproductions of the paper figures, offline, with a progress display.

Each stage is a Hydra multirun of one experiment (comma lists in ``overrides`` are swept) run as a
subprocess into ``OUT/<stage>`` (:func:`curvlab.launch.sweep`), followed by the experiment's figures
(:data:`curvlab.figures.EXPERIMENT_FIGURES`) into ``OUT/figures``. Completed jobs are skipped when
the demo runs again.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from curvlab.figures import EXPERIMENT_FIGURES, draw
from curvlab.launch import grid_size, sweep


@dataclass
class Stage:
    name: str  # folder under the demo output
    experiment: str
    overrides: list[str]  # comma-separated values are swept; list every swept key here

    @property
    def jobs(self) -> int:
        return grid_size(dict(o.split("=", 1) for o in self.overrides))


STAGES: list[Stage] = [
    Stage(
        "fig1_mnist",
        "fig1_mnist",
        ["data=mnist_offline", "model.width=64,128,256,512", "seed=0,1,2", "trainer.max_steps=800"],
    ),
    # RSC geometry claims, reduced: widths <= 512, one seed, short GD runs
    Stage(
        "geometry_hessian",
        "hessian_vs_width",
        ["model.width=64,128,256,512", "model.depth=2,3", "init.sigma1=1.0,2.0", "seed=0",
         "trainer.max_steps=20", "checks.hessian.inputs=2", "checks.hessian.tol=1e-2"],
    ),
    Stage(
        "geometry_training",
        "geometry_vs_width",
        ["model.width=64,128,256,512", "seed=0", "trainer.max_steps=300", "checks.hessian.every=100",
         "checks.restricted_curvature.every=50", "checks.restricted_curvature.dtype=float32"],
    ),
    Stage(
        "geometry_rsc_ntk",
        "rsc_vs_ntk",
        ["model.width=64,256", "data.duplicates=0.0,0.25", "data.duplicate_noise=0.0,0.01", "seed=0",
         "trainer.max_steps=300"],
    ),
    Stage(
        "geometry_convnet_width",
        "rsc_convnet_width",
        ["model.width=4,8,16", "seed=0", "data.n=128", "trainer.max_steps=100"],
    ),
    # recovery paper, reduced: smaller d, fewer sets / inits / iterations than the paper
    Stage("recovery_fig2", "fig2_rho", ["rho.points=120"]),
    Stage(
        "recovery_fig3a",
        "fig3a_fcn_success",
        ["data.d=8,12", "data.n=400,800,1600,3200,6400", "data.sets=10", "init.inits=10",
         "trainer.max_steps=1500"],
    ),
    Stage(
        "recovery_fig3b",
        "fig3b_fcn_error",
        ["data.d=8,16", "data.n=1000,2000,4000,8000,16000", "data.sets=20", "trainer.max_steps=1500"],
    ),
    Stage(
        "recovery_fig4a",
        "fig4a_cnn_success",
        ["data.d=15,24", "data.n=50,100,200,400,800", "data.sets=20", "init.inits=10", "trainer.max_steps=1500"],
    ),
    Stage(
        "recovery_fig4b",
        "fig4b_cnn_error",
        ["data.d=15,24", "data.n=250,500,1000,2000,4000,8000", "data.sets=20", "trainer.max_steps=1500"],
    ),
]


def run_stage(stage: Stage, out: Path, bar: tqdm) -> list[Path]:
    sweep_dir = out / stage.name
    sweep(stage.experiment, [*stage.overrides, "rerun_changed=true"], sweep_dir, stage.jobs, bar)
    return [p for fig in EXPERIMENT_FIGURES[stage.experiment] for p in draw(fig, sweep_dir, out / "figures")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m curvlab.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--only", nargs="*", help="run only these stages")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_START_METHOD", "thread")
    stages = [s for s in STAGES if not args.only or s.name in args.only]
    t0 = time.perf_counter()
    pngs: list[Path] = []
    with tqdm(total=sum(s.jobs for s in stages), unit="job", desc="curvlab demo") as bar:
        for stage in stages:
            bar.set_postfix_str(stage.name)
            pngs += run_stage(stage, args.out, bar)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; figures:")
    for p in pngs:
        print(f"  {p}")


if __name__ == "__main__":
    main()
