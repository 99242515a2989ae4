"""Pure measurements of the optimization geometry of :class:`~curvlab.models.DeepMLP` (RSC paper).

No Lightning in here: every function takes a model (or a flat parameter vector) and data and
returns numbers, so each can be tested alone against an independent reference.

* :mod:`.flat`        flat-parameter view theta in R^p (eq. 2 / eq. 42) for ``torch.func``
* :mod:`.spectral`    Hessian-vector products; extreme eigenvalues by Lanczos (scipy ``eigsh``);
                      predictor Hessian spectral norm (Theorem 4.1) and loss Hessian extremes
* :mod:`.ntk`         empirical NTK by the structured per-layer formula, lambda_min, 1^T K 1 / n^2
* :mod:`.curvature`   restricted curvature alpha_t on Q_kappa ∩ B_rho2 (Theorem 5.1), contraction
                      vs the Lemma 5.2 bound
* :mod:`.distances`   layerwise spectral distance to theta_0 (Definition 3.1, Remark 5.4)
* :mod:`.lipschitz`   ||grad_theta f|| and ||grad_x f|| (Lemma 4.1)
"""
