"""The claim report on synthetic sweeps whose answer is planted: slopes, transitions, a claim that
must come out "does not hold", bootstrap CIs that cover the planted value, refusal of empty input."""

from __future__ import annotations

import math
import os

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np
import pytest
from omegaconf import OmegaConf

from curvlab import claims, report
from curvlab.recovery import claims as recovery
from curvlab.rsc import claims as rsc
from curvlab.run import table
from curvlab.run.store import Run, write_summary

WIDTHS = [128, 256, 512, 1024, 2048]


def _rsc_run(m, seed, summary, rows=None, **cfg):
    config = OmegaConf.create({"task": "rsc", "seed": seed, "experiment_name": cfg.pop("experiment", "fig1_mnist"),
                               "model": {"width": m, "depth": cfg.pop("depth", 3)},
                               "data": {"name": "mnist_offline", "n": 512, **cfg.pop("data", {})},
                               "init": {"sigma1": cfg.pop("sigma1", 1.0)}})
    history = dict(rows or {})
    return Run(_path(m, seed), config, {"status": "completed", **summary}, load_history=lambda: history)


def _path(*parts):
    from pathlib import Path

    return Path("/synthetic") / "_".join(map(str, parts))


def _fig1_runs(exponent, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    return [_rsc_run(m, s, {"min_gbar_norm": 0.05 * m**exponent * math.exp(noise * rng.standard_normal())})
            for m in WIDTHS for s in range(3)]


def test_bootstrap_ci_covers_a_planted_slope():
    rng = np.random.default_rng(1)
    groups = [0.3 * m**0.25 * np.exp(0.05 * rng.standard_normal(20)) for m in WIDTHS]
    value, lo, hi = claims.bootstrap(groups, claims.slope_of(WIDTHS))
    assert lo < 0.25 < hi and hi - lo < 0.1 and lo <= value <= hi


def test_verdicts_read_the_ci_against_the_threshold():
    assert claims.above(0.1, 0.3, 0.0) == claims.HOLDS
    assert claims.above(-0.3, -0.1, 0.0) == claims.FAILS
    assert claims.above(-0.1, 0.1, 0.0) == claims.UNSURE
    assert claims.below(-0.3, -0.1, 0.0) == claims.HOLDS
    assert claims.within(-0.6, -0.4, -0.7, -0.3) == claims.HOLDS
    assert claims.within(-0.2, -0.1, -0.7, -0.3) == claims.FAILS
    assert claims.within(-0.4, -0.2, -0.7, -0.3) == claims.UNSURE
    assert claims.above(math.nan, math.nan, 0.0) == claims.UNSURE


def test_min_gbar_rising_with_width_holds_and_falling_does_not():
    (up,) = rsc.min_gbar_increases(_fig1_runs(+0.1), "fig1_mnist")
    assert up.verdict == claims.HOLDS and up.value == pytest.approx(0.1, abs=0.02) and "+1.00" in up.statistic
    (down,) = rsc.min_gbar_increases(_fig1_runs(-0.1), "fig1_mnist")
    assert down.verdict == claims.FAILS and down.ci_high < 0
    (flat,) = rsc.min_gbar_increases(_fig1_runs(0.0, noise=0.3), "fig1_mnist")
    assert flat.verdict != claims.HOLDS


def _hessian_runs(h_exp, gx_exp=-0.5, gt_exp=0.0):
    runs = []
    for depth in (2, 3):
        for m in WIDTHS:
            for s in range(3):
                jitter = 1 + 0.01 * s
                rows = {"step": [0.0], "check/hessian/seconds": [0.1], "check/lipschitz/seconds": [0.1],
                        "check/hessian/pred_norm_max": [2 * m**h_exp * jitter],
                        "check/lipschitz/grad_x_max": [m**gx_exp * jitter],
                        "check/lipschitz/grad_theta_max": [m**gt_exp * jitter]}
                runs.append(_rsc_run(m, s, {"steps": 1}, rows, depth=depth, experiment="hessian_vs_width"))
    return runs


def test_hessian_slope_near_minus_half_holds_and_flat_does_not():
    rows = rsc.hessian_scaling(_hessian_runs(-0.5), "hessian_vs_width")
    assert [r.verdict for r in rows] == [claims.HOLDS] * 4
    assert rows[0].value == pytest.approx(-0.5, abs=1e-6)
    flat = rsc.hessian_scaling(_hessian_runs(0.0, gx_exp=0.0, gt_exp=-0.5), "hessian_vs_width")
    assert [r.verdict for r in flat] == [claims.FAILS] * 4


def test_width_slopes_are_fitted_per_curve_so_intercepts_of_other_settings_do_not_blur_them():
    # sigma_1 moves the intercept 30x, not the slope: per-curve fits see -1/2 with a narrow CI
    runs = [_rsc_run(m, s, {"steps": 1}, {"step": [0.0], "check/hessian/seconds": [0.1],
                                          "check/hessian/pred_norm_max": [scale * m**-0.5 * (1 + 0.01 * s)]},
                     sigma1=sigma1, experiment="hessian_vs_width")
            for sigma1, scale in ((0.5, 0.1), (1.0, 3.0)) for m in WIDTHS for s in range(3)]
    row = rsc.hessian_scaling(runs, "hessian_vs_width")[0]
    assert row.verdict == claims.HOLDS and row.ci_high - row.ci_low < 1e-6
    assert row.value == pytest.approx(-0.5, abs=1e-6) and row.units.startswith("6 curves")


def test_runs_outside_the_regime_are_not_counted():
    runs = _hessian_runs(-0.5) + [_rsc_run(m, 0, {"steps": 1}, {"step": [0.0], "check/hessian/seconds": [0.1],
                                                                 "check/hessian/pred_norm_max": [m**1.0]},
                                           sigma1=2.0, experiment="hessian_vs_width") for m in WIDTHS]
    assert rsc.hessian_scaling(runs, "hessian_vs_width")[0].verdict == claims.HOLDS


def _recovery_run(kind, d, n, per_set, **summary):
    config = OmegaConf.create({"task": "recovery", "seed": 0, "experiment_name": "x"})
    return Run(_path(kind, d, n), config, {"status": "completed", "kind": kind, "d": d, "K": 3, "n": n,
                                           "per_set": per_set, **summary})


def _success_runs(n_half_of, sets=50):
    """Success probability a logistic curve in log n centred at n_half_of(d)."""
    rng = np.random.default_rng(0)
    runs = []
    for d in (15, 20, 25):
        for n in (1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 20000, 40000):
            p = 1 / (1 + (n_half_of(d) / n) ** 12)
            runs.append(_recovery_run("fcn", d, n, {"success": list(rng.random(sets) < p)}))
    return runs


def test_a_planted_success_transition_is_found():
    runs = _success_runs(lambda d: 3200 * d / 15)
    low, high = recovery.success_transition(runs, "fig3a", "fcn", 15, n_low=2000, n_high=5000)
    assert low.verdict == claims.HOLDS and low.value < 0.1
    assert high.verdict == claims.HOLDS and high.value > 0.9


def test_transition_scaling_holds_for_d_log2_d_and_fails_for_d_to_the_fifth():
    from curvlab.recovery.metrics import scaled_n

    (good,) = recovery.transition_scaling(_success_runs(lambda d: 40 / scaled_n(1, d)), "fig3a")
    assert good.verdict == claims.HOLDS and good.value < 1.3
    (bad,) = recovery.transition_scaling(_success_runs(lambda d: 0.004 * d**5), "fig3a")
    assert bad.verdict == claims.FAILS and bad.value > 2


def test_error_slope_is_fitted_over_training_sets():
    rng = np.random.default_rng(2)
    runs = [_recovery_run("cnn", 15, n, {"error": list(40.0 / n * np.exp(0.3 * rng.standard_normal(100)))})
            for n in (500, 1000, 2000, 5000, 10000)]
    (row,) = recovery.error_decreases(runs, "fig4b", "cnn")
    assert row.verdict == claims.HOLDS and row.ci_low < -1 < row.ci_high


def test_rho_peaking_inside_the_grid_is_reported_as_not_increasing():
    sigma = np.linspace(0.1, 5, 50)
    run = Run(_path("rho"), OmegaConf.create({"task": "rho"}),
              {"status": "completed", "sigma": list(sigma), "rho_fcn": list(sigma * np.exp(-sigma / 1.5)),
               "rho_cnn": list(1 - np.exp(-sigma))})
    rows = {r.claim: r for r in recovery.rho_increasing([run], "fig2_rho")}
    assert rows["rho_FCN(sigma) > 0 for sigma > 0"].verdict == claims.HOLDS
    fcn = rows["rho_FCN(sigma) increasing in sigma"]
    assert fcn.verdict == claims.FAILS and fcn.value == pytest.approx(1.5, abs=0.1)
    assert rows["rho_CNN(sigma) increasing in sigma"].verdict == claims.HOLDS


def test_report_from_a_results_folder_lists_every_claim(tmp_path):
    sweep = tmp_path / "sweep"
    for i, run in enumerate(_fig1_runs(+0.1)):
        cfg = {**OmegaConf.to_container(run.config), "experiment_name": "fig1_mnist"}
        write_summary(sweep / str(i), run.summary, cfg)
    table.export(sweep, tmp_path / "results" / "fig1_mnist")
    out = report.write_report([tmp_path / "results"], tmp_path / "report.md")
    text = out.read_text()
    assert "| min_t \\|\\|g_bar_t\\|\\| increases with m (mlp, mnist_offline) |" in text and "**holds**" in text
    assert "CIFAR-10 has no offline copy" in text
    assert text.count("**not run**") == len(report.CLAIMS) - 1


def test_report_refuses_folders_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no finished run|no run"):
        report.write_report([tmp_path / "empty"], tmp_path / "report.md")
    assert not (tmp_path / "report.md").exists()
