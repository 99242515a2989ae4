"""Structured-config schemas (Hydra ConfigStore) shared by both papers: the primary config's own keys,
the trainer and logger groups, and the Gaussian init; each paper adds its own
(:mod:`curvlab.rsc.config`, :mod:`curvlab.recovery.config`).

Each YAML file of a group lists its schema first in its defaults, so a misspelt key (in a YAML file
or on the command line) or a value of the wrong type fails at composition, before any training.
Value ranges (width >= 1, n <= dataset size, ...) are checked by the tasks' ``validate`` functions
(:mod:`curvlab.tasks`) and where the data is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, SI


@dataclass
class TrainerConfig:
    """Lightning Trainer arguments; each task adds its stop rules."""

    max_steps: int = 3000
    accelerator: str = "auto"  # Lightning's: auto (a GPU when there is one) | cpu | gpu


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
    every_n_steps: int = 1  # a history row every this many steps (Lightning's log_every_n_steps)
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class GeometryConfig:
    """How the geometry checks measure (curvlab.rsc.callback.GeometryCallback)."""

    budget: Optional[float] = None  # max share of the run's wall time spent in checks; null: no cap
    subset: Optional[int] = None  # measure on this many training points (seeded); null: all of them
    subset_seed: int = 0


@dataclass
class RhoConfig:
    sigma_min: float = 0.02
    sigma_max: float = 5.0
    points: int = 250


@dataclass
class RootConfig:
    """The primary config's own keys; the groups are typed by their own schemas."""

    model: Any = None
    data: Any = None
    optimizer: Any = None
    trainer: Any = None
    init: Any = None
    loss: Any = None
    checks: Any = field(default_factory=dict)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    measures: Any = field(default_factory=dict)
    callbacks: Any = field(default_factory=dict)
    logger: Any = MISSING
    task: str = SI("${model.module}")
    seed: int = 0
    dtype: str = "float32"
    threads: Any = "auto"  # "auto" | a positive integer | None (torch's default)
    progress_bar: bool = True
    resume: bool = True
    rerun_changed: bool = False
    experiment_name: Optional[str] = None
    rho: Optional[RhoConfig] = None


SCHEMAS: dict[tuple[str | None, str], type] = {
    (None, "config_schema"): RootConfig,
    ("init", "gaussian_schema"): GaussianInitConfig,
    ("logger", "logger_schema"): LoggerConfig,
}


def register_schemas(schemas: Mapping[tuple[str | None, str], type]) -> None:
    """Store each ``(group, name) -> dataclass`` in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    for (group, name), node in schemas.items():
        cs.store(group=group, name=name, node=node)
