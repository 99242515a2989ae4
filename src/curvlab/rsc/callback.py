"""The RSC geometry checks (:mod:`curvlab.rsc.checks`) as a Lightning Callback.

:class:`GeometryCallback` runs the checks that are due at the iterate theta_t each training step
starts from (``on_train_batch_start``) and at the run's end (``on_train_end``). It times each check,
prefixes its outputs with the check name and isolates failures: a check that raises is logged as
failed and training goes on.

Two settings (the ``geometry`` config node): ``subset`` measures on a fixed seeded subset of the
training points instead of all of them (every check then sees the loss, gradient and g_bar of that
subset), and ``budget`` caps the share of the run's wall time spent in checks: a due check is
skipped while the share spent so far exceeds it (so which steps are measured depends on the
machine's speed). The summary reports the share actually spent and the checks skipped. The module supplies the iterate through ``check_context(final)``
(None when there is nothing to measure, e.g. once the run diverged); a module with a ``row`` dict
(:class:`curvlab.rsc.module.RSCModule`) takes the step's measurements into its own history row,
any other module's loggers get them as a row of their own.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from curvlab.rsc.checks import CHECKS, CheckContext, CheckSpec, check_specs
from curvlab.rsc.gbar import fused_grads
from curvlab.run.loggers import log_row

log = logging.getLogger(__name__)


class GeometryCallback(L.Callback):
    """Geometry checks of the ``checks`` config ({name: {every, at_init, at_end, **options}})."""

    def __init__(self, checks: Mapping[str, Any] | list[CheckSpec], budget: float | None = None,
                 subset: int | None = None, subset_seed: int = 0):
        self.specs = checks if isinstance(checks, list) else check_specs(checks)
        self.budget, self.subset, self.subset_seed = budget, subset, subset_seed
        self.total_seconds = 0.0
        self.skipped = 0
        self.failures: dict[str, str] = {}
        self.final_checks: dict[str, float] = {}
        self._t0: float | None = None
        self._elapsed = math.nan

    def measured(self, ctx: CheckContext) -> CheckContext:
        """``ctx`` on the measurement set: the fixed seeded ``subset`` of its points, or all of them."""
        n = ctx.x.shape[0]
        if self.subset is None or self.subset >= n:
            return ctx
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(self.subset_seed))[: self.subset]
        x, y = ctx.x[idx.to(ctx.x.device)], ctx.y[idx.to(ctx.y.device)]
        return dataclasses.replace(ctx, x=x, y=y, fused=fused_grads(ctx.model, x, y), cache={})

    def _within_budget(self) -> bool:
        """True while the checks' share of the wall time since training started is within the budget."""
        if self.budget is None or self._t0 is None:
            return True
        return self.total_seconds <= self.budget * (time.perf_counter() - self._t0)

    def measure(self, ctx: CheckContext) -> dict[str, float]:
        """The due checks at ``ctx``: ``{"check/<name>/<metric>": value}`` with each one's seconds."""
        out: dict[str, float] = {}
        for spec in self.specs:
            if not spec.due(ctx.step, ctx.final):
                continue
            t0 = time.perf_counter()
            try:
                values = CHECKS[spec.name](ctx, **spec.options)
                out.update({f"check/{spec.name}/{k}": float(v) for k, v in values.items()})
                out[f"check/{spec.name}/failed"] = 0.0
            except Exception as err:  # a failing check must not kill the run
                log.warning("check %s failed at step %d: %r", spec.name, ctx.step, err)
                self.failures[spec.name] = repr(err)
                out[f"check/{spec.name}/failed"] = 1.0
            dt = time.perf_counter() - t0
            self.total_seconds += dt
            out[f"check/{spec.name}/seconds"] = dt
        return out

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if not any(spec.due(trainer.global_step, False) for spec in self.specs):
            return
        if not self._within_budget():
            self.skipped += 1
            return
        ctx = pl_module.check_context(final=False)
        if ctx is None:
            return
        values = self.measure(self.measured(ctx))
        if hasattr(pl_module, "row"):  # joins the step's own history row
            pl_module.row.update(values)
        else:
            log_row(pl_module, values, ctx.step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ctx = pl_module.check_context(final=True)
        if ctx is not None:
            self.final_checks = self.measure(self.measured(ctx))
            log_row(pl_module, self.final_checks, ctx.step)
        if self._t0 is not None:
            self._elapsed = time.perf_counter() - self._t0

    def summary(self) -> dict[str, Any]:
        """The run summary's check entries: end-of-run values, seconds spent (and their share of the
        training time), the due checks the budget skipped, failures."""
        out: dict[str, Any] = {"final_checks": self.final_checks, "check_seconds": self.total_seconds,
                               "check_failures": self.failures}
        if self.budget is not None or self.subset is not None:
            out.update(check_share=self.total_seconds / self._elapsed if self._elapsed > 0 else math.nan,
                       checks_skipped=self.skipped)
        return out
