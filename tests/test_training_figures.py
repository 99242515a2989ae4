"""The step-size, optimizer and loss figures from synthetic sweep folders: one PNG per width / loss
as documented, diverged runs drawn rather than dropped, and refusal of sweeps that lack their data."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import PolyCollection
from test_geometry_figures import _write_run

import curvlab.rsc.figures_training as training
from curvlab.figures import FIGURES, draw


def _rows(steps: int, check: str | None = None, metric: str = "", value=lambda t: 1.0) -> list[dict]:
    rows = []
    for t in range(steps):
        r = {"step": t, "loss": 1.0 / (t + 1), "gbar_norm": 0.5 + 0.01 * t}
        if check is not None:
            r.update({f"check/{check}/seconds": 0.1 * (t + 1), f"check/{check}/{metric}": value(t)})
        rows.append(r)
    return rows


def test_sharpness_draws_one_png_per_width_with_every_step_rule_and_measures_the_spikes(tmp_path):
    for m in (16, 64):
        for omega in (0.5, 2.5):
            cfg = {"task": "rsc", "seed": 0, "model": {"width": m}, "optimizer": {"omega": omega, "lr": "auto"}}
            diverged = omega > 2
            rows = _rows(3 if diverged else 6, "hessian", "lr_times_lambda_max", lambda t, o=omega: o * (1 + t))
            _write_run(tmp_path / "s" / f"{m}_{omega}", cfg, rows,
                       {"status": "diverged" if diverged else "completed", "steps": len(rows)})
    fixed = {"task": "rsc", "seed": 0, "model": {"width": 16}, "optimizer": {"omega": 1.0, "lr": 8.0}}
    spiky = [{"step": t, "loss": loss, "gbar_norm": 0.5} for t, loss in enumerate([1.0, 0.5, 0.9, 0.2])]
    _write_run(tmp_path / "s" / "fixed", fixed, spiky, {"status": "completed", "steps": 4})  # no Hessian check
    paths = draw("sharpness", tmp_path / "s", tmp_path / "f")
    assert sorted(p.name for p in paths) == ["sharpness_m16.png", "sharpness_m64.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    spikes = json.loads((tmp_path / "f" / "sharpness_spikes.json").read_text())
    assert spikes["16"] == {"ω = 0.5": 0.0, "ω = 2.5": 0.0, "lr = 8": pytest.approx(0.4)}


def test_optimizers_draws_a_panel_per_optimizer(tmp_path, monkeypatch):
    for i, (target, momentum) in enumerate((("torch.optim.SGD", 0.0), ("torch.optim.SGD", 0.9), ("torch.optim.Adam", None))):
        for m in (16, 64):
            for bs in (8, None):
                opt = {"_target_": target, **({} if momentum is None else {"momentum": momentum})}
                cfg = {"task": "rsc", "seed": 0, "model": {"width": m}, "optimizer": opt, "data": {"batch_size": bs}}
                _write_run(tmp_path / "s" / f"{i}_{m}_{bs}", cfg, _rows(4),
                           {"status": "completed", "steps": 4, "min_gbar_norm": 0.1 * m})
    (path,) = draw("optimizers", tmp_path / "s", tmp_path / "f")
    assert path.name == "optimizers.png" and path.stat().st_size > 0
    drawn = []
    monkeypatch.setattr(training, "save", lambda fig, path: drawn.append(fig) or path)
    draw("optimizers", tmp_path / "s", tmp_path / "f")
    (fig,) = drawn
    assert len(fig.axes) == 2 * 3  # (min_t, last iterate) x (SGD, SGD with momentum, Adam)
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2
    plt.close(fig)


def test_loss_terms_draws_one_png_per_loss_and_needs_the_loss_curvature_check(tmp_path):
    for loss in ("cross_entropy", "logistic"):
        for m in (16, 64):
            cfg = {"task": "rsc", "seed": 0, "model": {"width": m}, "loss": {"name": loss}}
            _write_run(tmp_path / "s" / f"{loss}_{m}", cfg, _rows(5, "loss_curvature", "lambda_t"),
                       {"status": "completed", "steps": 5})
    paths = draw("loss_terms", tmp_path / "s", tmp_path / "f")
    assert sorted(p.name for p in paths) == ["loss_terms_cross_entropy.png", "loss_terms_logistic.png"]
    assert FIGURES["loss_terms"].checks == ("loss_curvature",)
    _write_run(tmp_path / "bare" / "0", {"task": "rsc", "seed": 0, "model": {"width": 8}, "loss": {"name": "square"}},
               _rows(3), {"status": "completed", "steps": 3})
    with pytest.raises(SystemExit):
        draw("loss_terms", tmp_path / "bare", tmp_path / "g")
