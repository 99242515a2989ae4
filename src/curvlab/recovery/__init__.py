"""The one-hidden-layer cross-entropy recovery paper (Fu, Chi, Liang, IEEE TSP 2020).

Pure math, no Lightning, in these modules; :class:`curvlab.recovery.module.RecoveryModule` (the GD
experiments through Lightning), :mod:`curvlab.recovery.rho` (Fig. 2's job) and
:mod:`curvlab.recovery.figures` are imported on use.

Shapes: a batch of *points* is (S, P, d, K) for FCN and (S, P, m) for CNN, where S indexes training
sets (each with its own X (n, d), y (n,) and ground truth) and P points share one training set.
"""

from curvlab.recovery.gaussian_integrals import alpha, beta, invert_link, link, rho_cnn, rho_fcn
from curvlab.recovery.gd import BatchedGD, GDResult, run_gd, step_sizes
from curvlab.recovery.hessian import at_truth, hessian_extremes, min_eigenvalue_in_ball
from curvlab.recovery.init import gaussian_init, local_init
from curvlab.recovery.losses import grad, loss
from curvlab.recovery.measures import MEASURES, measure_specs
from curvlab.recovery.metrics import align_columns, contraction_factor, normalized_error, scaled_n, sd_n, success
from curvlab.recovery.teacher import TeacherData, sample_teacher
from curvlab.recovery.tensor_init import tensor_method

__all__ = [
    # the teacher (Section II)
    "TeacherData", "sample_teacher",
    # empirical cross entropy: loss and gradient (FCN and CNN); the exact Hessian is losses.hessian
    "loss", "grad",
    # Gaussian integrals: alpha_q, beta_q, rho (Definitions 1-2, Fig. 2), link functions m_j (Definition 3)
    "alpha", "beta", "rho_fcn", "rho_cnn", "link", "invert_link",
    # initializations: near W*, Gaussian, the tensor method (Algorithm 2)
    "local_init", "gaussian_init", "tensor_method",
    # batched GD over all trials of a grid point
    "BatchedGD", "GDResult", "run_gd", "step_sizes",
    # local strong convexity (Theorem 1)
    "hessian_extremes", "at_truth", "min_eigenvalue_in_ball", "MEASURES", "measure_specs",
    # metrics of Figs. 3-4
    "sd_n", "success", "align_columns", "normalized_error", "contraction_factor", "scaled_n",
]
