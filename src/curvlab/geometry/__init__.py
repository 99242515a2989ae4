"""Model-agnostic measurements of the optimization geometry (RSC paper), on flat parameter vectors.

No Lightning in here: every function takes functions of theta (a loss, a predictor output) or
parameter tensors and returns numbers, so each can be tested alone against an independent reference.
The RSC paper's MLP supplies them through :mod:`curvlab.rsc` (its closed forms are the fast path).

* :mod:`.flat`        theta in R^p as one vector (eq. 2 / eq. 42)
* :mod:`.functional`  any ``nn.Module`` as a pure function of flat theta (``torch.func.functional_call``)
* :mod:`.gradients`   the loss gradient and g_bar together: one forward, two VJPs through it (Theorem 5.1)
* :mod:`.spectral`    Hessian-vector products (reverse- or forward-over-reverse, linearized); extreme eigenvalues
                      by early-stopped Lanczos, then ARPACK (``eigsh``), warm-startable; predictor Hessian norm
                      (Theorem 4.1) and loss Hessian extremes
* :mod:`.trace`       Hessian trace (Hutch++) and spectral density (stochastic Lanczos quadrature)
* :mod:`.ntk`         the empirical NTK of any model (chunked Gram or matrix-free) and its
                      statistics: lambda_min, 1^T K 1 / n^2 (Remark 5.5)
* :mod:`.curvature`   restricted curvature alpha_t on Q_kappa ∩ B_rho2 (Theorem 5.1), contraction
                      vs the Lemma 5.2 bound
* :mod:`.distances`   layerwise spectral distance to theta_0 (Definition 3.1, Remark 5.4)
"""

from curvlab.geometry.curvature import (
    RestrictedCurvature,
    StepCurvature,
    contraction,
    restricted_curvature,
    secant_curvature,
    step_curvature,
)
from curvlab.geometry.distances import ball_distances, spectral_norm
from curvlab.geometry.flat import flatten
from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.gradients import LossGrads, loss_grad_and_gbar
from curvlab.geometry.ntk import NTKStats, ntk_gram, ntk_matvec, ntk_stats, ntk_stats_matrix_free
from curvlab.geometry.spectral import (
    EigResult,
    extreme_eigenvalues,
    hvp_operator,
    loss_hessian_extremes,
    operator_norm,
    predictor_hessian_norm,
)
from curvlab.geometry.trace import SLQResult, density, hutchpp_trace, slq

__all__ = [
    # any module as a function of one parameter vector
    "flatten", "FunctionalModel",
    # the loss gradient and g_bar
    "LossGrads", "loss_grad_and_gbar",
    # Hessians: HVPs, Lanczos, trace and density
    "hvp_operator", "EigResult", "extreme_eigenvalues", "operator_norm",
    "predictor_hessian_norm", "loss_hessian_extremes", "hutchpp_trace", "SLQResult", "slq", "density",
    # NTK
    "ntk_gram", "ntk_matvec", "NTKStats", "ntk_stats", "ntk_stats_matrix_free",
    # restricted strong convexity
    "secant_curvature", "RestrictedCurvature", "restricted_curvature", "StepCurvature", "step_curvature",
    "contraction",
    # distances to theta_0
    "spectral_norm", "ball_distances",
]
