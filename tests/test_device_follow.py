"""The RSC measurements follow their inputs' device (the GPU path, checked without a GPU).

Every tensor a function creates must live on the device of the model and data it is given. On
the ``meta`` device (shapes only) a tensor created with the default device lands on the CPU, and
mixing it with a meta tensor raises or leaves a CPU tensor in the result: both fail here. Code with
data-dependent steps (``.item()``, ARPACK, SVDs) runs on the fake device of ``tests/fake_device.py``.
"""

import math

import pytest
import torch
import yaml
from conftest import CONF
from fake_device import fake_device

from curvlab.rsc.callback import GeometryCallback
from curvlab.rsc.checks import CheckContext
from curvlab.rsc.init import rsc_init

from curvlab.geometry.flat import flatten
from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.spectral import hvp_operator
from curvlab.rsc.gbar import loss_grad_and_gbar
from curvlab.rsc.lipschitz import predictor_gradient_norms
from curvlab.rsc.losses import square_loss
from curvlab.rsc.model import DeepMLP
from curvlab.rsc.ntk import empirical_ntk

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
    flat, theta = FunctionalModel.of(model, model.params()), flatten(model.params())
    for fun in (flat.loss_fn(square_loss, x, y), lambda th: flat(th, x[0][None])[0, 0]):
        assert hvp_operator(fun, theta)(torch.empty_like(theta)).device == META


def _all_checks_once(device: torch.device | None) -> tuple[dict[str, float], dict]:
    """Every geometry check of ``checks=full`` at one iterate of a float64 MLP, on ``device``."""
    model = DeepMLP(5, 8, 2, 1).double()
    rsc_init(model, 1.0, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 5, generator=gen, dtype=torch.float64), torch.randn(12, 1, generator=gen, dtype=torch.float64)
    theta0 = [p.detach().clone() for p in model.params()]
    if device is not None:
        model, x, y, theta0 = model.to(device), x.to(device), y.to(device), [t.to(device) for t in theta0]
    with torch.no_grad():
        for p in model.params():
            p.add_(0.01)  # away from theta0: distances are not zero
    cfg = yaml.safe_load((CONF / "checks" / "full.yaml").read_text())
    for opts in cfg.values():
        opts["every"] = 1
    cfg["hessian"]["inputs"] = 2
    runner = GeometryCallback(cfg)
    out = runner.measure(CheckContext(model, x, y, 1, loss_grad_and_gbar(model, x, y), theta0, 0.5, final=True))
    return {k: v for k, v in out.items() if not k.endswith("/seconds")}, runner.failures


def test_every_check_runs_on_another_device_and_equals_cpu():
    """ARPACK, SVDs and sampled directions round-trip through the host explicitly."""
    ref, ref_failures = _all_checks_once(None)
    with fake_device():
        got, failures = _all_checks_once(META)
    assert ref_failures == {} and failures == {}
    assert ref.keys() == got.keys() and len(ref) > 40
    # eigvalsh's round-off is eps * ||K||: the NTK's lambda_min is compared on the scale of lambda_max
    scale = {"check/ntk/lambda_min": ref["check/ntk/lambda_max"], "check/ntk/lambda_min_rel": 1.0}
    bad = {k: (ref[k], got[k]) for k in ref
           if not (math.isclose(ref[k], got[k], rel_tol=1e-12, abs_tol=1e-12 * scale.get(k, 0.0))
                   or ref[k] != ref[k] and got[k] != got[k])}
    assert bad == {}  # eigvalsh through the tensor subclass: round-off only


def test_a_cpu_tensor_created_inside_is_caught():
    """The check itself can fail: a function that builds a CPU tensor is flagged."""
    _, x, _ = _meta_setup(1)
    with pytest.raises((RuntimeError, NotImplementedError)):
        _ = x + torch.ones(1, 5)  # CPU tensor meets a meta tensor
    assert _devices([x * 2, torch.zeros(3)]) != {META}
