"""Results tied to their config, one process per job folder, and runs that end cleanly or visibly:
stale results refused or re-run, a doubly launched sweep, SIGTERM, fresh histories."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from conftest import ROOT, compose_cfg, run_cli

from curvlab.run.claim import RUNNING, ClaimHeld, claim
from curvlab.run.errors import ConfigError
from curvlab.run.store import config_changes, read_history, resolved_config, reusable
from curvlab.train import run_job

BASE = ["logger=csv", "data.n=64", "model.width=16", "progress_bar=false", "trainer.loss_tol=0"]
# Hydra's basic launcher runs the jobs in the launching process: no worker start-up per test
SWEEP = ["curvlab.train", "-m", "data.n=64", "model.width=8,16", "seed=0", "trainer.loss_tol=0",
         "progress_bar=false", "logger=csv", "hydra/launcher=basic"]


def _summaries(sweep):
    return {d.name: (d / "summary.json").read_bytes() for d in sorted(sweep.iterdir()) if (d / "summary.json").exists()}


@pytest.mark.slow
def test_changed_config_is_refused_before_any_job_and_rerun_on_request(tmp_path):
    sweep = tmp_path / "D"
    first = run_cli(*SWEEP, "trainer.max_steps=20", f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-2000:]
    before = _summaries(sweep)
    hydra_cfg = (sweep / "0" / ".hydra" / "config.yaml").read_text()

    refused = run_cli(*SWEEP, "trainer.max_steps=20", "optimizer.lr=0.5", f"hydra.sweep.dir={sweep}")
    assert refused.returncode != 0
    assert "2 of 2 jobs cannot launch; none was launched" in refused.stderr
    assert "(optimizer.lr: 8.0 -> 0.5)" in refused.stderr and "rerun_changed=true" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _summaries(sweep) == before and (sweep / "0" / ".hydra" / "config.yaml").read_text() == hydra_cfg

    rerun = run_cli(*SWEEP, "trainer.max_steps=20", "optimizer.lr=0.5", "rerun_changed=true",
                    f"hydra.sweep.dir={sweep}")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["config"]["optimizer"]["lr"] == 0.5 and summary["status"] == "completed"
        assert read_history(sweep / job / "metrics.csv")["step"] == [float(t) for t in range(20)]  # not appended


def test_keys_that_do_not_change_numbers_keep_a_result_reusable(tmp_path):
    cfg = compose_cfg(BASE + ["trainer.max_steps=5"])
    run_job(cfg, tmp_path, multirun=False)
    same = ["progress_bar=true", "logger=wandb", "resume=true", "threads=1", "data.root=elsewhere"]
    assert reusable(tmp_path, resolved_config(compose_cfg(BASE + ["trainer.max_steps=5", *same])), False)
    for changed, key in (("seed=1", "seed"), ("trainer.max_steps=6", "trainer.max_steps"),
                         ("checks=default", "checks.hessian.every"), ("data=mnist", "data.name")):
        with pytest.raises(ConfigError, match=f"another config .*{key}"):
            reusable(tmp_path, resolved_config(compose_cfg(BASE + ["trainer.max_steps=5", changed])), False)


def test_single_run_into_a_folder_of_another_config_fails_then_reruns_fresh(tmp_path):
    run_job(compose_cfg(BASE + ["trainer.max_steps=7"]), tmp_path, multirun=False)
    assert run_job(compose_cfg(BASE + ["trainer.max_steps=7"]), tmp_path, multirun=False) is None  # skipped
    with pytest.raises(ConfigError, match=r"trainer.max_steps: 7 -> 4"):
        run_job(compose_cfg(BASE + ["trainer.max_steps=4"]), tmp_path, multirun=False)
    assert read_history(tmp_path / "metrics.csv")["step"] == [float(t) for t in range(7)]  # untouched
    run_job(compose_cfg(BASE + ["trainer.max_steps=4", "rerun_changed=true"]), tmp_path, multirun=False)
    assert read_history(tmp_path / "metrics.csv")["step"] == [0.0, 1.0, 2.0, 3.0]


def test_a_run_never_continues_an_old_history(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,loss\n0,9\n1,9\n2,9\n")  # a killed attempt's rows
    run_job(compose_cfg(BASE + ["trainer.max_steps=3"]), tmp_path, multirun=False)
    hist = read_history(tmp_path / "metrics.csv")
    assert hist["step"] == [0.0, 1.0, 2.0] and 9.0 not in hist["loss"]


def test_config_changes_name_each_differing_key():
    old = {"seed": 0, "optimizer": {"lr": 8.0, "max_steps": 10}, "progress_bar": False}
    new = {"seed": 0, "optimizer": {"lr": 0.5, "max_steps": 10}, "progress_bar": True, "extra": 1}
    assert config_changes(old, new) == ["extra: '<unset>' -> 1", "optimizer.lr: 8.0 -> 0.5"]


def _holder(run_dir, seconds):
    code = f"from curvlab.run.claim import claim; import time\nwith claim({str(run_dir)!r}): time.sleep({seconds})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 30
    while not (run_dir / RUNNING).exists() and time.time() < deadline:
        time.sleep(0.02)
    return proc


def test_a_live_claim_is_respected_and_a_dead_ones_is_taken_over(tmp_path):
    holder = _holder(tmp_path, 60)
    with pytest.raises(ClaimHeld, match=f"pid {holder.pid} on "):
        with claim(tmp_path):
            pass
    os.kill(holder.pid, signal.SIGKILL)  # dies holding it: running.json stays behind
    holder.wait()
    assert (tmp_path / RUNNING).exists()
    with claim(tmp_path):
        assert json.loads((tmp_path / RUNNING).read_text())["pid"] == os.getpid()
    assert not (tmp_path / RUNNING).exists()  # released: no claim left behind


@pytest.mark.slow
def test_same_sweep_launched_twice_at_once_runs_each_job_once(tmp_path):
    sweep = tmp_path / "D"
    holder = _holder(sweep / "1", 600)  # a live process holds job 1 while both launches run
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, "-m", *SWEEP, "trainer.max_steps=400", f"hydra.sweep.dir={sweep}"]
    launches = [subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in launches]
    assert [p.returncode for p in launches] == [0, 0], outs
    assert all(f"skipping: {sweep / '1'} is being run by pid {holder.pid}" in out for out in outs)
    assert read_history(sweep / "0" / "metrics.csv")["step"] == [float(t) for t in range(400)]
    holder.kill()
    holder.wait()
    again = run_cli(*SWEEP, "trainer.max_steps=400", f"hydra.sweep.dir={sweep}")  # job 1 is free now
    assert again.returncode == 0, again.stderr[-2000:]
    assert read_history(sweep / "1" / "metrics.csv")["step"] == [float(t) for t in range(400)]


@pytest.mark.slow
def test_sigterm_exits_143_and_leaves_the_run_incomplete(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "curvlab.train", *BASE, "trainer.max_steps=1000000",
                             f"hydra.run.dir={tmp_path}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, err[-2000:]
    assert "terminated by SIGTERM" in err
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / RUNNING).exists()


def test_results_are_readable_by_the_group(tmp_path):
    old = os.umask(0o022)
    try:
        with claim(tmp_path):
            run_job(compose_cfg(BASE + ["trainer.max_steps=2"]), tmp_path, multirun=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
