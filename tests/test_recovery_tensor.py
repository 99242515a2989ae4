"""The tensor method recovers W* (permutation- and sign-aware) with error falling in n; GD from it
and from a local init end at the same point for large n."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest
import torch

from curvlab.recovery import gd, tensor_init as ti
from curvlab.recovery.init import local_init
from curvlab.recovery.teacher import sample_teacher


def _errors(kind, d, K, ns, scale, seed=0, S=6, **kw):
    out = []
    for n in ns:
        td = sample_teacher(kind, S, n, d, K, seed=seed, weights="orthonormal" if kind == "fcn" else "unit",
                            scale=scale)
        W0 = ti.tensor_init(td, torch.Generator().manual_seed(7), **kw)
        out.append(ti.init_error(kind, W0, td.W_star).median().item())
    return out


def test_fcn_tensor_method_error_falls_with_n():
    err = _errors("fcn", 5, 2, [3000, 30000, 300000], scale=2.0)
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.15


def test_cnn_tensor_method_error_falls_with_n():
    err = _errors("cnn", 12, 3, [1000, 10000, 100000], scale=2.0)
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.1


def test_signs_are_recovered():
    """Negating W* flips the labels' dependence: the estimate must follow (no sign ambiguity left)."""
    td = sample_teacher("cnn", 4, 100000, 12, 3, seed=3, weights="unit", scale=2.0)
    W0 = ti.tensor_init(td, torch.Generator().manual_seed(0))
    cos = torch.nn.functional.cosine_similarity(W0, td.W_star, dim=1)
    assert (cos > 0.9).all()


def test_magnitude_from_third_moment_also_works():
    err = _errors("cnn", 12, 3, [200000], scale=2.0, magnitude_moment=3)
    assert err[0] < 0.15


@pytest.mark.parametrize("kind,d,K,n", [("fcn", 5, 2, 200000), ("cnn", 12, 3, 20000)])
def test_gd_from_tensor_and_local_init_meet(kind, d, K, n):
    td = sample_teacher(kind, 3, n, d, K, seed=1, weights="orthonormal" if kind == "fcn" else "unit", scale=2.0)
    W_t = ti.tensor_init(td, torch.Generator().manual_seed(2)).unsqueeze(1)
    W_l = local_init(td.W_star, 1, 0.1, torch.Generator().manual_seed(3))
    eta = gd.step_sizes(td)
    a = gd.run_gd(td, W_t, eta, max_iter=3000, tol=1e-11)
    b = gd.run_gd(td, W_l, eta, max_iter=3000, tol=1e-11)
    assert a.converged.all() and b.converged.all()
    Wa = a.W
    if kind == "fcn":
        from curvlab.recovery.metrics import align_columns

        Wa = align_columns(a.W, td.W_star)
    assert (Wa - b.W).flatten(1).norm(dim=1).max() < 1e-7
