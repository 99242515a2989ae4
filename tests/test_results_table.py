"""A sweep exported to a compact results folder reads back as the same runs: configs, summaries
(nested, NaN, awkward strings) and per-step histories; figures draw from the results folder."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest
from omegaconf import OmegaConf

from curvlab.figures import draw
from curvlab.run import table
from curvlab.run.store import load_runs, write_summary


def _run(d, cfg, summary, rows=None):
    d.mkdir(parents=True)
    if rows:
        with open(d / "metrics.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
    write_summary(d, summary, cfg)


def _cfg(width, seed, **extra):
    return {"task": "rsc", "seed": seed, "experiment_name": "fig1_mnist",
            "model": {"width": width, "depth": 3, "name": "mlp"}, "data": {"name": "mnist_offline", "n": 64},
            "optimizer": {"lr": 8.0, "tag": "128"}, "checks": {}, **extra}


def _sweep(tmp_path):
    sweep = tmp_path / "sweep"
    for i, (m, s) in enumerate([(8, 0), (8, 1), (16, 0), (16, 1)]):
        rows = [{"step": t, "loss": 1.0 / (t + 1), "gbar_norm": 0.1 * m**0.3 + 0.01 * t} for t in range(5)]
        summary = {"status": "completed", "steps": 5, "min_gbar_norm": 0.1 * m**0.3, "note": "", "odd": "null",
                   "number_text": "128", "nan": math.nan, "final_checks": {"check/x/y": 1.5}, "none": None,
                   "per_set": {"success": [True, False]}}
        extra = {"only_here": 1} if i == 3 else {}
        _run(sweep / str(i), _cfg(m, s, **extra), summary, rows)
    return sweep


def test_round_trip_is_exact(tmp_path):
    sweep = _sweep(tmp_path)
    out = table.export(sweep, tmp_path / "results" / "fig1_mnist", wall_seconds=12.34)
    meta = OmegaConf.load(out / "sweep.yaml")
    assert meta.swept == ["seed", "model.width", "only_here"] and meta.wall_seconds == 12.3
    assert table.sweep_meta(out)["wall_seconds"] == 12.3 and meta.overrides == []
    before = {r.path.name: r for r in load_runs(sweep)}
    after = table.load(out)
    assert sorted(r.path.name for r in after) == sorted(before)
    for r in after:
        b = before[r.path.name]
        assert OmegaConf.to_container(r.config) == OmegaConf.to_container(b.config)
        assert json.dumps(r.summary, sort_keys=True) == json.dumps(b.summary, sort_keys=True)
        assert r.history() == b.history()
    assert "only_here" not in after[0].config and after[3].config.only_here == 1


def test_the_launch_overrides_that_change_results_are_recorded(tmp_path):
    sweep = _sweep(tmp_path)
    task = ["experiment=fig1_mnist", "model.width=8,16", "trainer.max_steps=300", "threads=1", "logger=csv",
            "+logger.wandb.tags=[a]", "progress_bar=false"]
    OmegaConf.save({"hydra": {"overrides": {"task": task, "hydra": ["hydra.launcher.n_jobs=2"]}}}, sweep / "multirun.yaml")
    out = table.export(sweep, tmp_path / "res")
    assert table.sweep_meta(out)["overrides"] == ["experiment=fig1_mnist", "model.width=8,16", "trainer.max_steps=300"]


def test_runs_csv_is_a_readable_table(tmp_path):
    out = table.export(_sweep(tmp_path), tmp_path / "res")
    with open(out / "runs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model.width"] for r in rows] == ["8", "8", "16", "16"]
    assert rows[0]["status"] == "completed" and rows[0]["min_gbar_norm"] == repr(0.1 * 8**0.3)
    with gzip.open(out / "history.csv.gz", "rt") as fh:
        assert next(csv.reader(fh))[0] == "run"


def test_history_is_left_out_when_not_needed_and_stale_files_go(tmp_path):
    sweep = _sweep(tmp_path)
    out = table.export(sweep, tmp_path / "res")
    assert (out / "history.csv.gz").exists()
    table.export(sweep, out, history=False)
    assert not (out / "history.csv.gz").exists()
    assert all(r.history() == {} for r in table.load(out))


def test_export_refuses_a_sweep_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no run"):
        table.export(tmp_path / "empty", tmp_path / "res")


def test_figures_draw_from_a_results_folder(tmp_path):
    out = table.export(_sweep(tmp_path), tmp_path / "res")
    (png,) = draw("fig1", out, tmp_path / "figs")
    assert png.name == "fig1_mnist_offline.png" and png.stat().st_size > 10_000
