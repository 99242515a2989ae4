"""Config schemas and value checks of the RSC setting (``task: rsc``)."""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any, Optional

from omegaconf import MISSING, SI, DictConfig

from curvlab.rsc.activations import ACTIVATIONS
from curvlab.rsc.checks import check_specs
from curvlab.rsc.data import TARGETS
from curvlab.rsc.losses import LOSSES
from curvlab.rsc.nets import NORMS
from curvlab.run.errors import ConfigError
from curvlab.run.schema import TrainerConfig
from curvlab.run.validate import auto_or_positive, choice, integer, number


@dataclass
class MLPConfig:
    module: str = "rsc"  # the LightningModule that trains it (curvlab.tasks.TASKS)
    _target_: str = "curvlab.rsc.model.DeepMLP"
    _partial_: bool = True  # in_dim and out_dim come from the data
    width: int = 512
    depth: int = 3
    activation: str = "tanh"
    allow_nonsmooth: bool = False  # let a non-smooth activation (relu) run the Hessian checks anyway


@dataclass
class ConvNetConfig:
    module: str = "rsc"
    _target_: str = "curvlab.rsc.nets.ConvNet"
    _partial_: bool = True
    width: int = 16  # channels of the first convolution (the second has twice as many)
    activation: str = "tanh"
    allow_nonsmooth: bool = False


@dataclass
class ResNetConfig(ConvNetConfig):
    _target_: str = "curvlab.rsc.nets.ResNet"
    norm: str = "group"  # group | none


@dataclass
class TorchInitConfig:
    name: str = "torch"  # the module's own (PyTorch default) initialization, seeded by ``seed``


@dataclass
class ImageDataConfig:
    name: str = MISSING
    n: int = 512  # random training points (RSC paper, Section 6)
    seed: int = SI("${seed}")
    target: str = "scalar"  # scalar (k = 1) | onehot (k = 10) | binary (k = 1)
    root: str = SI("${oc.env:CURVLAB_DATA,data_cache}")
    download: bool = True  # torchvision download when the files are missing
    duplicates: float = 0.0  # fraction of the n points replaced by copies of others (Remark 5.6)
    duplicate_noise: float = 0.0  # relative noise added to those copies
    batch_size: Optional[int] = None  # null: full-batch GD; else shuffled mini-batches of this size


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: Any = 8.0  # a number, or auto: omega / beta_0 (Lemma 5.2) with beta_0 = lambda_max at theta_0
    omega: float = 1.0  # the step's omega of Lemma 5.2 / Theorem 5.3 when lr is auto (stable GD: < 2)
    momentum: float = 0.0


@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1.0e-3


@dataclass
class GDTrainerConfig(TrainerConfig):
    loss_tol: float = 1.0e-3  # converged once the training loss is below this
    diverge_loss: float = 1.0e4  # a loss above this (or NaN/inf) marks the run diverged


@dataclass
class LossConfig:
    name: str = "square"  # a key of curvlab.rsc.losses.LOSSES


@dataclass
class RSCInitConfig:
    name: str = "rsc"
    sigma1: float = 1.0


SCHEMAS: dict[tuple[str | None, str], type] = {
    ("model", "mlp_schema"): MLPConfig,
    ("model", "convnet_schema"): ConvNetConfig,
    ("model", "resnet_schema"): ResNetConfig,
    ("init", "torch_schema"): TorchInitConfig,
    ("data", "images_schema"): ImageDataConfig,
    ("optimizer", "sgd_schema"): SGDConfig,
    ("optimizer", "adam_schema"): AdamConfig,
    ("trainer", "gd_schema"): GDTrainerConfig,
    ("init", "rsc_schema"): RSCInitConfig,
    ("loss", "loss_schema"): LossConfig,
}


# checks whose numbers need phi'' (the Hessian): a non-smooth activation makes them meaningless
HESSIAN_CHECKS = ("hessian", "restricted_curvature")
PAPER_MLP = "curvlab.rsc.model.DeepMLP"


def validate(cfg: DictConfig) -> None:
    """Value ranges of an RSC config, the options of its geometry checks, and whether they apply."""
    for key in ("model.width", "data.n") + (("model.depth",) if "depth" in cfg.model else ()):
        integer(cfg, key)
    choice(cfg, "model.activation", tuple(ACTIVATIONS))
    auto_or_positive(cfg, "optimizer.lr")
    if cfg.optimizer.lr == "auto":
        if cfg.optimizer._target_ != "torch.optim.SGD":
            raise ConfigError(f"optimizer.lr=auto is GD's omega / beta (Lemma 5.2), for torch.optim.SGD; "
                              f"{cfg.optimizer._target_} takes a number")
        number(cfg, "optimizer.omega", 0.0, strict=True)
    if cfg.optimizer.get("momentum") is not None:
        number(cfg, "optimizer.momentum", 0.0, strict=False)
    if cfg.data.batch_size is not None:
        integer(cfg, "data.batch_size")
        if cfg.data.batch_size > cfg.data.n:
            raise ConfigError(f"data.batch_size={cfg.data.batch_size} exceeds data.n={cfg.data.n}; "
                              "use a smaller batch or null for full-batch GD")
    choice(cfg, "loss.name", tuple(LOSSES))
    choice(cfg, "data.target", TARGETS)
    targets = LOSSES[cfg.loss.name].targets
    if cfg.data.target not in targets:
        raise ConfigError(f"loss={cfg.loss.name} takes data.target={' or '.join(targets)}, got {cfg.data.target!r}")
    number(cfg, "trainer.loss_tol", 0.0, strict=False)
    number(cfg, "trainer.diverge_loss", 0.0, strict=True)
    if "norm" in cfg.model:
        choice(cfg, "model.norm", NORMS)
    paper_mlp = cfg.model._target_ == PAPER_MLP
    choice(cfg, "init.name", ("rsc", "gaussian") if paper_mlp else ("torch",))
    specs = check_specs(cfg.get("checks"))
    budget = cfg.geometry.budget
    if budget is not None and not 0 < budget <= 1:
        raise ConfigError(f"geometry.budget must be a share of the wall time in (0, 1] or null, got {budget!r}")
    if cfg.geometry.subset is not None:
        integer(cfg, "geometry.subset")
    hessian = [s.name for s in specs if s.name in HESSIAN_CHECKS]
    if hessian and not ACTIVATIONS[cfg.model.activation].smooth and not cfg.model.allow_nonsmooth:
        raise ConfigError(f"model.activation={cfg.model.activation} is not smooth, so the Hessian checks "
                          f"({', '.join(hessian)}) measure nothing the RSC paper bounds; pick one of "
                          f"{', '.join(n for n, a in ACTIVATIONS.items() if a.smooth)} or set model.allow_nonsmooth=true")
