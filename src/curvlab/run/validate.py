"""Checks of a composed config that fail before any training with one clear line
(:class:`curvlab.run.errors.ConfigError`: the key, the value, what is allowed).

:func:`validate_common` checks what every job's config must satisfy: keys the schemas do not know,
even when added with ``+key=value``; ``_target_`` nodes (:mod:`curvlab.run.instantiate`); shared
values. Each task adds its own checks with :func:`integer`, :func:`number`, :func:`auto_or_positive`
and :func:`choice`
(:func:`curvlab.tasks.validate` runs both). :func:`check_hydra_node` checks what Hydra itself builds
from a config (``hydra.callbacks``, the logging configs) before Hydra builds it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from curvlab.run.errors import ConfigError
from curvlab.run.instantiate import check_config_targets, find_keys
from curvlab.run.values import DTYPES, require_int

# Hydra callbacks (hydra.callbacks.<name>._target_) a config may add: none is needed
HYDRA_CALLBACKS: tuple[str, ...] = ()
# classes a Hydra logging config (hydra.job_logging, hydra.hydra_logging) may name with ``class`` or ``()``
LOGGING_CLASSES = ("logging.StreamHandler", "logging.FileHandler", "logging.NullHandler", "logging.Formatter")


def integer(cfg: DictConfig, key: str, low: int = 1) -> None:
    """``key`` must be an integer >= ``low``."""
    require_int(OmegaConf.select(cfg, key), key, low)


def number(cfg: DictConfig, key: str, low: float, strict: bool) -> None:
    """``key`` must be a finite number > low (strict) or >= low."""
    v = OmegaConf.select(cfg, key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > low if strict else v >= low)
    if not ok:
        raise ConfigError(f"{key} must be a finite number {'>' if strict else '>='} {low:g}, got {v!r}")


def auto_or_positive(cfg: DictConfig, key: str) -> None:
    """``key`` must be ``auto`` (a step size the run computes) or a finite number > 0."""
    v = OmegaConf.select(cfg, key)
    if v == "auto":
        return
    try:
        ok = not isinstance(v, bool) and math.isfinite(float(v)) and float(v) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{key} must be auto or a finite number > 0, got {v!r}")


def choice(cfg: DictConfig, key: str, allowed: tuple[Any, ...]) -> None:
    v = OmegaConf.select(cfg, key)
    if v not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}, got {v!r}")


def _unknown_keys(node: DictConfig, path: str = "") -> None:
    """Keys of a schema-typed node that its dataclass does not declare (``+key=value`` adds them)."""
    schema = OmegaConf.get_type(node)
    known = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    for key in node.keys():
        if key == "hydra" and not path:
            continue  # Hydra's own node: Hydra checks it against its schema
        where = f"{path}{key}"
        if known is not None and key not in known:
            raise ConfigError(f"{where}: unknown key of {schema.__name__}; it has {', '.join(sorted(known))}")
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            _unknown_keys(child, f"{where}.")


def validate_common(cfg: DictConfig, tasks: tuple[str, ...]) -> None:
    """What every job's config must satisfy: keys the schemas know, allow-listed ``_target_`` nodes,
    a ``task`` among ``tasks`` and sane shared values. Each task then checks its own values."""
    _unknown_keys(cfg)
    check_config_targets(cfg)
    choice(cfg, "task", tasks)
    integer(cfg, "seed", low=0)
    if cfg.seed >= 2**32:
        raise ConfigError(f"seed must be below 2**32, got {cfg.seed}")
    choice(cfg, "dtype", tuple(DTYPES))
    if cfg.threads not in (None, "auto") and (not isinstance(cfg.threads, int) or isinstance(cfg.threads, bool)
                                              or cfg.threads < 1):
        raise ConfigError(f"threads must be auto or a positive integer, got {cfg.threads!r}")
    number(cfg, "logger.wandb.init_timeout", 0.0, strict=True)
    if cfg.get("trainer") is not None:
        integer(cfg, "trainer.max_steps")
        choice(cfg, "trainer.accelerator", ("auto", "cpu", "gpu"))
        if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
            raise ConfigError("trainer.accelerator=gpu but this machine has no usable CUDA device; "
                              "use trainer.accelerator=auto or cpu")


def check_hydra_node(cfg: DictConfig) -> None:
    """Refuse what Hydra would build from the ``hydra`` node of a composed config before curvlab
    sees it: callbacks off :data:`HYDRA_CALLBACKS`, and logging handlers, formatters or filters
    (``class`` / ``()``) off :data:`LOGGING_CLASSES`."""
    hydra = cfg.hydra
    for name in (hydra.get("callbacks") or {}):
        target = OmegaConf.select(hydra, f"callbacks.{name}._target_")
        if target not in HYDRA_CALLBACKS:
            raise ConfigError(f"hydra.callbacks.{name}._target_={target!r} is not allowed (Hydra callbacks allowed: "
                              f"{', '.join(HYDRA_CALLBACKS) or 'none'}); put Lightning callbacks under callbacks.{name}")
    for group in ("job_logging", "hydra_logging"):
        plain = OmegaConf.to_container(hydra[group], resolve=False) if hydra[group] is not None else None
        for where, value in find_keys(plain, ("class", "()"), f"hydra.{group}"):
            if value not in LOGGING_CLASSES:
                raise ConfigError(f"{where}={value!r} is not allowed: logging configs may name "
                                  f"{', '.join(LOGGING_CLASSES)}")
