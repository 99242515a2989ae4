"""Bad input fails before any training with one line naming the key, the value and what is allowed;
a multirun checks every job of its grid before launching any."""

import pytest
from conftest import compose_cfg, run_cli

from curvlab.run.errors import ConfigError
from curvlab.run.fit import run
from curvlab.tasks import validate

TINY = ["logger=csv", "data.n=32", "model.width=8", "trainer.max_steps=2", "progress_bar=false"]
RECOVERY = ["experiment=fig3a_fcn_success", "logger=csv", "progress_bar=false", "data.d=4", "data.sets=1"]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["checks=default", "+checks.hessian.evry=5"], "checks.hessian.evry: check 'hessian' has no option 'evry'"),
        (["checks=default", "checks.ntk.every=-1"], "checks.ntk.every must be a non-negative integer, got -1"),
        (["+checks.hesian={every: 5}"], "checks.hesian: unknown check"),
        (["+seeds=3"], "seeds: unknown key of RootConfig"),
        (["+model.widht=8"], "model.widht: unknown key of MLPConfig"),
        (["+optimizer.lrr=1"], "optimizer.lrr: unknown key of SGDConfig"),
        (["+logger.wandb.projekt=x"], "logger.wandb.projekt: unknown key of WandbConfig"),
        (["optimizer.lr=inf"], "optimizer.lr must be auto or a finite number > 0, got inf"),
        (["optimizer.lr=0"], "optimizer.lr must be auto or a finite number > 0, got 0"),
        (["optimizer.lr=auto", "optimizer.omega=0"], "optimizer.omega must be a finite number > 0, got 0.0"),
        (["optimizer.lr=auto", "optimizer._target_=torch.optim.Adam"],
         "optimizer.lr=auto is GD's omega / beta (Lemma 5.2), for torch.optim.SGD; torch.optim.Adam takes a number"),
        (["data.batch_size=0"], "data.batch_size must be a positive integer, got 0"),
        (["data.batch_size=33"], "data.batch_size=33 exceeds data.n=32; use a smaller batch or null for full-batch GD"),
        (["optimizer=sgd", "optimizer.momentum=-0.5"], "optimizer.momentum must be a finite number >= 0, got -0.5"),
        (["loss=cross_entropy"], "loss=cross_entropy takes data.target=onehot, got 'scalar'"),
        (["loss=logistic", "data.target=onehot"], "loss=logistic takes data.target=binary, got 'onehot'"),
        (["data.target=ordinal"], "data.target must be one of scalar, onehot, binary, got 'ordinal'"),
        (["loss.name=hinge"], "loss.name must be one of square, cross_entropy, logistic, got 'hinge'"),
        (["trainer.loss_tol=-1e-3"], "trainer.loss_tol must be a finite number >= 0, got -0.001"),
        (["trainer.diverge_loss=0"], "trainer.diverge_loss must be a finite number > 0, got 0.0"),
        (["seed=-1"], "seed must be a non-negative integer, got -1"),
        (["threads=0"], "threads must be auto or a positive integer, got 0"),
        (["threads=many"], "threads must be auto or a positive integer, got 'many'"),
        (["dtype=float16"], "dtype must be one of float32, float64, got 'float16'"),
        (["init=local"], "init.name must be one of rsc, gaussian, got 'local'"),
        (["+callbacks.lin={_target_: torch.nn.Identity}"], "must name a subclass of lightning.pytorch.callbacks"),
        (["optimizer._target_=torch.nn.Tanh"], "optimizer._target_='torch.nn.Tanh' is not allowed here: it must name "
                                                "a subclass of torch.optim.optimizer.Optimizer or curvlab.recovery.gd"),
        (["+checks.x={_target_: torch.nn.Tanh}"], "configs build objects only in the groups ['callbacks', 'model', 'optimizer']"),
        (RECOVERY + ["optimizer.eta=fast"], "optimizer.eta must be auto or a finite number > 0, got 'fast'"),
        (RECOVERY + ["optimizer.eta=nan"], "optimizer.eta must be auto or a finite number > 0, got nan"),
        (RECOVERY + ["loss=logistic"], "loss=logistic is for the RSC task"),
        (RECOVERY + ["trainer.tol=-1"], "trainer.tol must be a finite number >= 0, got -1.0"),
        (RECOVERY + ["data.weights=ones"], "data.weights must be one of gaussian, orthonormal, unit, got 'ones'"),
        (RECOVERY + ["+init.radiuz=1"], "init.radiuz: unknown key of LocalInitConfig"),
        (["experiment=fig2_rho", "rho.sigma_min=6"], "need 0 < rho.sigma_min < rho.sigma_max, got 6.0, 5.0"),
    ],
)
def test_bad_values_fail_before_training_naming_the_key(overrides, message, tmp_path):
    base = [] if overrides[0].startswith("experiment=") else TINY  # the recovery setting has no width
    cfg = compose_cfg(base + overrides)
    with pytest.raises(ConfigError) as info:
        run(cfg, tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "metrics.csv").exists()


def test_a_gpu_accelerator_on_a_machine_without_one_names_the_key(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu but this machine has no usable CUDA device"):
        validate(compose_cfg(TINY + ["trainer.accelerator=gpu"]))


def test_every_shipped_experiment_validates():
    import pathlib

    from conftest import CONF

    for path in sorted(pathlib.Path(CONF, "experiment").glob("*.yaml")):
        validate(compose_cfg([f"experiment={path.stem}"]))


def test_configuration_errors_print_one_line_and_the_traceback_on_request(tmp_path):
    args = ["curvlab.train", *TINY, "optimizer.lr=inf", f"hydra.run.dir={tmp_path / 'r'}"]
    proc = run_cli(*args)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: optimizer.lr must be auto or a finite number > 0, got inf"
    assert not (tmp_path / "r").exists()  # nothing was created, let alone trained
    full = run_cli(*args, env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback" in full.stderr and "optimizer.lr must be" in full.stderr


def test_a_bad_value_in_a_grid_stops_the_sweep_before_any_job(tmp_path):
    proc = run_cli("curvlab.train", "-m", *TINY, "model.width=16,0,32", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode != 0
    assert "1 of 3 jobs cannot launch; none was launched" in proc.stderr
    assert "job 1 (" in proc.stderr and "model.width must be a positive integer, got 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.glob("*/metrics.csv")) and not any(tmp_path.glob("*/.hydra"))
