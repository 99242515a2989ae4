"""Pieces shared by the LightningModules of both settings."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset


class _Forever(IterableDataset):
    """Yields an empty batch forever: full-batch modules keep their data on the module, so
    Lightning's per-step data cost is nil and ``max_steps`` / ``should_stop`` end training."""

    def __iter__(self) -> Iterator[tuple]:
        while True:
            yield ()


def full_batch_loader() -> DataLoader:
    return DataLoader(_Forever(), batch_size=None)


def resolve_dtype(name: str) -> torch.dtype:
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if name not in dtypes:
        raise ValueError(f"unknown dtype {name!r}; choose one of {list(dtypes)}")
    return dtypes[name]


def is_diverged(loss: float, bound: float) -> bool:
    """A loss that is NaN/inf or above ``bound`` marks the run diverged."""
    return not math.isfinite(loss) or loss > bound


def log_row(module: L.LightningModule, metrics: Mapping[str, Any], step: int) -> None:
    """One history row, straight to the module's loggers. Lightning's ``self.log`` would carry a
    key's last value into every later row of an endless full-batch epoch (checks that run only on
    some steps, end-of-run measurements)."""
    row = {k: float(v) for k, v in metrics.items()}
    for lg in module.loggers:
        lg.log_metrics(row, step=step)
