"""Figures from W&B run histories. Runs are logged for real by offline W&B; with no server here,
their records are read back with ``wandb leet inspect --json`` and served through a stand-in of
the public API (``runs(path, filters)`` -> objects with config, summary, path, scan_history)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT

from curvlab.figures import draw_from_wandb
from curvlab.run.store import load_runs
from curvlab.run.wandb_runs import STEP_KEY, history_columns

WANDB = str(Path(sys.executable).with_name("wandb"))


class FakeApi:
    def __init__(self, runs):
        self._runs = runs

    def runs(self, path, filters=None):
        group = (filters or {}).get("group")
        return [r for r in self._runs if group is None or r.group == group]


def _offline_run(run_dir: Path) -> SimpleNamespace:
    """What the W&B API would serve for this run, read from its offline transaction log."""
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    inspect = lambda *a: subprocess.run([WANDB, "leet", "inspect", *a, str(offline)], capture_output=True,  # noqa: E731
                                        text=True, check=True, timeout=120).stdout
    info = json.loads(inspect("--summary", "--json"))
    records = [json.loads(line) for line in inspect("--json").splitlines()]
    rows = [r["history"]["item"] for r in records if r.get("type") == "history"]
    group = next(r["run"]["run_group"] for r in records if r.get("type") == "run")
    return SimpleNamespace(config=info["config"], summary=info["summary"], path=["ent", "proj", info["run_id"]],
                           group=group, scan_history=lambda: iter(rows))


def test_history_columns_maps_trainer_step():
    rows = [{STEP_KEY: 0, "_step": 0, "loss": 1.0}, {"_step": 1, "epoch": 0},
            {STEP_KEY: 1, "_step": 2, "loss": 0.5, "gbar_norm": 0.1}]
    cols = history_columns(rows)
    assert cols["step"] == [0.0, 1.0] and cols["loss"] == [1.0, 0.5]
    assert cols["gbar_norm"][1] == 0.1 and cols["gbar_norm"][0] != cols["gbar_norm"][0]  # NaN where missing


@pytest.mark.slow
def test_fig1_from_offline_wandb_histories(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_START_METHOD": "thread", "PYTHONWARNINGS": "ignore",
           "WANDB_SILENT": "true"}
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "curvlab.train", "-m", "model.width=8,16", "data.n=32", "trainer.max_steps=4",
         "progress_bar=false", "logger.wandb.group=g", f"hydra.sweep.dir={sweep}", "hydra.launcher.n_jobs=2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    local = {r.config.model.width: r for r in load_runs(sweep)}
    served = [_offline_run(r.path) for r in local.values()]
    for s in served:  # the run summary in W&B carries curvlab's summary fields
        assert s.summary["status"] == "completed" and s.summary["min_gbar_norm"] == local[s.config["model"]["width"]].summary["min_gbar_norm"]
        wb = history_columns(s.scan_history())
        assert wb["gbar_norm"] == local[s.config["model"]["width"]].history()["gbar_norm"]  # full history, same values
    paths = draw_from_wandb("fig1", "ent/proj", "g", tmp_path / "figs", api=FakeApi(served))
    assert [p.name for p in paths] == ["fig1_mnist_offline.png"] and paths[0].stat().st_size > 10_000
