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
GEOMETRY = ("hessian", "ntk", "restricted_curvature", "distance", "lipschitz")


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
    from curvlab.rsc.model import FlatMLP
    from curvlab.geometry.flat import flatten
    from curvlab.geometry.spectral import loss_hessian_extremes

    ctx = _ctx(step=7)
    out = GeometryCallback({"restricted_curvature": {"every": 1, "dtype": "float64", "tol": 1e-10}}).measure(ctx)
    top, _ = loss_hessian_extremes(FlatMLP.of(ctx.model).loss_fn(ctx.x, ctx.y), flatten(ctx.model.params()), with_min=False,
                                   tol=1e-10)
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

    from curvlab.run.fit import full_batch_loader

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
