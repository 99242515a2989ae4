"""The RSC geometry checks (:mod:`curvlab.rsc.checks`) as a Lightning Callback.

:class:`GeometryCallback` runs the checks that are due at the iterate theta_t each training step
starts from (``on_train_batch_start``) and at the run's end (``on_train_end``). It times each check,
prefixes its outputs with the check name and isolates failures: a check that raises is logged as
failed and training goes on. The module supplies the iterate through ``check_context(final)``
(None when there is nothing to measure, e.g. once the run diverged); a module with a ``row`` dict
(:class:`curvlab.rsc.module.RSCModule`) takes the step's measurements into its own history row,
any other module's loggers get them as a row of their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import lightning as L

from curvlab.rsc.checks import CHECKS, CheckContext, CheckSpec, check_specs
from curvlab.run.loggers import log_row

log = logging.getLogger(__name__)


class GeometryCallback(L.Callback):
    """Geometry checks of the ``checks`` config ({name: {every, at_init, at_end, **options}})."""

    def __init__(self, checks: Mapping[str, Any] | list[CheckSpec]):
        self.specs = checks if isinstance(checks, list) else check_specs(checks)
        self.total_seconds = 0.0
        self.failures: dict[str, str] = {}
        self.final_checks: dict[str, float] = {}

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

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if not any(spec.due(trainer.global_step, False) for spec in self.specs):
            return
        ctx = pl_module.check_context(final=False)
        if ctx is None:
            return
        values = self.measure(ctx)
        if hasattr(pl_module, "row"):  # joins the step's own history row
            pl_module.row.update(values)
        else:
            log_row(pl_module, values, ctx.step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ctx = pl_module.check_context(final=True)
        if ctx is not None:
            self.final_checks = self.measure(ctx)
            log_row(pl_module, self.final_checks, ctx.step)

    def summary(self) -> dict[str, Any]:
        """The run summary's check entries: end-of-run values, seconds spent, failures."""
        return {"final_checks": self.final_checks, "check_seconds": self.total_seconds,
                "check_failures": self.failures}
