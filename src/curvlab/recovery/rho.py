"""Fig. 2 of the recovery paper as its own job (task ``rho``, experiment ``fig2_rho``): rho_FCN(sigma)
and rho_CNN(sigma) of the sigmoid (Definitions 1-2) on an even sigma grid, by adaptive quadrature
(:mod:`curvlab.recovery.gaussian_integrals`). No training: the job computes the table and returns
it as the run's summary.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from curvlab.recovery.gaussian_integrals import rho_cnn, rho_fcn
from curvlab.run.store import COMPLETED


def rho_table(sigma_min: float, sigma_max: float, points: int) -> dict[str, Any]:
    """rho_FCN and rho_CNN at ``points`` sigmas from ``sigma_min`` to ``sigma_max``, and where rho_FCN peaks."""
    t0 = time.perf_counter()
    sigmas = np.linspace(float(sigma_min), float(sigma_max), int(points))
    f, c = rho_fcn(sigmas), rho_cnn(sigmas)
    return {"status": COMPLETED, "sigma": sigmas.tolist(), "rho_fcn": f.tolist(), "rho_cnn": c.tolist(),
            "seconds": time.perf_counter() - t0, "rho_fcn_argmax_sigma": float(sigmas[int(np.argmax(f))])}


def run(cfg: DictConfig) -> dict[str, Any]:
    """The job of a ``task: rho`` config: the table of its ``rho`` node."""
    r = cfg.rho
    return rho_table(r.sigma_min, r.sigma_max, r.points)
