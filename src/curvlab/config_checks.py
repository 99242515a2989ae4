"""Checks of a composed config that fail before any training with one clear line."""

from __future__ import annotations

from omegaconf import DictConfig

from curvlab.instantiate import check_targets


def _positive_int(value: object, key: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Raise ValueError naming the offending key for an impossible value or a ``_target_``
    outside the allow-list of :mod:`curvlab.instantiate`."""
    check_targets(cfg)
    if cfg.task == "rsc":
        _positive_int(cfg.model.width, "model.width")
        _positive_int(cfg.model.depth, "model.depth")
        _positive_int(cfg.data.n, "data.n")
        if not cfg.optimizer.lr > 0:
            raise ValueError(f"optimizer.lr must be > 0, got {cfg.optimizer.lr!r}")
    _positive_int(cfg.optimizer.max_steps, "optimizer.max_steps")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
