"""The geometry checks through the runner and through a real training run: registered names,
config files, finite values, the NTK / fused-g_bar identity, and failure isolation."""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

os.environ["WANDB_MODE"] = "disabled"

from curvlab.rsc.callback import GeometryCallback  # noqa: E402
from curvlab.rsc.checks import CHECKS, CheckContext  # noqa: E402
from curvlab.rsc.gbar import loss_grad_and_gbar  # noqa: E402
from curvlab.run.store import read_history  # noqa: E402
from geometry_helpers import tiny  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
GEOMETRY = ("hessian", "ntk", "restricted_curvature", "distance", "lipschitz", "loss_curvature")


def _boom(ctx: CheckContext, **_: object) -> dict[str, float]:
    raise RuntimeError("this check always fails")


def _ctx(k: int = 1, step: int = 0) -> CheckContext:
    model, x, y = tiny(k=k, m=8, n=10)
    theta0 = [p.detach().clone() for p in model.params()]
    with torch.no_grad():
        for p in model.params():
            p.add_(0.05)
    return CheckContext(model, x, y, step, loss_grad_and_gbar(model, x, y), theta0, lr=0.1)


@pytest.mark.parametrize("group", ["default", "full"])
def test_checks_config_files_name_registered_checks_with_known_options(group):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "checks" / f"{group}.yaml"))
    assert set(cfg) == set(GEOMETRY)
    for name, opts in cfg.items():
        params = inspect.signature(CHECKS[name]).parameters
        unknown = set(opts) - {"every", "at_init", "at_end"} - set(params)
        assert not unknown, f"{group}.yaml: {name} has unknown options {unknown}"
        assert opts["every"] > 0


@pytest.mark.parametrize("k", [1, 3])
def test_all_geometry_checks_run_and_agree(k):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "checks" / "full.yaml"))
    cfg["hessian"].update(inputs=2)
    runner = GeometryCallback(cfg)
    ctx = _ctx(k)
    out = runner.measure(ctx)
    for name in GEOMETRY:
        assert out[f"check/{name}/failed"] == 0.0, runner.failures
        assert out[f"check/{name}/seconds"] >= 0.0
    assert all(math.isfinite(v) for v in out.values())
    assert out["check/ntk/identity_rel_err"] < 1e-8
    assert out["check/hessian/converged"] == 1.0
    # beta in restricted_curvature is the hessian check's lambda_max (memo within the step)
    assert out["check/restricted_curvature/beta"] == out["check/hessian/loss_lambda_max"]
    assert out["check/restricted_curvature/alpha"] <= out["check/restricted_curvature/alpha_random"]
    lbar = out["check/restricted_curvature/loss_cone_min"]
    lt, ln = out["check/restricted_curvature/loss_t"], out["check/restricted_curvature/loss_next"]
    assert out["check/restricted_curvature/contraction_cone"] == pytest.approx((ln - lbar) / (lt - lbar))
    assert out["check/distance/spec_max"] > 0
    assert out["check/lipschitz/grad_theta_max"] >= out["check/lipschitz/grad_theta_mean"] > 0


def test_restricted_curvature_without_hessian_computes_its_own_beta():
    from curvlab.geometry.functional import FunctionalModel
    from curvlab.geometry.spectral import loss_hessian_extremes
    from curvlab.rsc.losses import square_loss

    ctx = _ctx(step=7)
    out = GeometryCallback({"restricted_curvature": {"every": 1, "dtype": "float64", "tol": 1e-10}}).measure(ctx)
    fm = FunctionalModel.of(ctx.model, ctx.model.params())
    top, _ = loss_hessian_extremes(fm.loss_fn(square_loss, ctx.x, ctx.y), fm.theta(), with_min=False, tol=1e-10)
    assert out["check/restricted_curvature/beta"] == pytest.approx(top.value, rel=1e-8)
    assert math.isnan(out["check/restricted_curvature/alpha_hard"])  # no eigenvector at this step


def test_bad_option_is_a_failed_check_not_a_crash():
    runner = GeometryCallback({"ntk": {"every": 1, "kind": "nonsense"}, "distance": {"every": 1}})
    out = runner.measure(_ctx())
    assert out["check/ntk/failed"] == 1.0 and "ntk" in runner.failures
    assert out["check/distance/failed"] == 0.0


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_failing_check_is_logged_and_training_goes_on(tmp_path, monkeypatch):
    from curvlab.run.fit import run

    monkeypatch.setitem(CHECKS, "test_boom", _boom)
    cfg = _compose([
        "logger=csv", "model.width=8", "model.depth=2", "data.n=16", "trainer.max_steps=6",
        "optimizer.lr=1.0", "trainer.loss_tol=0", "progress_bar=false", "threads=1",
        "+checks.test_boom.every=1", "+checks.ntk.every=2", "+checks.distance.every=3",
    ])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    assert summary["steps"] == 6
    assert "test_boom" in summary["check_failures"]
    assert "ntk" not in summary["check_failures"]
    hist = read_history(tmp_path / "metrics.csv")
    boom = [v for v in hist["check/test_boom/failed"] if not math.isnan(v)]
    assert len(boom) >= 6 and all(v == 1.0 for v in boom)
    ntk = [v for v in hist["check/ntk/lambda_min"] if not math.isnan(v)]
    assert len(ntk) >= 3  # steps 0, 2, 4 (and the end)
    losses = [v for v in hist["loss"] if not math.isnan(v)]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert summary["final_checks"]["check/ntk/failed"] == 0.0


class _UserModule(L.LightningModule):
    """A user's own LightningModule with automatic optimization: it supplies the iterate to the
    GeometryCallback through ``check_context`` and does not collect a ``row`` of its own."""

    def __init__(self):
        super().__init__()
        self.model, self.x, self.y = tiny(n=9, m=5)
        self.theta0 = [p.detach().clone() for p in self.model.params()]
        self.measured_steps: list[int] = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.05)

    def training_step(self, batch, batch_idx):
        return (self.model(self.x) - self.y).pow(2).sum() / len(self.x)

    def check_context(self, final: bool) -> CheckContext:
        self.measured_steps.append(self.global_step)
        fused = loss_grad_and_gbar(self.model, self.x, self.y)
        return CheckContext(self.model, self.x, self.y, self.global_step, fused, self.theta0, 0.05, final)


def test_the_geometry_callback_measures_a_users_own_module(tmp_path):
    """Attached to any LightningModule that supplies ``check_context``: the checks run at their cadence
    and at the end; without a ``row`` to join, their values go to the module's loggers."""
    from lightning.pytorch.loggers import CSVLogger

    from curvlab.run.loaders import full_batch_loader

    module = _UserModule()
    cb = GeometryCallback({"ntk": {"every": 2}, "distance": {"every": 0, "at_init": False}})
    trainer = L.Trainer(max_steps=5, logger=CSVLogger(tmp_path, name="", version=""), callbacks=[cb],
                        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                        log_every_n_steps=1)
    trainer.fit(module, train_dataloaders=full_batch_loader())
    assert module.measured_steps == [0, 2, 4, 5]  # ntk at 0, 2, 4; both at the end
    hist = read_history(tmp_path / "metrics.csv")
    assert len([v for v in hist["check/ntk/lambda_min"] if not math.isnan(v)]) == 4
    summary = cb.summary()
    assert summary["check_failures"] == {} and summary["final_checks"]["check/distance/spec_max"] > 0


def test_every_check_runs_on_a_conv_net_through_the_engine_and_the_hessian_norm_is_the_dense_one():
    """A model that is not the paper's MLP: no check fails, and the predictor-Hessian norm at x_0 and
    the NTK identity agree with dense references."""
    from test_geometry_engine import convnet
    from torch.func import hessian

    from curvlab.geometry.functional import FunctionalModel
    from curvlab.rsc.gbar import fused_grads

    net, x, y = convnet(k=1)
    fm = FunctionalModel.of(net)
    theta0 = [p.detach().clone() for p in fm.params()]
    ctx = CheckContext(net, x, y, 0, fused_grads(net, x, y), theta0, lr=0.1)
    cfg = {name: {"every": 1} for name in CHECKS}
    cfg["hessian"].update(inputs=1, tol=1e-10, maxiter=2000)
    cb = GeometryCallback(cfg)
    out = cb.measure(ctx)
    assert cb.failures == {} and all(out[f"check/{n}/failed"] == 0.0 for n in CHECKS)
    H = hessian(lambda th: fm(th, x[:1])[0, 0])(fm.theta())
    assert out["check/hessian/pred_norm_max"] == pytest.approx(float(torch.linalg.eigvalsh(H).abs().max()), rel=1e-8)
    assert out["check/ntk/identity_rel_err"] < 1e-12
    assert math.isnan(out["check/hessian/pred_norm_sqrt_m"])  # this conv net has no width attribute


def test_checks_measure_on_a_fixed_seeded_subset_when_asked_to():
    ctx = _ctx(k=1)
    cb = GeometryCallback({"ntk": {"every": 1}}, subset=4, subset_seed=3)
    sub = cb.measured(ctx)
    idx = torch.randperm(ctx.x.shape[0], generator=torch.Generator().manual_seed(3))[:4]
    torch.testing.assert_close(sub.x, ctx.x[idx], rtol=0, atol=0)
    direct = GeometryCallback({"ntk": {"every": 1}}).measure(
        CheckContext(ctx.model, ctx.x[idx], ctx.y[idx], 0, loss_grad_and_gbar(ctx.model, ctx.x[idx], ctx.y[idx]),
                     ctx.theta0, ctx.lr))
    got = cb.measure(sub)
    assert got["check/ntk/lambda_min"] == direct["check/ntk/lambda_min"]
    assert got["check/ntk/identity_rel_err"] < 1e-10  # g_bar of the subset, not of all points
    assert GeometryCallback({}, subset=100).measured(ctx) is ctx  # a subset as large as the data: all of it


def _slow(ctx: CheckContext, **_: object) -> dict[str, float]:
    import time

    time.sleep(0.03)
    return {"value": 1.0}


def test_a_wall_time_budget_skips_due_checks_and_the_summary_reports_the_share(tmp_path, monkeypatch):
    """A check that costs far more than a step, due every step: with budget 0.2 most due steps are
    skipped and the share is reported; without a budget none is skipped."""
    from curvlab.run.fit import run

    monkeypatch.setitem(CHECKS, "test_slow", _slow)
    base = ["logger=csv", "model.width=8", "model.depth=2", "data.n=16", "trainer.max_steps=30", "optimizer.lr=1.0",
            "trainer.loss_tol=0", "progress_bar=false", "threads=1", "+checks.test_slow.every=1"]
    capped = run(_compose(base + ["geometry.budget=0.2"]), tmp_path / "capped")
    assert capped["status"] == "completed" and capped["checks_skipped"] > 0 and 0 < capped["check_share"] < 1
    ran = [v for v in read_history(tmp_path / "capped" / "metrics.csv")["check/test_slow/value"] if not math.isnan(v)]
    assert len(ran) + capped["checks_skipped"] == 30 + 1  # every due step, measured or skipped, and the end
    free = run(_compose(base + ["geometry.subset=8"]), tmp_path / "free")
    assert free["checks_skipped"] == 0


@pytest.mark.parametrize("override,message", [
    ("geometry.budget=0", "geometry.budget must be a share of the wall time in (0, 1] or null, got 0.0"),
    ("geometry.subset=0", "geometry.subset must be a positive integer, got 0"),
    ("+checks.hessian.hvp_mode=backward",
     "checks.hessian.hvp_mode must be one of reverse, forward, linearize, got 'backward'"),
    ("+checks.ntk.dtype=float16", "checks.ntk.dtype must be one of None, float32, float64, got 'float16'"),
])
def test_bad_geometry_settings_fail_before_training(override, message):
    from curvlab.run.errors import ConfigError
    from curvlab.tasks import validate

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(_compose(["model.width=8", "data.n=16", override]))
