"""Config schemas and value checks of the recovery setting (``task: recovery``, and ``task: rho`` for Fig. 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import MISSING, SI, DictConfig

from curvlab.recovery.measures import measure_specs
from curvlab.recovery.teacher import KINDS, WEIGHTS
from curvlab.recovery.tensor_init import ALPHAS, MAGNITUDES
from curvlab.run.errors import ConfigError
from curvlab.run.schema import TrainerConfig
from curvlab.run.validate import auto_or_positive, choice, integer, number


@dataclass
class OneHiddenLayerConfig:
    module: str = "recovery"  # the LightningModule that trains it (curvlab.tasks.TASKS)
    name: str = MISSING  # fcn | cnn
    K: int = 3
    success_threshold: float = 1.0e-4


@dataclass
class TeacherDataConfig:
    name: str = MISSING
    kind: str = MISSING  # fcn | cnn
    d: int = 15
    n: int = 2000
    sets: int = 50
    weights: str = "gaussian"
    cond: Optional[float] = None
    scale: float = 1.0
    seed: int = SI("${seed}")


@dataclass
class LocalInitConfig:
    name: str = "local"
    radius: float = 0.1
    mode: str = "sphere"
    inits: int = 20


@dataclass
class TensorInitConfig:
    name: str = "tensor"
    alphas: str = "axes"  # axes (all d coordinate axes: the mode-1 unfolding of M3) | random (num_alpha of them)
    num_alpha: int = 3  # random alphas (alphas=random; also the alpha of magnitude_moment=3)
    m1_direction: bool = True  # put M1's direction into the P2 subspace (it lies in span W*)
    jennrich_tries: int = 8
    cp_iters: int = 20  # Levenberg-Marquardt steps of the symmetric CP fit of R3 after Jennrich (0 = none)
    magnitudes: str = "fit"  # fit (cross entropy along the directions) | link (Algorithm 2's RecMag)
    fit_iters: int = 30  # Newton steps at most of magnitudes=fit
    magnitude_moment: int = 1
    split: bool = False
    sigma_max: float = 10.0
    inits: int = 1


@dataclass
class BatchedGDConfig:
    _target_: str = "curvlab.recovery.gd.BatchedGD"
    _partial_: bool = True
    eta: Any = "auto"  # "auto" or a number
    eta_scale: float = 1.0
    compact_every: int = 25
    record_history: bool = True
    workers: Optional[int] = None


@dataclass
class TrialsTrainerConfig(TrainerConfig):
    max_steps: int = 3500
    tol: float = 1.0e-10
    stall_patience: int = 0
    stall_tol: float = 0.0


SCHEMAS: dict[tuple[str | None, str], type] = {
    ("model", "one_hidden_schema"): OneHiddenLayerConfig,
    ("data", "teacher_schema"): TeacherDataConfig,
    ("init", "local_schema"): LocalInitConfig,
    ("init", "tensor_schema"): TensorInitConfig,
    ("optimizer", "batched_gd_schema"): BatchedGDConfig,
    ("trainer", "trials_schema"): TrialsTrainerConfig,
}


def validate(cfg: DictConfig) -> None:
    """Value ranges of a recovery config, and the names and options of its measures."""
    if cfg.get("loss") is not None and cfg.loss.name != "square":
        raise ConfigError(f"loss={cfg.loss.name} is for the RSC task; the recovery task trains its paper's own "
                          "cross-entropy (curvlab/recovery/losses.py): drop the loss override")
    kind = cfg.model.name
    if kind not in KINDS:
        raise ConfigError(f"model={kind} is not a recovery model; use model=fcn or model=cnn")
    if cfg.data.get("kind") != kind:
        raise ConfigError(f"data={cfg.data.name} generates {cfg.data.get('kind')!r} data but model={kind}; "
                          f"use data=teacher_{kind}")
    for key in ("data.d", "data.n", "data.sets", "model.K"):
        integer(cfg, key)
    if kind == "cnn" and cfg.data.d % cfg.model.K:
        raise ConfigError(f"data.d={cfg.data.d} must be divisible by model.K={cfg.model.K} for the CNN (d = m K)")
    choice(cfg, "data.weights", WEIGHTS)
    choice(cfg, "init.name", ("local", "gaussian", "tensor"))
    integer(cfg, "init.inits")
    if cfg.init.name == "tensor":
        validate_tensor_init(cfg)
    auto_or_positive(cfg, "optimizer.eta")
    number(cfg, "optimizer.eta_scale", 0.0, strict=True)
    number(cfg, "trainer.tol", 0.0, strict=False)
    measure_specs(cfg.get("measures"))


def validate_tensor_init(cfg: DictConfig) -> None:
    """The options of the tensor-method init (curvlab/recovery/tensor_init.py)."""
    choice(cfg, "init.alphas", ALPHAS)
    choice(cfg, "init.magnitudes", MAGNITUDES)
    choice(cfg, "init.magnitude_moment", (1, 3))
    for key in ("init.num_alpha", "init.jennrich_tries", "init.fit_iters"):
        integer(cfg, key)
    integer(cfg, "init.cp_iters", low=0)
    number(cfg, "init.sigma_max", 0.0, strict=True)


def validate_rho(cfg: DictConfig) -> None:
    """The sigma grid of Fig. 2."""
    if cfg.get("rho") is None:
        raise ConfigError("task=rho needs a rho node (sigma_min, sigma_max, points): use experiment=fig2_rho")
    r = cfg.rho
    integer(cfg, "rho.points")
    if not 0 < r.sigma_min < r.sigma_max:
        raise ConfigError(f"rho: need 0 < rho.sigma_min < rho.sigma_max, got {r.sigma_min}, {r.sigma_max}")
