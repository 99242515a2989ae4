"""Geometry checks that any RSC run can switch on (``checks/`` config group).

A check is a pure measurement function listed by name in :data:`curvlab.geometry_checks.CHECKS`;
the :class:`CheckRunner` decides when it is due (every k steps, at init, at the end), times it,
prefixes its outputs with the check name, and isolates failures: a check that raises is logged as
failed and training goes on.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from curvlab.errors import ConfigError
from curvlab.geometry_checks import CHECKS, CheckContext, CheckFn

log = logging.getLogger(__name__)


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


TIMING = ("every", "at_init", "at_end")


def _options(fn: CheckFn) -> tuple[str, ...]:
    """The options a check takes: its parameters after ``ctx``."""
    return tuple(list(inspect.signature(fn).parameters)[1:])


def _spec(name: str, opts: Mapping[str, Any]) -> CheckSpec:
    if name not in CHECKS:
        raise ConfigError(f"checks.{name}: unknown check; known checks: {', '.join(sorted(CHECKS))}")
    allowed = TIMING + _options(CHECKS[name])
    for key in opts:
        if key not in allowed:
            raise ConfigError(f"checks.{name}.{key}: check {name!r} has no option {key!r}; "
                              f"it takes {', '.join(allowed)}")
    every = opts.get("every", 0)
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise ConfigError(f"checks.{name}.every must be a non-negative integer, got {every!r}")
    for key in ("at_init", "at_end"):
        if not isinstance(opts.get(key, True), bool):
            raise ConfigError(f"checks.{name}.{key} must be true or false, got {opts[key]!r}")
    options = {k: v for k, v in opts.items() if k not in TIMING}
    return CheckSpec(name=name, options=options, **{k: opts[k] for k in TIMING if k in opts})


def check_specs(cfg: Mapping[str, Any] | None) -> list[CheckSpec]:
    """The checks of a ``checks`` config ({name: {every, at_init, at_end, **options}}), each option
    checked against the check's parameters: a misspelt one fails here, before training."""
    return [_spec(str(name), dict(opts or {})) for name, opts in (cfg or {}).items()]


def build_checks(cfg: Mapping[str, Any] | None) -> CheckRunner | None:
    """The runner of the configured checks; None when there are none."""
    specs = check_specs(cfg)
    return CheckRunner(specs) if specs else None
