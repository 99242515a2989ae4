"""The RSC task end to end in-process: stop rule, determinism, divergence, logged metrics."""

import json
import math
import time

from conftest import compose_cfg

from curvlab.run.clock import StartupClock, process_start
from curvlab.run.fit import run
from curvlab.run.store import read_history

BASE = ["logger=csv", "data.n=64", "model.width=16", "progress_bar=false", "data.root=data_cache"]


def _run(tmp_path, *overrides):
    cfg = compose_cfg(BASE + list(overrides))
    summary = run(cfg, tmp_path)
    return summary, read_history(tmp_path / "metrics.csv")


def test_max_steps_and_logged_metrics(tmp_path):
    summary, hist = _run(tmp_path, "trainer.max_steps=5")
    assert summary["status"] == "completed" and summary["steps"] == 5
    assert hist["step"] == [0, 1, 2, 3, 4]
    for key in ("loss", "grad_norm", "gbar_norm", "cos_neg_grad_gbar"):
        assert len(hist[key]) == 5 and all(math.isfinite(v) for v in hist[key])
    assert summary["min_gbar_norm"] == min(hist["gbar_norm"])
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def test_history_every_n_steps_keeps_the_min_and_every_check_row(tmp_path):
    checks = ["trainer.max_steps=7", "checks=default", "checks.hessian.every=5", "checks.hessian.tol=1e-2"]
    thin, thin_hist = _run(tmp_path / "thin", *checks, "logger.every_n_steps=3")
    full, full_hist = _run(tmp_path / "full", *checks)
    check_steps = {s for i, s in enumerate(full_hist["step"])
                   if any(not math.isnan(v[i]) for k, v in full_hist.items() if k.startswith("check/"))}
    assert check_steps and check_steps != {0}
    assert thin_hist["step"] == sorted({0, 3, 6} | check_steps)  # every 3rd step and every check's row
    for i, step in enumerate(thin_hist["step"]):
        assert thin_hist["loss"][i] == full_hist["loss"][int(step)] or math.isnan(thin_hist["loss"][i])
    assert thin["min_gbar_norm"] == full["min_gbar_norm"] == min(full_hist["gbar_norm"])


def test_startup_seconds_in_the_summary(tmp_path):
    StartupClock.job_ended()  # as after a multirun worker's previous job: the next one counts from here
    t0 = time.time()
    summary, _ = _run(tmp_path, "trainer.max_steps=2")
    assert 0 < summary["startup_seconds"] < time.time() - t0
    assert time.time() - t0 < time.time() - process_start()


def test_stop_rule_converged(tmp_path):
    # a tolerance above the initial loss stops at step 0, before any update
    summary, hist = _run(tmp_path, "trainer.loss_tol=100.0", "trainer.max_steps=50")
    assert summary["status"] == "converged" and summary["steps"] == 0 and len(hist["loss"]) == 1


def test_seeded_runs_are_bit_identical(tmp_path):
    s1, h1 = _run(tmp_path / "a", "trainer.max_steps=4", "seed=3")
    s2, h2 = _run(tmp_path / "b", "trainer.max_steps=4", "seed=3")
    s3, h3 = _run(tmp_path / "c", "trainer.max_steps=4", "seed=4")
    assert h1["loss"] == h2["loss"] and h1["gbar_norm"] == h2["gbar_norm"]
    assert h1["loss"] != h3["loss"]


def test_divergence_is_recorded(tmp_path):
    summary, hist = _run(tmp_path, "optimizer.lr=5000", "trainer.max_steps=200")
    assert summary["status"] == "diverged"
    assert summary["steps"] < 200
    # the diverged step is logged (last row), the one before it is the last good step
    assert summary["last_good_step"] == len(hist["loss"]) - 2 == hist["step"][-2]
    assert not (hist["loss"][-1] < 1e4) and all(v < 1e4 for v in hist["loss"][:-1])


def test_check_values_appear_only_on_the_steps_they_ran(tmp_path):
    summary, hist = _run(tmp_path, "trainer.max_steps=7", "+checks.distance.every=3")
    ran = [s for s, v in zip(hist["step"], hist["check/distance/seconds"]) if v == v]  # not NaN
    assert ran == [0, 3, 6, 7]  # at init, every 3 steps, and the end-of-run check at step 7
    assert len(hist["step"]) == 8 and hist["step"][:7] == [0, 1, 2, 3, 4, 5, 6]
    assert summary["final_checks"]["check/distance/failed"] == 0.0


def test_auto_lr_starts_at_lr_times_lambda_max_equal_to_omega(tmp_path):
    """lr = omega / beta_0 (Lemma 5.2): the Hessian check at theta_0 reads lr * lambda_max = omega."""
    summary, hist = _run(tmp_path, "trainer.max_steps=3", "optimizer.lr=auto", "optimizer.omega=0.5",
                         "+checks.hessian={every: 0, inputs: 0, loss_min: false, tol: 1e-6, maxiter: 1000}")
    assert summary["beta0"] > 0 and math.isclose(summary["lr"], 0.5 / summary["beta0"])
    assert math.isclose(hist["check/hessian/lr_times_lambda_max"][0], 0.5, rel_tol=1e-3)


def test_a_cross_entropy_run_logs_its_loss_terms(tmp_path):
    summary, hist = _run(tmp_path, "trainer.max_steps=3", "loss=cross_entropy", "data.target=onehot",
                         "+checks.loss_curvature={every: 1}")
    lam = hist["check/loss_curvature/lambda_t"]
    assert summary["status"] == "completed" and len(lam) == 3 + 1 and all(0 < v < 2 for v in lam)  # and at the end
    assert all(abs(a) < 1e-6 for a in hist["check/loss_curvature/a_t"])  # l'' 1 = 0: Assumption 3 (i) fails


def test_minibatch_sgd_logs_the_full_data_gbar_of_its_own_iterates(tmp_path):
    """Replayed by hand (same init, same seeded batches, plain SGD), each logged ||g_bar_t|| is the
    full-training-set g_bar at the replayed iterate, computed here from the dense Jacobian."""
    import torch
    from torch.func import jacrev

    from curvlab.rsc.gbar import functional
    from curvlab.rsc.module import build
    from curvlab.run.loaders import minibatch_loader

    overrides = ["data.n=32", "model.width=8", "optimizer=sgd", "optimizer.lr=0.5", "optimizer.momentum=0",
                 "data.batch_size=8", "trainer.max_steps=6", "trainer.loss_tol=0"]
    summary, hist = _run(tmp_path, *overrides)
    module, _ = build(compose_cfg(BASE + overrides))
    model, x, y = module.model, module.x, module.y
    opt = torch.optim.SGD(functional(model).params(), lr=0.5)
    loader = minibatch_loader(x, y, 8, seed=0)  # 4 batches an epoch, in the order of (seed, epoch)
    batches = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        batches += list(loader)
    for t, (xb, yb) in enumerate(batches[:6]):
        fm = functional(model)
        gbar = jacrev(lambda th: fm(th, x))(fm.theta()).mean((0, 1))
        assert math.isclose(hist["gbar_norm"][t], float(gbar.norm()), rel_tol=1e-5), t
        opt.zero_grad()
        module.loss(model(xb), yb).backward()
        opt.step()
    assert summary["status"] == "completed" and len(hist["gbar_norm"]) == 6


def test_the_progress_bar_shows_the_loss_and_gbar_only_when_there_is_one():
    import lightning as L

    from curvlab.rsc.module import build

    for bar in (True, False):
        module, _ = build(compose_cfg(BASE + ["trainer.max_steps=2"]))
        trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=bar,
                            enable_model_summary=False)
        trainer.fit(module)
        assert set(trainer.progress_bar_metrics) == ({"L", "gbar"} if bar else set())
