"""``python -m curvlab.reproduce`` end to end on the cheapest experiment (Fig. 2's quadrature): the
sweep runs, results/ gets its table, figure, report and the launch's wall time; a sweep's wall time
counts only the launches that ran a job."""

from __future__ import annotations

import json

import pytest
from conftest import CONF, run_cli

from curvlab.figures import EXPERIMENT_FIGURES
from curvlab.launch import LAUNCHES, experiment_grid, grid_size, wall_seconds
from curvlab.report import CLAIMS
from curvlab.reproduce import REPRODUCED
from curvlab.run.table import load, sweep_meta


def test_every_experiment_has_figures_and_the_reproduced_ones_have_a_grid():
    experiments = {p.stem for p in (CONF / "experiment").glob("*.yaml")}
    assert set(EXPERIMENT_FIGURES) == experiments
    assert set(REPRODUCED) <= experiments and set(CLAIMS) <= experiments
    assert "fig1_cifar10" not in REPRODUCED  # no offline copy of CIFAR-10
    assert grid_size(experiment_grid("fig1_mnist")) == 15 and grid_size(experiment_grid("fig2_rho")) == 1


def test_wall_time_adds_up_the_launches_that_ran_jobs(tmp_path):
    assert wall_seconds(tmp_path) is None
    lines = [{"seconds": 100.0, "jobs_run": 4}, {"seconds": 7.0, "jobs_run": 0}, {"seconds": 50.5, "jobs_run": 1}]
    (tmp_path / LAUNCHES).write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert wall_seconds(tmp_path) == 150.5


@pytest.mark.slow
def test_reproduce_publishes_a_sweep(tmp_path):
    args = ["curvlab.reproduce", "--only", "fig2_rho", "--sweeps", str(tmp_path / "sweeps"),
            "--results", str(tmp_path / "results"), "--jobs", "1"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    out = tmp_path / "results" / "fig2_rho"
    assert (out / "fig2_rho.png").stat().st_size > 10_000
    (run,) = load(out)
    assert run.status == "completed" and len(run.summary["rho_fcn"]) == 250
    report = (tmp_path / "results" / "report.md").read_text()
    assert "rho_FCN(sigma) > 0 for sigma > 0" in report and report.count("**not run**") == len(CLAIMS) - 1
    (launch,) = [json.loads(x) for x in (tmp_path / "sweeps" / "fig2_rho" / LAUNCHES).read_text().splitlines()]
    assert launch["jobs_run"] == 1 and launch["exit"] == 0
    assert sweep_meta(out)["wall_seconds"] == round(launch["seconds"], 1)
