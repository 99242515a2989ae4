"""Figures refuse a sweep with nothing to show with one line and no PNG, and mark diverged recovery
grid points instead of plotting their meaningless errors and rates."""

import csv
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import run_cli
from matplotlib.collections import PolyCollection

import curvlab.recovery.figures as figures_recovery
from curvlab.figures import FIGURES, draw
from curvlab.run.store import write_summary

RSC_CFG = {"task": "rsc", "seed": 0, "model": {"width": 8, "depth": 3}, "init": {"sigma1": 1.0},
           "data": {"name": "mnist_offline", "n": 64, "duplicates": 0.0, "duplicate_noise": 0.0}, "checks": {}}
GEOMETRY = [name for name, fig in FIGURES.items() if fig.checks]
RECOVERY_CURVES = [name for name, fig in FIGURES.items() if fig.task == "recovery"]


def _recovery(name: str, d: int, n: int) -> tuple[dict, dict]:
    """Config and summary of a recovery grid point of the kind and init that figure ``name`` plots."""
    kind, init = FIGURES[name].kind or "fcn", FIGURES[name].init or "local"
    cfg = {"task": FIGURES[name].task, "seed": 0, "model": {"name": kind, "K": 3}, "data": {"d": d, "n": n}}
    summary = {"kind": kind, "d": d, "K": 3, "n": n, "sets": 4, "init": init, "threshold": 1e-4,
               "success_rate": 1.0, "error_mean": 1e-3 / n, "error_std": 0.0, "error_median": 1e-3 / n,
               "init_error_mean": 0.1, "init_error_median": 0.1, "lambda_min_truth": 0.1, "contraction_median": 0.5,
               "rho_fcn": [0.1, 0.2], "rho_cnn": [0.2, 0.3], "sigma": [0.5, 1.0]}
    return cfg, summary


def _run(name: str, d: int = 8, n: int = 400) -> tuple[dict, dict]:
    """Config and summary of a run that figure ``name`` would plot, but for its status."""
    return _recovery(name, d, n) if FIGURES[name].task in ("recovery", "rho") else (RSC_CFG, {})


def _write(d: Path, cfg: dict, summary: dict) -> None:
    """A run folder: a three-step history without any check columns, and its summary."""
    d.mkdir(parents=True)
    rows = [{"step": t, "loss": 1.0 / (t + 1), "gbar_norm": 0.5} for t in range(3)]
    with open(d / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=sorted(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_summary(d, {"steps": len(rows), "min_gbar_norm": 0.5, "final_checks": {}, **summary}, cfg)


def _refusal(name: str, sweep: Path) -> str:
    with pytest.raises(SystemExit) as info:
        draw(name, sweep, sweep / "figs")
    assert not (sweep / "figs").exists()  # no PNG, not even the folder
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name}: ")
    return message


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_a_sweep_without_a_completed_run_is_refused_naming_what_it_found(name, tmp_path):
    for i, status in enumerate(("failed", "stopped", "stopped")):
        cfg, summary = _run(name)
        _write(tmp_path / str(i), cfg, {**summary, "status": status})
    task = FIGURES[name].task
    assert _refusal(name, tmp_path).endswith(f" in {tmp_path} (found: 1 failed {task}, 2 stopped {task})")


def test_an_empty_sweep_folder_is_refused(tmp_path):
    assert _refusal("fig1", tmp_path) == (f"fig1: no completed, converged or diverged rsc run in {tmp_path} "
                                          "(found: no runs)")


def test_a_recovery_figure_names_the_model_and_the_metric_it_needs(tmp_path):
    cfg, summary = _recovery("fig3a", 8, 400)  # FCN runs
    _write(tmp_path / "0", cfg, {**summary, "status": "completed"})
    assert _refusal("fig4b", tmp_path) == (f"fig4b: no completed or converged CNN recovery run recording error_mean "
                                           f"in {tmp_path} (found: 1 completed recovery)")


def test_diverged_runs_alone_still_draw_fig1_but_no_recovery_curve(tmp_path):
    _write(tmp_path / "rsc", RSC_CFG, {"status": "diverged"})
    cfg, summary = _recovery("fig3b", 8, 400)
    _write(tmp_path / "rec", cfg, {**summary, "status": "diverged"})
    (png,) = draw("fig1", tmp_path, tmp_path / "figs")
    assert png.exists()
    assert _refusal("fig3b", tmp_path / "rec").endswith("(found: 1 diverged recovery)")


@pytest.mark.parametrize("name", GEOMETRY)
def test_a_geometry_figure_whose_runs_skipped_its_check_says_how_to_switch_it_on(name, tmp_path):
    _write(tmp_path / "0", RSC_CFG, {"status": "completed"})
    (check,) = FIGURES[name].checks
    assert _refusal(name, tmp_path) == (f"{name}: its runs in {tmp_path} (1 completed rsc) did not run the "
                                        f"'{check}' check it plots; run the sweep with checks=default "
                                        f"(or add checks.{check})")


def test_the_command_line_refuses_with_one_line_exit_1_and_no_png(tmp_path):
    _write(tmp_path / "0", RSC_CFG, {"status": "completed"})
    proc = run_cli("curvlab.figures", "rsc_vs_ntk", str(tmp_path), "--out", str(tmp_path / "figs"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"rsc_vs_ntk: its runs in {tmp_path} (1 completed rsc) did not run the 'ntk' check it plots; "
        "run the sweep with checks=default (or add checks.ntk)"]
    assert not (tmp_path / "figs").exists()


def test_a_missing_sweep_folder_is_one_line(tmp_path):
    proc = run_cli("curvlab.figures", "fig1", str(tmp_path / "nowhere"))
    assert proc.returncode == 1 and proc.stderr.strip() == f"sweep folder {tmp_path / 'nowhere'} does not exist"


@pytest.mark.parametrize("name", RECOVERY_CURVES)
def test_diverged_recovery_points_are_marked_on_the_top_edge_not_plotted(name, tmp_path, monkeypatch):
    for n in (400, 800):
        cfg, summary = _recovery(name, 8, n)
        _write(tmp_path / f"ok{n}", cfg, {**summary, "status": "completed"})
    cfg, summary = _recovery(name, 8, 1600)
    blown = {k: 5e7 for k in ("success_rate", "error_mean", "error_median", "contraction_median")}
    _write(tmp_path / "blown", cfg, {**summary, **blown, "status": "diverged"})
    drawn = []
    monkeypatch.setattr(figures_recovery, "save", lambda fig, path: drawn.append(fig) or path)
    draw(name, tmp_path, tmp_path / "figs")
    x = 1600 if name == "tensor_init" else 1600 / (8 * math.log(8) ** 2)
    for ax in drawn[0].axes:
        (mark,) = [ln for ln in ax.get_lines() if ln.get_label() == "diverged"]
        assert list(mark.get_xdata()) == [pytest.approx(x)] and list(mark.get_ydata()) == [1.0]
        assert mark.get_transform() == ax.get_xaxis_transform()  # y in axes units: the top edge
        plotted = [v for ln in ax.get_lines() if ln is not mark for v in ln.get_xdata()]
        assert len(plotted) >= 2 and pytest.approx(x) not in plotted
        assert ax.get_ylim()[1] < 1e3  # the diverged values do not stretch the axis
        assert "diverged" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(drawn[0])


@pytest.mark.parametrize("name", ["fig3a", "fig3b"])
def test_recovery_curves_draw_a_band_over_the_training_sets(name, tmp_path, monkeypatch):
    """fig3b's band spans the 10-90th percentiles of the per-set errors; fig3a's the 95% Wilson
    interval of the success rate, which holds the rate and stays inside [0, 1]."""
    errors = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]
    for n in (400, 800):
        cfg, summary = _recovery(name, 8, n)
        per_set = {"error": errors, "success": [True] * 4 + [False]}
        _write(tmp_path / str(n), cfg, {**summary, "status": "completed", "sets": 5, "success_rate": 0.8,
                                        "per_set": per_set})
    drawn = []
    monkeypatch.setattr(figures_recovery, "save", lambda fig, path: drawn.append(fig) or path)
    draw(name, tmp_path, tmp_path / "figs")
    (ax,) = drawn[0].axes
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    if name == "fig3b":
        assert (ys.min(), ys.max()) == pytest.approx(tuple(np.percentile(errors, [10, 90])))
    else:
        assert 0 <= ys.min() < 0.8 < ys.max() <= 1
    assert drawn[0].get_suptitle().startswith({"fig3a": "Fig. 3(a)", "fig3b": "Fig. 3(b)"}[name])
    plt.close(drawn[0])
