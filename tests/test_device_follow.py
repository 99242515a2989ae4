"""The RSC measurements follow their inputs' device (issue 5's GPU path, checked without a GPU).

Every tensor a function creates must live on the device of the model and data it is given. On
the ``meta`` device (shapes only) a tensor created with the default device lands on the CPU, and
mixing it with a meta tensor raises or leaves a CPU tensor in the result: both fail here. Only
functions without data-dependent Python control flow (``.item()``, ARPACK) can run on ``meta``.
"""

import pytest
import torch

from curvlab.geometry.flat import FlatMLP, flat_params
from curvlab.geometry.lipschitz import predictor_gradient_norms
from curvlab.geometry.ntk import empirical_ntk
from curvlab.geometry.spectral import hvp_operator
from curvlab.mlp_grads import loss_grad_and_gbar
from curvlab.models import DeepMLP

META = torch.device("meta")


def _meta_setup(k: int):
    model = DeepMLP(5, 8, 3, k).to(META)
    return model, torch.empty(6, 5, device=META), torch.empty(6, k, device=META)


def _devices(obj) -> set[torch.device]:
    if isinstance(obj, torch.Tensor):
        return {obj.device}
    if isinstance(obj, (list, tuple)):
        return set().union(*(_devices(o) for o in obj))
    if hasattr(obj, "__dict__"):
        return _devices(list(vars(obj).values()))
    return set()


@pytest.mark.parametrize("k", [1, 3])
def test_fused_gradients_and_ntk_stay_on_the_input_device(k):
    model, x, y = _meta_setup(k)
    fused = loss_grad_and_gbar(model, x, y)
    assert _devices(fused) == {META}
    for kind in ("mean", "full"):
        assert _devices(empirical_ntk(model, x, kind=kind)) == {META}
    assert _devices(predictor_gradient_norms(model, x)) == {META}


def test_hessian_vector_products_stay_on_the_input_device():
    model, x, y = _meta_setup(1)
    flat, theta = FlatMLP.of(model), flat_params(model)
    for fun in (flat.loss_fn(x, y), lambda th: flat.predict_one(th, x[0])):
        assert hvp_operator(fun, theta)(torch.empty_like(theta)).device == META


def test_a_cpu_tensor_created_inside_is_caught():
    """The check itself can fail: a function that builds a CPU tensor is flagged."""
    _, x, _ = _meta_setup(1)
    with pytest.raises((RuntimeError, NotImplementedError)):
        _ = x + torch.ones(1, 5)  # CPU tensor meets a meta tensor
    assert _devices([x * 2, torch.zeros(3)]) != {META}
