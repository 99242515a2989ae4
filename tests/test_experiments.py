"""Every conf/experiment/*.yaml composes and runs a step or two (an experiment without an entry in
SMALL fails: add the overrides that make it tiny)."""

from pathlib import Path

import pytest
from conftest import CONF, compose_cfg

from curvlab.store import FINISHED
from curvlab.train import run

TINY_RSC = ["model.width=8", "data.n=32", "optimizer.max_steps=2"]

# experiment -> overrides that make one run of it tiny ("{vision}" is the fake torchvision root)
SMALL: dict[str, list[str]] = {
    "fig1_mnist": TINY_RSC + ["data.root={vision}", "data.download=false"],
    "fig1_fashion_mnist": TINY_RSC + ["data.root={vision}", "data.download=false"],
    "fig1_cifar10": TINY_RSC + ["data.root={vision}", "data.download=false"],
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
