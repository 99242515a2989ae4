"""The geometry figures from synthetic sweep folders: series extraction and fitted slopes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import PolyCollection

import curvlab.rsc.figures as rsc_figures
from curvlab.figures import FIGURES, draw
from curvlab.run.store import load_runs, write_summary


def _write_run(d: Path, cfg: dict, rows: list[dict], summary: dict) -> None:
    d.mkdir(parents=True)
    keys = sorted({k for r in rows for k in r})
    with open(d / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    write_summary(d, summary, cfg)


def _cfg(width, depth=3, sigma1=1.0, seed=0, dup=0.0, noise=0.0):
    return {"task": "rsc", "seed": seed, "model": {"width": width, "depth": depth},
            "init": {"sigma1": sigma1}, "data": {"n": 512, "duplicates": dup, "duplicate_noise": noise},
            "checks": {"restricted_curvature": {"loss_min": 0.0}}}


def _drawn(monkeypatch, name: str, sweep: Path, out: Path) -> list[plt.Figure]:
    """The matplotlib figures ``name`` draws from ``sweep`` (instead of saving them)."""
    drawn: list[plt.Figure] = []
    monkeypatch.setattr(rsc_figures, "save", lambda fig, path: drawn.append(fig) or path)
    out.mkdir(parents=True, exist_ok=True)
    draw(name, sweep, out)
    return drawn


def _bands(ax) -> list[PolyCollection]:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _legend_size(ax) -> int:
    return len(ax.get_legend().get_texts()) if ax.get_legend() else 0


def _hessian_sweep(d: Path, depths=(3,)) -> None:
    """Synthetic norms c * m^-1/2 (sigma_1 = 1) and c * m^-0.3 (sigma_1 = 2) at init (5 c m^slope at
    the end); later history rows repeat stale check values, as a logger may."""
    for i, m in enumerate([64, 128, 256, 512]):
        for s1, slope in ((1.0, -0.5), (2.0, -0.3)):
            for depth in depths:
                rows = [{"step": 0, "loss": 1.0, "check/hessian/seconds": 0.5 + i,
                         "check/hessian/pred_norm_max": 3 * m**slope, "check/lipschitz/seconds": 0.1,
                         "check/lipschitz/grad_x_max": m**-0.5, "check/lipschitz/grad_theta_max": 1.0}]
                rows += [{**rows[0], "step": t, "loss": 1.0 / (t + 1)} for t in (1, 2)]
                _write_run(d / f"m{m}_s{s1}_L{depth}", _cfg(m, depth=depth, sigma1=s1), rows,
                           {"status": "completed", "steps": 3,
                            "final_checks": {"check/hessian/pred_norm_max": 5 * m**slope}})


def test_hessian_width_slope_is_fitted_from_init_values(tmp_path):
    """The figure must report the synthetic slopes, reading each check's value only where it ran
    (stale repeats ignored)."""
    _hessian_sweep(tmp_path)
    out = tmp_path / "fig"
    paths = draw("hessian_width", tmp_path, out)
    assert paths[0].exists() and paths[0].stat().st_size > 0
    slopes = json.loads((out / "hessian_width_slopes.json").read_text())
    assert slopes["L=3, σ1=1"]["hessian_init"] == pytest.approx(-0.5, abs=1e-9)
    assert slopes["L=3, σ1=1"]["hessian_end"] == pytest.approx(-0.5, abs=1e-9)
    assert slopes["L=3, σ1=2"]["hessian_init"] == pytest.approx(-0.3, abs=1e-9)
    assert slopes["L=3, σ1=2"]["regime (Remark 4.1)"] == "outside"
    assert slopes["L=3, σ1=1"]["grad_x_init"] == pytest.approx(-0.5, abs=1e-9)
    assert slopes["L=3, σ1=1"]["grad_theta_init"] == pytest.approx(0.0, abs=1e-9)


def test_hessian_width_draws_one_row_of_panels_per_depth(tmp_path, monkeypatch):
    _hessian_sweep(tmp_path / "sweep", depths=(2, 3))
    (fig,) = _drawn(monkeypatch, "hessian_width", tmp_path / "sweep", tmp_path / "fig")
    assert len(fig.axes) == 2 * 4
    assert all(_legend_size(ax) <= 3 for ax in fig.axes)  # one entry per sigma_1, and the slope -1/2
    assert all(_bands(ax) for ax in fig.axes)
    assert fig.get_suptitle().startswith("Theorem 4.1")
    plt.close(fig)


def test_fig1_draws_the_seed_mean_with_a_min_max_band(tmp_path, monkeypatch):
    for m in (16, 64):
        for seed in (0, 1, 2):
            cfg = {**_cfg(m, seed=seed), "data": {"name": "toy", "n": 8}}
            rows = [{"step": t, "loss": 1.0, "gbar_norm": (seed + 1) * (t + 1)} for t in range(4)]
            _write_run(tmp_path / "s" / f"{m}_{seed}", cfg, rows,
                       {"status": "completed", "steps": 4, "min_gbar_norm": m * (seed + 1)})
    (fig,) = _drawn(monkeypatch, "fig1", tmp_path / "s", tmp_path / "f")
    ax_a, ax_b = fig.axes
    assert len(_bands(ax_a)) == 2 and ax_b.get_xscale() == "log"
    (mean,) = [ln for ln in ax_b.get_lines() if ln.get_label().startswith("mean")]
    assert list(mean.get_xdata()) == [16, 64] and list(mean.get_ydata()) == pytest.approx([32, 128])
    (band,) = _bands(ax_b)
    ys = band.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == pytest.approx((16, 3 * 64))  # min over seeds at m = 16, max at m = 64
    plt.close(fig)


def test_check_series_takes_fresh_rows_only(tmp_path):
    from curvlab.rsc.figures import check_series

    rows = []
    for t in range(6):
        fresh = t % 2 == 0
        rows.append({"step": t, "loss": 1.0, "check/ntk/seconds": 0.1 * t if fresh else 0.1 * (t - 1),
                     "check/ntk/lambda_min": float(t if fresh else t - 1)})
    _write_run(tmp_path / "r", _cfg(64), rows,
               {"status": "completed", "steps": 6, "final_checks": {"check/ntk/lambda_min": 42.0}})
    run = load_runs(tmp_path)[0]
    steps, vals = check_series(run, "ntk", "lambda_min")
    assert list(steps) == [0, 2, 4, 6] and list(vals) == [0.0, 2.0, 4.0, 42.0]


def test_training_figures_draw(tmp_path, monkeypatch):
    for m in (64, 256):
        for dup in (0.0, 0.25):
            rows = []
            for t in range(0, 30):
                r = {"step": t, "loss": math.exp(-0.1 * t)}
                if t % 10 == 0:
                    r.update({"check/ntk/seconds": 0.01 * t + 0.001, "check/ntk/lambda_min": 0.0 if dup else 1e-3,
                              "check/ntk/lambda_max": 1.0, "check/ntk/quad_rsc": 0.5,
                              "check/distance/seconds": 0.01 * t + 0.002, "check/distance/spec_max": 0.1 * t,
                              "check/distance/head": 0.01 * t, "check/distance/spec_l1": 0.1 * t,
                              "check/distance/euclid": 0.2 * t,
                              "check/restricted_curvature/seconds": 0.01 * t + 0.003})
                    for k in ("alpha", "alpha_random", "alpha_step", "alpha_upper"):
                        r[f"check/restricted_curvature/{k}"] = 1e-3
                    r.update({"check/restricted_curvature/contraction": 0.9, "check/restricted_curvature/bound": 0.99,
                              "check/restricted_curvature/bound_step": 0.98})
                rows.append(r)
            _write_run(tmp_path / f"m{m}_d{dup}", _cfg(m, depth=1, dup=dup), rows, {"status": "converged", "steps": 30})
    for name in ("ball_distances", "rsc_vs_ntk", "restricted_curvature"):
        assert name in FIGURES
        (path,) = draw(name, tmp_path, tmp_path / "fig")
        assert path.exists() and path.stat().st_size > 0
    # small multiples: one column per width (restricted_curvature: 2 rows; rsc_vs_ntk: 2 rows + minima)
    for name, panels in (("ball_distances", 3), ("rsc_vs_ntk", 2 * 2 + 1), ("restricted_curvature", 2 * 2)):
        (fig,) = _drawn(monkeypatch, name, tmp_path, tmp_path / "fig")
        assert len(fig.axes) == panels
        assert all(_legend_size(ax) <= 6 for ax in fig.axes)
        assert any(_bands(ax) for ax in fig.axes) and fig.get_suptitle()
        plt.close(fig)


def test_width_scaling_fits_each_models_slope_and_marks_diverged_runs(tmp_path):
    """Synthetic conv-net norms 2 m^0.25 at init and 3 m^-0.5 at the end: the figure reports those
    slopes, one PNG per model class; a diverged run is marked, not averaged."""
    for i, m in enumerate([4, 8, 16, 32]):
        for seed in (0, 1):
            cfg = {"task": "rsc", "seed": seed, "model": {"_target_": "curvlab.rsc.nets.ConvNet", "width": m}}
            rows = [{"step": 0, "loss": 1.0, "gbar_norm": 0.5, "check/hessian/seconds": 0.1 + i,
                     "check/hessian/pred_norm_max": 2 * m**0.25}]
            summary = {"status": "diverged" if (m, seed) == (32, 1) else "completed", "steps": 1,
                       "min_gbar_norm": 0.1 * m, "final_checks": {"check/hessian/pred_norm_max": 3 * m**-0.5}}
            _write_run(tmp_path / "sweep" / f"{i}{seed}", cfg, rows, summary)
    paths = draw("width_scaling", tmp_path / "sweep", tmp_path / "figs")
    assert [p.name for p in paths] == ["width_scaling_ConvNet.png"]
    slopes = json.loads((tmp_path / "figs" / "width_scaling_slopes.json").read_text())["ConvNet"]
    assert slopes["init"] == pytest.approx(0.25, abs=1e-9) and slopes["end"] == pytest.approx(-0.5, abs=1e-9)
    assert slopes["end_per_seed"] == [pytest.approx(-0.5, abs=1e-9)] * 2
    assert slopes["min_gbar_norm"] == {"4": pytest.approx(0.4), "8": pytest.approx(0.8), "16": pytest.approx(1.6),
                                       "32": pytest.approx(3.2)}  # the diverged seed left out
    assert FIGURES["width_scaling"].checks == ("hessian",)
