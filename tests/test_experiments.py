"""Every conf/experiment/*.yaml composes and runs a step or two (an experiment without an entry in
SMALL fails: add the overrides that make it tiny)."""

from pathlib import Path

import pytest
from conftest import CONF, compose_cfg

from curvlab.run.fit import run
from curvlab.run.store import FINISHED

TINY_RSC = ["model.width=8", "data.n=32", "trainer.max_steps=2"]
TINY_RECOVERY = ["data.n=200", "data.sets=2", "init.inits=2", "trainer.max_steps=3"]

# experiment -> overrides that make one run of it tiny ("{vision}" is the fake torchvision root)
SMALL: dict[str, list[str]] = {
    "fig1_mnist": TINY_RSC + ["data.root={vision}", "data.download=false"],
    "fig1_fashion_mnist": TINY_RSC + ["data.root={vision}", "data.download=false"],
    "fig1_cifar10": TINY_RSC + ["data.root={vision}", "data.download=false"],
    # recovery
    "fig2_rho": ["rho.points=4"],
    "fig3a_fcn_success": TINY_RECOVERY + ["data.d=6"],
    "fig3b_fcn_error": TINY_RECOVERY + ["data.d=6"],
    "fig4a_cnn_success": TINY_RECOVERY + ["data.d=6"],
    "fig4b_cnn_error": TINY_RECOVERY + ["data.d=6"],
    "tensor_init_error": TINY_RECOVERY + ["data.d=6", "data.n=3000"],
    "lsc_vs_n": TINY_RECOVERY + ["data.d=6", "measures.in_ball.points=3"],
    # RSC geometry checks
    "hessian_vs_width": TINY_RSC,
    "geometry_vs_width": TINY_RSC,
    "rsc_vs_ntk": TINY_RSC + ["data.duplicates=0.25", "data.duplicate_noise=0.01"],
    # RSC claims on other models
    "rsc_convnet_width": ["model.width=2", "data.n=16", "trainer.max_steps=2", "checks.hessian.inputs=1"],
    "rsc_resnet_width": ["model.width=2", "data.n=16", "trainer.max_steps=2", "checks.hessian.inputs=1"],
    # step sizes, optimizers and losses beyond the paper's GD on the square loss
    "sharpness_vs_lr": TINY_RSC + ["checks.hessian.every=1"],
    "rsc_sgd_vs_gd": TINY_RSC + ["optimizer=sgd", "data.batch_size=8"],
    "rsc_cross_entropy": TINY_RSC + ["checks.restricted_curvature.every=1", "checks.restricted_curvature.n_dirs=2"],
}

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs(name, tmp_path: Path, vision_root, trust_cifar):
    assert name in SMALL, f"experiment {name!r} has no tiny-run entry in tests/test_experiments.py"
    overrides = [o.format(vision=vision_root) for o in SMALL[name]]
    cfg = compose_cfg([f"experiment={name}", "logger=csv", "progress_bar=false", *overrides])
    summary = run(cfg, tmp_path)
    assert summary["status"] in FINISHED
    assert (tmp_path / "summary.json").exists()
