"""The RSC paper (Banerjee, Cisneros-Velarde, Zhu, Belkin, ICLR 2023): restricted strong convexity of
deep smooth-activation MLPs, over the model-agnostic measurements of :mod:`curvlab.geometry`.

The Lightning pieces are imported on use, so configs are checked without Lightning:
:class:`curvlab.rsc.module.RSCModule` (full-batch GD, Fig. 1), :class:`curvlab.rsc.callback.GeometryCallback`
(the checks along training) and :mod:`curvlab.rsc.figures`.
"""

from curvlab.rsc.activations import ACTIVATIONS, Activation, get_activation
from curvlab.rsc.checks import CHECKS, CheckContext, CheckSpec, check_specs
from curvlab.rsc.data import ImageData, load_images
from curvlab.rsc.gbar import FusedGrads, functional, fused_grads, loss_grad_and_gbar
from curvlab.rsc.init import normal_init, rsc_init, sigma0
from curvlab.rsc.lipschitz import predictor_gradient_norms
from curvlab.rsc.losses import LOSSES, Loss, square_loss
from curvlab.rsc.model import DeepMLP, mlp_forward
from curvlab.rsc.ntk import empirical_ntk

__all__ = [
    # the model, eq. (1)/(41), and its losses (Assumption 3, Appendix B)
    "DeepMLP", "mlp_forward", "Activation", "ACTIVATIONS", "get_activation", "Loss", "LOSSES", "square_loss",
    # initialization (Assumption 2)
    "sigma0", "rsc_init", "normal_init",
    # data (Section 6)
    "ImageData", "load_images",
    # closed forms: g_bar with the gradient (Theorem 5.1), NTK (Remark 5.5), Lipschitz constants (Lemma 4.1)
    "FusedGrads", "loss_grad_and_gbar", "fused_grads", "functional", "empirical_ntk", "predictor_gradient_norms",
    # the geometry checks
    "CHECKS", "CheckContext", "CheckSpec", "check_specs",
]
