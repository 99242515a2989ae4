"""Structured-config schemas (Hydra ConfigStore) for the config groups of both settings.

Each YAML file of these groups lists its schema first in its defaults, so a misspelt key (in a
YAML file or on the command line) or a value of the wrong type fails at composition, before any
training. Value ranges (width >= 1, n <= dataset size, ...) are checked in
:mod:`curvlab.config_checks` and where the data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, SI


@dataclass
class MLPConfig:
    width: int = 512
    depth: int = 3
    activation: str = "tanh"


@dataclass
class ImageDataConfig:
    name: str = MISSING
    n: int = 512
    seed: int = SI("${seed}")
    target: str = "scalar"
    root: str = SI("${oc.env:CURVLAB_DATA,data_cache}")
    download: bool = True
    duplicates: float = 0.0
    duplicate_noise: float = 0.0


@dataclass
class GDConfig:
    name: str = "gd"
    lr: float = 8.0
    loss_tol: float = 1.0e-3
    max_steps: int = 3000
    diverge_loss: float = 1.0e4


@dataclass
class RSCInitConfig:
    name: str = "rsc"
    sigma1: float = 1.0


@dataclass
class GaussianInitConfig:
    name: str = "gaussian"
    std: float = 1.0
    inits: int = 20


@dataclass
class WandbConfig:
    enabled: bool = True
    project: str = "curvlab"
    entity: Optional[str] = None
    mode: str = "auto"
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    init_timeout: float = 30.0


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class RecoveryGeometryConfig:
    at_truth: bool = True
    at_hat: bool = True
    ball_radius: float = 0.1
    ball_points: int = 0


@dataclass
class OneHiddenLayerConfig:
    name: str = MISSING  # fcn | cnn
    K: int = 3
    success_threshold: float = 1.0e-4
    geometry: RecoveryGeometryConfig = field(default_factory=RecoveryGeometryConfig)


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
    num_alpha: int = 3
    magnitude_moment: int = 1
    jennrich_tries: int = 8
    split: bool = False
    sigma_max: float = 10.0
    inits: int = 1


@dataclass
class GDTrialsConfig:
    name: str = "gd_trials"
    lr: Any = "auto"  # "auto" or a number
    eta_scale: float = 1.0
    max_steps: int = 3500
    tol: float = 1.0e-10
    compact_every: int = 25
    record_history: bool = True
    workers: Optional[int] = None
    stall_patience: int = 0
    stall_tol: float = 0.0


@dataclass
class RhoConfig:
    sigma_min: float = 0.02
    sigma_max: float = 5.0
    points: int = 250


@dataclass
class RootConfig:
    """The primary config's own keys; the groups are typed by their own schemas."""

    model: Any = MISSING
    data: Any = MISSING
    optimizer: Any = MISSING
    init: Any = MISSING
    checks: Any = field(default_factory=dict)
    callbacks: Any = field(default_factory=dict)
    logger: Any = MISSING
    task: str = "rsc"
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    threads: Optional[int] = None
    progress_bar: bool = True
    resume: bool = True
    rerun_changed: bool = False
    experiment_name: Optional[str] = None
    rho: Optional[RhoConfig] = None


SCHEMAS = {
    (None, "config_schema"): RootConfig,
    ("model", "mlp_schema"): MLPConfig,
    ("data", "images_schema"): ImageDataConfig,
    ("optimizer", "gd_schema"): GDConfig,
    ("init", "rsc_schema"): RSCInitConfig,
    ("init", "gaussian_schema"): GaussianInitConfig,
    ("logger", "logger_schema"): LoggerConfig,
    ("model", "one_hidden_schema"): OneHiddenLayerConfig,
    ("data", "teacher_schema"): TeacherDataConfig,
    ("init", "local_schema"): LocalInitConfig,
    ("init", "tensor_schema"): TensorInitConfig,
    ("optimizer", "gd_trials_schema"): GDTrialsConfig,
}


def register_schemas() -> None:
    cs = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        cs.store(group=group, name=name, node=node)
