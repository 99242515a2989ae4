"""The one-hidden-layer cross-entropy recovery setting (Fu, Chi, Liang, IEEE TSP 2020).

Pure math, no Lightning: :mod:`.losses` (empirical cross entropy, closed-form gradient and exact
Hessian for FCN and CNN), :mod:`.gd` (GD over many trials as one batched tensor program),
:mod:`.metrics` (SD_n, success, aligned error, contraction factor), :mod:`.link` (alpha_q, beta_q,
rho_FCN, rho_CNN and the m_j link functions by accurate quadrature), :mod:`.init` (local and Gaussian
inits), :mod:`.tensor_init` (the tensor method) and :mod:`.geometry` (Hessian extreme eigenvalues).

Shapes: a batch of *points* is (S, P, d, K) for FCN and (S, P, m) for CNN, where S indexes training
sets (each with its own X (n, d), y (n,) and ground truth) and P points share one training set.
"""
