"""The recovery task end to end: train entry, summary through curvlab.run.store, a 3-job multirun and
its figures, and the module's numbers against the pure functions."""

import json
import math

import pytest
import torch
from conftest import compose_cfg, run_cli

from curvlab.recovery import gd, metrics
from curvlab.recovery.init import local_init
from curvlab.recovery.teacher import sample_teacher
from curvlab.run.fit import run
from curvlab.run.store import load_runs, read_history

TINY = ["data.d=6", "data.sets=3", "init.inits=3", "trainer.max_steps=60", "progress_bar=false", "logger=csv"]


@pytest.mark.slow
def test_multirun_then_figures(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("curvlab.train", "-m", "experiment=fig3a_fcn_success", "data.n=100,200,400",
                   f"hydra.sweep.dir={sweep}", "hydra/launcher=basic", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(sweep)
    assert sorted(r.summary["n"] for r in runs) == [100, 200, 400]
    for r in runs:
        s = r.summary
        assert s["status"] == "completed" and s["kind"] == "fcn" and s["sets"] == 3 and s["inits"] == 3
        assert 0.0 <= s["success_rate"] <= 1.0 and len(s["per_set"]["sd"]) == 3
        assert math.isclose(s["frac_converged"] + s["frac_capped"] + s["frac_diverged"], 1.0)
        assert s["iters_max"] <= 60 and math.isclose(s["n_scaled"], s["n"] / (6 * math.log(6) ** 2))
        assert math.isclose(s["init_error_mean"], 0.01, rel_tol=1e-9)  # local init at 0.1 ||W*||_F
    fig = run_cli("curvlab.figures", "fig3a", str(sweep), "--out", str(tmp_path / "figs"))
    assert fig.returncode == 0, fig.stderr[-3000:]
    png = tmp_path / "figs" / "fig3a_fcn_success.png"
    assert png.exists() and png.stat().st_size > 10_000
    from curvlab.figures import draw

    assert draw("fig3b", sweep, tmp_path / "figs")[0] == tmp_path / "figs" / "fig3b_fcn_error.png"
    # a CNN figure on an FCN sweep says so instead of drawing an empty plot
    with pytest.raises(SystemExit, match="CNN"):
        draw("fig4a", sweep, tmp_path / "figs")


def test_fig2_run_and_figure(tmp_path):
    cfg = compose_cfg(["experiment=fig2_rho", "rho.points=6", "logger=csv", "progress_bar=false"])
    summary = run(cfg, tmp_path / "rho")
    assert summary["status"] == "completed" and len(summary["rho_fcn"]) == 6
    assert all(c > f > 0 for f, c in zip(summary["rho_fcn"], summary["rho_cnn"]))  # rho_CNN > rho_FCN
    from curvlab.figures import draw

    paths = draw("fig2", tmp_path, tmp_path / "figs")
    assert paths[0].exists() and paths[0].stat().st_size > 10_000


def test_module_numbers_equal_the_pure_functions(tmp_path):
    over = ["experiment=fig4a_cnn_success", "data.d=9", "data.n=300", "data.sets=3", "init.inits=4",
            "trainer.max_steps=400", "seed=5", "logger=csv", "progress_bar=false"]
    summary = run(compose_cfg(over), tmp_path)
    data = sample_teacher("cnn", 3, 300, 9, 3, seed=5)
    W0 = local_init(data.W_star, 4, 0.9, torch.Generator().manual_seed(6))
    res = gd.run_gd(data, W0, gd.step_sizes(data), max_iter=400, tol=0.0, stall_patience=30, stall_tol=1e-13)
    sd = metrics.sd_n(res.W)
    assert summary["per_set"]["sd"] == pytest.approx(sd.tolist(), abs=1e-15)
    assert summary["error_mean"] == pytest.approx(metrics.normalized_error("cnn", res.W, data.W_star).mean().item())
    assert summary["iters_mean"] == pytest.approx(res.iters.double().mean().item())
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["success_rate"] == summary["success_rate"]
    # a row every logger.every_n_steps (10) GD steps from the first, then the end-of-run row
    hist = read_history(tmp_path / "metrics.csv")
    steps = [int(s) for s, f in zip(hist["step"], hist["running_fraction"]) if not math.isnan(f)]
    assert steps == list(range(0, summary["gd_steps"], 10))
    assert hist["running_fraction"][0] == 1.0 and hist["step"][-1] == summary["gd_steps"]


@pytest.mark.parametrize("override,message", [
    (["model=cnn"], "use data=teacher_cnn"),
    (["data.d=10", "model=cnn", "data=teacher_cnn"], "must be divisible by model.K"),
    (["init.name=uniform"], "init.name must be one of local, gaussian, tensor"),
])
def test_bad_recovery_config_fails_fast(tmp_path, override, message):
    cfg = compose_cfg(["experiment=fig3a_fcn_success", *override, "logger=csv", "progress_bar=false"])
    with pytest.raises(ValueError, match=message):
        run(cfg, tmp_path)


def test_a_grid_point_whose_every_trial_diverged_is_recorded_diverged(tmp_path):
    over = ["experiment=fig3b_fcn_error", "data.d=5", "data.n=200", "data.sets=2", "trainer.max_steps=50",
            "logger=csv", "progress_bar=false"]
    blown = run(compose_cfg(over + ["optimizer.eta=1e6"]), tmp_path / "blown")
    assert blown["frac_diverged"] == 1.0 and blown["status"] == "diverged"
    fine = run(compose_cfg(over), tmp_path / "fine")
    assert fine["frac_diverged"] == 0.0 and fine["status"] == "completed"


def test_fig2_is_its_own_job_without_a_model_or_training(tmp_path):
    """experiment=fig2_rho runs task rho: the rho table of its sigma grid, no model, no Trainer steps."""
    from curvlab.recovery.gaussian_integrals import rho_cnn, rho_fcn
    from curvlab.run.loggers import run_tags

    cfg = compose_cfg(["experiment=fig2_rho", "rho.points=5", "logger=csv"])
    assert cfg.task == "rho" and cfg.model is None and cfg.trainer is None
    assert run_tags(cfg) == ["task=rho", "seed=0"]
    summary = run(cfg, tmp_path)
    sig = [0.02 + i * (5.0 - 0.02) / 4 for i in range(5)]
    assert summary["status"] == "completed" and summary["sigma"] == pytest.approx(sig, rel=1e-15)
    assert summary["rho_fcn"] == pytest.approx(list(rho_fcn(summary["sigma"])), rel=1e-15)
    assert summary["rho_cnn"] == pytest.approx(list(rho_cnn(summary["sigma"])), rel=1e-15)
    assert not (tmp_path / "metrics.csv").exists()
