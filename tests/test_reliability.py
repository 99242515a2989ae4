"""Sweeps that survive failure: a killed job, NaN during training, submitit's local executor."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, compose_cfg, run_cli

import curvlab.rsc.module as rsc
from curvlab.run.fit import run
from curvlab.run.store import load_runs

SWEEP = ["curvlab.train", "-m", "experiment=fig1_mnist", "data=mnist_offline", "data.n=64", "model.width=8,16",
         "seed=0", "optimizer.lr=2", "progress_bar=false", "logger=csv", "threads=1", "hydra.launcher.n_jobs=2"]


def _results(sweep):
    return {
        (r.config.model.width, r.config.seed): (r.status, r.summary["steps"], r.history()["loss"],
                                                r.history()["gbar_norm"])
        for r in load_runs(sweep)
    }


@pytest.mark.slow
def test_killed_job_is_rerun_and_results_equal_uninterrupted(tmp_path):
    steps = "trainer.max_steps=600"
    clean = tmp_path / "clean"  # the uninterrupted reference: the sweep's two grid points run here
    common = [o for o in SWEEP[2:] if not o.startswith(("model.width", "hydra."))]
    for width in (8, 16):
        run(compose_cfg([*common, steps, f"model.width={width}"]), clean / f"{width}")

    faulty = tmp_path / "faulty"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    sweep = subprocess.Popen([sys.executable, "-m", *SWEEP, steps, f"hydra.sweep.dir={faulty}"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = faulty / "1" / "running.json"
    deadline = time.time() + 120
    while not (marker.exists() and (faulty / "1" / "metrics.csv").exists()) and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "job 1 never started"
    os.kill(json.loads(marker.read_text())["pid"], signal.SIGKILL)  # kill job 1 mid-run
    sweep.wait(timeout=120)
    assert not (faulty / "1" / "summary.json").exists()  # nothing half-written that a figure would read

    proc = run_cli(*SWEEP, steps, f"hydra.sweep.dir={faulty}")  # the same sweep again: resumes
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.parent.name for p in faulty.glob("*/summary.json")) == ["0", "1"]
    got, want = _results(faulty), _results(clean)
    assert len(got) == 2 and all(v[0] in ("completed", "converged") for v in got.values())
    assert got == want  # bit-identical to the uninterrupted runs


def test_nan_mid_run_marks_diverged_and_keeps_history(tmp_path, monkeypatch):
    real = rsc.fused_grads
    calls = {"n": 0}

    def nan_at_step_3(model, x, y, loss):
        calls["n"] += 1
        out = real(model, x, y, loss)
        if calls["n"] == 4:  # step 3
            out.loss = torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(rsc, "fused_grads", nan_at_step_3)
    cfg = compose_cfg(["logger=csv", "data.n=32", "model.width=8", "trainer.max_steps=20", "progress_bar=false"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "diverged" and summary["last_good_step"] == 2 and summary["steps"] == 3
    assert (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_submitit_local_multirun(tmp_path):
    proc = run_cli("curvlab.train", "-m", "hydra/launcher=submitit_local_run", "experiment=fig1_mnist",
                   "data=mnist_offline", "data.n=32", "model.width=8,16,32", "seed=0", "trainer.max_steps=3",
                   "progress_bar=false", "logger=csv", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = load_runs(tmp_path)
    assert sorted(r.config.model.width for r in runs) == [8, 16, 32]
    assert all(r.status == "completed" for r in runs)


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.widht=8", "Could not override 'model.widht'"),
        ("data.nn=8", "Could not override 'data.nn'"),
        ("optimizer.lrr=1", "Could not override 'optimizer.lrr'"),
        ("init.sigma=1", "Could not override 'init.sigma'"),
        ("logger.wandb.projekt=x", "Could not override 'logger.wandb.projekt'"),
        ("checks.ntk.every=3", "Could not override 'checks.ntk.every'"),
        ("model=mlpp", "Could not find 'model/mlpp'"),
        ("model.width=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("trainer.max_steps=1.5", "Value '1.5' of type 'float' could not be converted to Integer"),
        ("data.download=maybe", "Value 'maybe' is not a valid bool"),
        ("data.n=0", "data.n must be a positive integer, got 0"),
    ],
)
def test_config_typos_fail_before_training(override, message, tmp_path):
    """Composition (Hydra's struct mode) or validation rejects the override; nothing is trained."""
    with pytest.raises(Exception) as info:
        run(compose_cfg([override, "logger=csv"]), tmp_path)
    assert message in f"{info.value} {info.value.__cause__}"  # Hydra chains the schema's error
    assert not (tmp_path / "metrics.csv").exists()


@pytest.mark.parametrize(
    "body,message",
    [
        ("model:\n  widht: 64\n", "Key 'widht' not in 'MLPConfig'"),
        ("defaults:\n  - override /model: fcn\n  - override /data: teacher_fcn\ndata:\n  setz: 3\n",
         "Key 'setz' not in 'TeacherDataConfig'"),
        ("defaults:\n  - override /trainer: gd_trials\ntrainer:\n  max_steps: many\n",
         "Value 'many' of type 'str' could not be converted to Integer"),
    ],
)
def test_typo_inside_an_experiment_file_fails_at_composition(tmp_path, body, message):
    """The schemas (curvlab/run/schema.py) catch misspelt keys and wrong types in YAML files too."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\n" + body)
    with pytest.raises(Exception) as info:
        compose_cfg([f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo"])
    assert message in f"{info.value} {info.value.__cause__}"


@pytest.mark.parametrize("experiment", ["fig3a_fcn_success", "fig4a_cnn_success"])
def test_recovery_runs_are_bit_identical(experiment, tmp_path):
    """Same config and seed, same numbers, for the recovery setting too (the RSC setting:
    tests/test_rsc_run.py::test_seeded_runs_are_bit_identical)."""
    tiny = [f"experiment={experiment}", "logger=csv", "progress_bar=false", "data.d=6", "data.n=300",
            "data.sets=3", "init.inits=3", "trainer.max_steps=40"]
    timing = ("seconds", "wall")
    strip = lambda s: {k: v for k, v in s.items() if not any(t in k for t in timing)}  # noqa: E731
    a = strip(run(compose_cfg(tiny + ["seed=5"]), tmp_path / "a"))
    b = strip(run(compose_cfg(tiny + ["seed=5"]), tmp_path / "b"))
    c = strip(run(compose_cfg(tiny + ["seed=6"]), tmp_path / "c"))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a != c
