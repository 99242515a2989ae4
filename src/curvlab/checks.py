"""Geometry checks that any RSC run can switch on (``checks/`` config group).

A check is a pure measurement function registered under a name; the :class:`CheckRunner` decides
when it is due (every k steps, at init, at the end), times it, prefixes its outputs with the check
name, and isolates failures: a check that raises is logged as failed and training goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from curvlab.mlp_grads import FusedGrads
from curvlab.models import DeepMLP

log = logging.getLogger(__name__)


@dataclass
class CheckContext:
    """Everything a check may look at, at iterate theta_t (before the GD update of step t)."""

    model: DeepMLP
    x: Tensor
    y: Tensor
    step: int
    fused: FusedGrads  # loss, gradient and g_bar at theta_t
    theta0: list[Tensor]  # a copy of the initial parameters, model.params() order
    lr: float
    final: bool = False


CheckFn = Callable[..., Mapping[str, float]]
REGISTRY: dict[str, CheckFn] = {}


def register(name: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator: make ``fn(ctx, **options) -> {metric: value}`` available as check ``name``."""

    def deco(fn: CheckFn) -> CheckFn:
        REGISTRY[name] = fn
        return fn

    return deco


@dataclass
class CheckSpec:
    name: str
    every: int = 0  # run at steps t with t % every == 0 (0: not on a schedule)
    at_init: bool = True
    at_end: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def due(self, step: int, final: bool) -> bool:
        if final:
            return self.at_end
        return (step == 0 and self.at_init) or (self.every > 0 and step > 0 and step % self.every == 0)


class CheckRunner:
    """Runs the due checks at a step; returns ``{"check/<name>/<metric>": value}``."""

    def __init__(self, specs: list[CheckSpec]):
        unknown = [s.name for s in specs if s.name not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known checks: {sorted(REGISTRY)}")
        for s in specs:
            if not isinstance(s.every, int) or s.every < 0:
                raise ValueError(f"checks.{s.name}.every must be a non-negative integer, got {s.every!r}")
        self.specs = specs
        self.total_seconds = 0.0
        self.failures: dict[str, str] = {}

    def run(self, ctx: CheckContext) -> dict[str, float]:
        out: dict[str, float] = {}
        for spec in self.specs:
            if not spec.due(ctx.step, ctx.final):
                continue
            t0 = time.perf_counter()
            try:
                values = REGISTRY[spec.name](ctx, **spec.options)
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


def build_checks(cfg: Mapping[str, Any] | None) -> CheckRunner | None:
    """``cfg`` maps check names to {every, at_init, at_end, **options}; empty/None disables checks."""
    if not cfg:
        return None
    import curvlab.geometry_checks  # noqa: F401  (registers the checks)

    specs = []
    for name, opts in cfg.items():
        opts = dict(opts or {})
        timing = {k: opts.pop(k) for k in ("every", "at_init", "at_end") if k in opts}
        specs.append(CheckSpec(name=name, options=opts, **timing))
    return CheckRunner(specs)
