"""Measurements at the end of a recovery run (``measures/`` config group): Hessian eigenvalues of the
empirical cross entropy f_n (Theorem 1: local strong convexity near W*).

Each measure is ``fn(data, W_hat, generator, **options) -> {summary key: value}``, listed by name in
:data:`MEASURES`; its options come from the config entry of that name and are checked against its
signature by :func:`measure_specs` before training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from curvlab.recovery import hessian
from curvlab.recovery.metrics import nanmean
from curvlab.recovery.teacher import TeacherData
from curvlab.run.values import check_options

MeasureFn = Callable[..., dict[str, Any]]



def hessian_at_truth(data: TeacherData, W_hat: Tensor, generator: torch.Generator) -> dict[str, Any]:
    """lambda_min / lambda_max of hess f_n at W*, mean over sets, and the fraction positive definite."""
    lo, hi = hessian.at_truth(data)
    return {"lambda_min_truth": nanmean(lo), "lambda_max_truth": nanmean(hi), "frac_pd_truth": nanmean((lo > 0).float())}


def hessian_at_hat(data: TeacherData, W_hat: Tensor, generator: torch.Generator) -> dict[str, Any]:
    """lambda_min / lambda_max of hess f_n at GD's output (first init of each set)."""
    lo, hi = hessian.hessian_extremes(data, W_hat[:, :1])
    return {"lambda_min_hat": nanmean(lo), "lambda_max_hat": nanmean(hi)}


def hessian_in_ball(data: TeacherData, W_hat: Tensor, generator: torch.Generator, radius: float = 0.1,
            points: int = 20) -> dict[str, Any]:
    """min over ``points`` points sampled in B(W*, radius ||W*||) of lambda_min(hess f_n), per set."""
    bm = hessian.min_eigenvalue_in_ball(data, float(radius), int(points), generator)
    return {"lambda_min_ball": nanmean(bm), "frac_pd_ball": nanmean((bm > 0).float()), "ball_radius": float(radius),
            "ball_points": int(points), "per_set": {"lambda_min_ball": bm.tolist()}}


# measure name (a key of the ``measures`` config group) -> its function
MEASURES: dict[str, MeasureFn] = {"at_truth": hessian_at_truth, "at_hat": hessian_at_hat, "in_ball": hessian_in_ball}


def measure_specs(cfg: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """{name: options} of a ``measures`` config, each name and option checked."""
    specs = {str(name): dict(opts or {}) for name, opts in (cfg or {}).items()}
    for name, opts in specs.items():
        check_options(f"measures.{name}", "measure", MEASURES, name, opts, skip=3)
    return specs
