"""Figures refuse empty input with one line instead of drawing blank axes, and mark diverged
recovery grid points instead of plotting their meaningless errors."""

import csv
import math
from pathlib import Path

import pytest
from conftest import run_cli

import curvlab.figures_recovery as figures_recovery
from curvlab.figures import FIGURES, draw
from curvlab.store import write_summary

RSC_CFG = {"task": "rsc", "seed": 0, "model": {"width": 8, "depth": 3}, "init": {"sigma1": 1.0},
           "data": {"name": "mnist_offline", "n": 64, "duplicates": 0.0, "duplicate_noise": 0.0}, "checks": {}}


def _recovery(kind: str, d: int, n: int) -> tuple[dict, dict]:
    cfg = {"task": "recovery", "seed": 0, "model": {"name": kind, "K": 3}, "data": {"d": d, "n": n}}
    summary = {"kind": kind, "d": d, "K": 3, "n": n, "sets": 4, "init": "local", "threshold": 1e-4,
               "success_rate": 1.0, "error_mean": 1e-3 / n, "error_std": 0.0, "error_median": 1e-3 / n,
               "init_error_mean": 0.1, "init_error_median": 0.1, "lambda_min_truth": 0.1, "contraction_median": 0.5,
               "rho_fcn": [0.1, 0.2], "rho_cnn": [0.2, 0.3], "sigma": [0.5, 1.0]}
    return cfg, summary


def _write(d: Path, cfg: dict, summary: dict, rows: list[dict] | None = None) -> None:
    d.mkdir(parents=True)
    rows = rows or [{"step": t, "loss": 1.0 / (t + 1), "gbar_norm": 0.5} for t in range(3)]
    with open(d / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)
    write_summary(d, {"steps": len(rows), "min_gbar_norm": 0.5, "final_checks": {}, **summary}, cfg)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_a_figure_with_no_finished_run_exits_naming_what_it_found(name, tmp_path):
    for i, status in enumerate(("failed", "stopped", "stopped")):
        cfg, summary = _recovery("fcn", 8, 400) if FIGURES[name].task == "recovery" else (RSC_CFG, {})
        _write(tmp_path / str(i), cfg, {**summary, "status": status})
    with pytest.raises(SystemExit) as info:
        draw(name, tmp_path, tmp_path / "figs")
    task = FIGURES[name].task
    assert str(info.value) == f"{name}: no finished {task} run in {tmp_path} (its {task} runs: 1 failed, 2 stopped)"
    assert not (tmp_path / "figs").exists()


@pytest.mark.parametrize("name", [n for n, f in FIGURES.items() if f.checks])
def test_a_geometry_figure_without_its_check_says_how_to_switch_it_on(name, tmp_path):
    _write(tmp_path / "0", RSC_CFG, {"status": "completed"})
    with pytest.raises(SystemExit, match=rf"{name}: no rsc run in .* ran the '{FIGURES[name].checks[0]}' check it "
                                         r"plots; run the sweep with checks=default"):
        draw(name, tmp_path, tmp_path / "figs")
    assert not (tmp_path / "figs").exists()


def test_the_command_line_refuses_with_one_line_and_no_png(tmp_path):
    _write(tmp_path / "0", RSC_CFG, {"status": "completed"})
    proc = run_cli("curvlab.figures", "rsc_vs_ntk", str(tmp_path), "--out", str(tmp_path / "figs"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"rsc_vs_ntk: no rsc run in {tmp_path} ran the 'ntk' check it plots; run the sweep with checks=default "
        "(or add checks.ntk)"]
    assert not (tmp_path / "figs").exists()


@pytest.mark.parametrize("name,key", [("fig3b", "error_mean"), ("fig3a", "success_rate")])
def test_diverged_recovery_points_are_marked_not_plotted(name, key, tmp_path, monkeypatch):
    for n in (400, 800):
        cfg, summary = _recovery("fcn", 8, n)
        _write(tmp_path / f"ok{n}", cfg, {**summary, "status": "completed"})
    cfg, summary = _recovery("fcn", 8, 1600)
    _write(tmp_path / "blown", cfg, {**summary, "status": "diverged", key: 5e7})
    drawn = []
    monkeypatch.setattr(figures_recovery, "save", lambda fig, path: drawn.append(fig) or path)
    draw(name, tmp_path, tmp_path / "figs")
    (ax,) = drawn[0].axes
    marks = [ln for ln in ax.get_lines() if ln.get_label() == "diverged"]
    scaled = 1600 / (8 * math.log(8) ** 2)
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [pytest.approx(scaled)]
    plotted = [x for ln in ax.get_lines() if ln.get_label() != "diverged" for x in ln.get_xdata()]
    assert pytest.approx(scaled) not in plotted and len(plotted) >= 2
    assert "diverged" in [t.get_text() for t in ax.get_legend().get_texts()]
