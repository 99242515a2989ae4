"""Checks of a composed config that fail before any training with one clear line
(:class:`curvlab.errors.ConfigError`: the key, the value, what is allowed).

:func:`validate` checks a job's config: keys the schemas (:mod:`curvlab.schema`) do not know, even
when added with ``+key=value``; ``_target_`` nodes (:mod:`curvlab.instantiate`); value ranges of both
settings; the options of each geometry check. :func:`check_hydra_node` checks what Hydra itself
builds from a config (``hydra.callbacks``, the logging configs) before Hydra builds it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from curvlab.checks import check_specs
from curvlab.data.teacher import KINDS, WEIGHTS
from curvlab.errors import ConfigError
from curvlab.instantiate import check_config_targets, find_keys

# Hydra callbacks (hydra.callbacks.<name>._target_) a config may add: none is needed
HYDRA_CALLBACKS: tuple[str, ...] = ()
# classes a Hydra logging config (hydra.job_logging, hydra.hydra_logging) may name with ``class`` or ``()``
LOGGING_CLASSES = ("logging.StreamHandler", "logging.FileHandler", "logging.NullHandler", "logging.Formatter")


def _int(cfg: DictConfig, key: str, low: int = 1) -> None:
    v = OmegaConf.select(cfg, key)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{key} must be {what}, got {v!r}")


def _number(cfg: DictConfig, key: str, low: float, strict: bool) -> None:
    """``key`` must be a finite number > low (strict) or >= low."""
    v = OmegaConf.select(cfg, key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > low if strict else v >= low)
    if not ok:
        raise ConfigError(f"{key} must be a finite number {'>' if strict else '>='} {low:g}, got {v!r}")


def _choice(cfg: DictConfig, key: str, allowed: tuple[Any, ...]) -> None:
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


def _common(cfg: DictConfig) -> None:
    _choice(cfg, "task", tuple(TASK_CHECKS))
    _int(cfg, "seed", low=0)
    if cfg.seed >= 2**32:
        raise ConfigError(f"seed must be below 2**32, got {cfg.seed}")
    _choice(cfg, "dtype", ("float32", "float64"))
    _choice(cfg, "device", ("auto", "cpu", "cuda"))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but this machine has no usable CUDA device; use device=cpu or device=auto")
    if cfg.threads is not None:
        _int(cfg, "threads")
    _int(cfg, "optimizer.max_steps")
    _number(cfg, "logger.wandb.init_timeout", 0.0, strict=True)


def _rsc(cfg: DictConfig) -> None:
    for key in ("model.width", "model.depth", "data.n"):
        _int(cfg, key)
    _number(cfg, "optimizer.lr", 0.0, strict=True)
    _number(cfg, "optimizer.loss_tol", 0.0, strict=False)
    _number(cfg, "optimizer.diverge_loss", 0.0, strict=True)
    _choice(cfg, "init.name", ("rsc", "gaussian"))
    check_specs(cfg.get("checks"))


def _recovery(cfg: DictConfig) -> None:
    if cfg.get("rho") is not None:
        r = cfg.rho
        _int(cfg, "rho.points")
        if not 0 < r.sigma_min < r.sigma_max:
            raise ConfigError(f"rho: need 0 < rho.sigma_min < rho.sigma_max, got {r.sigma_min}, {r.sigma_max}")
        return
    kind = cfg.model.name
    if kind not in KINDS:
        raise ConfigError(f"model={kind} is not a recovery model; use model=fcn or model=cnn")
    if cfg.data.get("kind") != kind:
        raise ConfigError(f"data={cfg.data.name} generates {cfg.data.get('kind')!r} data but model={kind}; "
                          f"use data=teacher_{kind}")
    for key in ("data.d", "data.n", "data.sets", "model.K"):
        _int(cfg, key)
    if kind == "cnn" and cfg.data.d % cfg.model.K:
        raise ConfigError(f"data.d={cfg.data.d} must be divisible by model.K={cfg.model.K} for the CNN (d = m K)")
    _choice(cfg, "data.weights", WEIGHTS)
    _choice(cfg, "init.name", ("local", "gaussian", "tensor"))
    if "inits" in cfg.init:
        _int(cfg, "init.inits")
    lr = cfg.optimizer.lr
    if lr != "auto":
        try:
            ok = math.isfinite(float(lr)) and float(lr) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"optimizer.lr must be auto or a finite number > 0, got {lr!r}")
    _number(cfg, "optimizer.eta_scale", 0.0, strict=True)
    _number(cfg, "optimizer.tol", 0.0, strict=False)


TASK_CHECKS: dict[str, Callable[[DictConfig], None]] = {"rsc": _rsc, "recovery": _recovery}


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the offending key for a key no schema knows, a
    ``_target_`` outside the allow-list, or an impossible value."""
    _unknown_keys(cfg)
    check_config_targets(cfg)
    _common(cfg)
    TASK_CHECKS[cfg.task](cfg)


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
