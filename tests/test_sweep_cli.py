"""The command line end to end: a 3-job multirun, its figure, resume, and bad overrides."""

import pytest
from conftest import run_cli

from curvlab.figures import draw
from curvlab.run.store import load_runs

TINY = ["data.n=48", "trainer.max_steps=3", "progress_bar=false", "logger=csv"]


@pytest.mark.slow
def test_multirun_then_figure_then_resume(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["curvlab.train", "-m", "experiment=fig1_mnist", "data=mnist_offline", "model.width=8,16,32",
            "seed=0", f"hydra.sweep.dir={sweep}", "hydra/launcher=basic", *TINY]  # jobs in-process: no worker start-up
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(sweep)
    assert sorted(r.config.model.width for r in runs) == [8, 16, 32]
    assert all(r.status == "completed" and r.summary["steps"] == 3 for r in runs)

    png = tmp_path / "figs" / "fig1_mnist_offline.png"
    assert png in draw("fig1", sweep, tmp_path / "figs") and png.stat().st_size > 10_000

    # resume: a complete job is skipped, a job without a summary runs again
    before = {r.path.name: r.summary["wall_seconds"] for r in runs}
    (sweep / "1" / "summary.json").unlink()
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {r.path.name: r.summary["wall_seconds"] for r in load_runs(sweep)}
    assert after["0"] == before["0"] and after["2"] == before["2"]
    assert set(after) == {"0", "1", "2"}


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.width=-4", "model.width must be a positive integer, got -4"),
        ("data=imagenet", "Could not find 'data/imagenet'"),
        ("data.name=imagenet", "unknown dataset 'imagenet'"),
        ("data=mnist data.download=false data.root=/nonexistent/root", "not found under data root /nonexistent/root"),
    ],
)
def test_bad_override_fails_fast(tmp_path, override, message):
    proc = run_cli("curvlab.train", *override.split(), f"hydra.run.dir={tmp_path}", *TINY, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
