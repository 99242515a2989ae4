"""The tasks a config can run, wired explicitly in :data:`TASKS`.

A config's ``task`` is its model's ``module`` (``rsc`` or ``recovery``: the LightningModule that
trains it) or ``rho`` (Fig. 2's table, experiment ``fig2_rho``). Each task names how its config is
checked and what runs it: a training task builds its LightningModule and callbacks, a job without
training computes its summary directly. The builders import Lightning only when called, so a
config is checked without that import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from curvlab.recovery import config as recovery_config
from curvlab.rsc import config as rsc_config
from curvlab.run import schema
from curvlab.run.validate import validate_common

Built = tuple[Any, list[Any]]  # (LightningModule, callbacks)


def _build_rsc(cfg: DictConfig) -> Built:
    from curvlab.rsc.module import build

    return build(cfg)


def _build_recovery(cfg: DictConfig) -> Built:
    from curvlab.recovery.module import build

    return build(cfg)


def _compute_rho(cfg: DictConfig) -> dict[str, Any]:
    from curvlab.recovery.rho import run

    return run(cfg)


@dataclass(frozen=True)
class Task:
    validate: Callable[[DictConfig], None]  # the task's own value checks
    build: Callable[[DictConfig], Built] | None = None  # a training task: its module and callbacks
    compute: Callable[[DictConfig], dict[str, Any]] | None = None  # a job without training: its summary


TASKS: dict[str, Task] = {
    "rsc": Task(rsc_config.validate, build=_build_rsc),
    "recovery": Task(recovery_config.validate, build=_build_recovery),
    "rho": Task(recovery_config.validate_rho, compute=_compute_rho),
}

SCHEMAS = {**schema.SCHEMAS, **rsc_config.SCHEMAS, **recovery_config.SCHEMAS}


def register_schemas() -> None:
    """Register every config schema with Hydra's ConfigStore (before a config is composed)."""
    schema.register_schemas(SCHEMAS)


def validate(cfg: DictConfig) -> None:
    """Raise :class:`~curvlab.run.errors.ConfigError` naming the offending key for a key no schema
    knows, a ``_target_`` outside the allow-list, or an impossible value."""
    validate_common(cfg, tuple(TASKS))
    TASKS[cfg.task].validate(cfg)
