"""Config schemas and value checks of the RSC setting (``task: rsc``)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING, SI, DictConfig

from curvlab.rsc.checks import check_specs
from curvlab.run.schema import TrainerConfig
from curvlab.run.validate import choice, integer, number


@dataclass
class MLPConfig:
    module: str = "rsc"  # the LightningModule that trains it (curvlab.tasks.TASKS)
    width: int = 512
    depth: int = 3
    activation: str = "tanh"


@dataclass
class ImageDataConfig:
    name: str = MISSING
    n: int = 512  # random training points (RSC paper, Section 6)
    seed: int = SI("${seed}")
    target: str = "scalar"  # scalar (k = 1) | onehot (k = 10)
    root: str = SI("${oc.env:CURVLAB_DATA,data_cache}")
    download: bool = True  # torchvision download when the files are missing
    duplicates: float = 0.0  # fraction of the n points replaced by copies of others (Remark 5.6)
    duplicate_noise: float = 0.0  # relative noise added to those copies


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 8.0


@dataclass
class GDTrainerConfig(TrainerConfig):
    loss_tol: float = 1.0e-3  # converged once the training loss is below this
    diverge_loss: float = 1.0e4  # a loss above this (or NaN/inf) marks the run diverged


@dataclass
class RSCInitConfig:
    name: str = "rsc"
    sigma1: float = 1.0


SCHEMAS: dict[tuple[str | None, str], type] = {
    ("model", "mlp_schema"): MLPConfig,
    ("data", "images_schema"): ImageDataConfig,
    ("optimizer", "sgd_schema"): SGDConfig,
    ("trainer", "gd_schema"): GDTrainerConfig,
    ("init", "rsc_schema"): RSCInitConfig,
}


def validate(cfg: DictConfig) -> None:
    """Value ranges of an RSC config and the options of its geometry checks."""
    for key in ("model.width", "model.depth", "data.n"):
        integer(cfg, key)
    number(cfg, "optimizer.lr", 0.0, strict=True)
    number(cfg, "trainer.loss_tol", 0.0, strict=False)
    number(cfg, "trainer.diverge_loss", 0.0, strict=True)
    choice(cfg, "init.name", ("rsc", "gaussian"))
    check_specs(cfg.get("checks"))
