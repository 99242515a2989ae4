"""The model group beyond the paper's MLP: each net trains by full-batch GD through RSCModule with
||g_bar_t|| from the generic engine, and the configs that cannot be measured fail before training."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_cfg

from curvlab.geometry.flat import flatten
from curvlab.rsc.gbar import functional, fused_grads
from curvlab.rsc.losses import square_loss
from curvlab.rsc.nets import ConvNet, ResNet, TorchMLP
from curvlab.run.errors import ConfigError
from curvlab.run.fit import run
from curvlab.run.store import read_history
from curvlab.tasks import validate

TINY = ["logger=csv", "data.n=24", "trainer.max_steps=4", "progress_bar=false", "threads=1"]


@pytest.mark.parametrize("net", [TorchMLP(784, 6, 2, 3, "silu"), ConvNet(784, 2, 3, "softplus"),
                                 ResNet(784, 2, 3, "gelu"), ResNet(784, 2, 3, "tanh", norm="none")])
def test_the_generic_fused_pass_of_each_net_equals_autograd(net):
    net = net.double()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 784, generator=gen, dtype=torch.float64), torch.randn(5, 3, generator=gen, dtype=torch.float64)
    fused = fused_grads(net, x, y)
    params = functional(net).params()
    auto = torch.autograd.grad(square_loss(net(x), y), params)
    torch.testing.assert_close(flatten(fused.grad), flatten(auto), rtol=1e-11, atol=1e-14)
    f_bar = lambda: net(x).mean()  # noqa: E731  (g_bar = grad of the mean output, Definition C.1)
    torch.testing.assert_close(flatten(fused.gbar), flatten(torch.autograd.grad(f_bar(), params)), rtol=1e-11,
                               atol=1e-14)


@pytest.mark.parametrize("model", ["mlp_torch", "convnet", "resnet"])
def test_each_net_trains_by_gd_with_gbar_logged(model, tmp_path):
    summary = run(compose_cfg(TINY + [f"model={model}", "model.width=2", "init=torch", "optimizer.lr=0.01"]),
                  tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 4
    hist = read_history(tmp_path / "metrics.csv")
    assert len(hist["gbar_norm"]) == 4 and hist["loss"][-1] < hist["loss"][0]
    assert summary["min_gbar_norm"] == pytest.approx(min(hist["gbar_norm"]), rel=1e-6)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.activation=relu", "checks=default"],
         "model.activation=relu is not smooth, so the Hessian checks (hessian, restricted_curvature) measure nothing"),
        (["model.activation=relu6"], "model.activation must be one of tanh, sigmoid, softplus, gelu, silu, relu"),
        (["model=resnet"], "init.name must be one of torch, got 'rsc'"),
        (["init=torch"], "init.name must be one of rsc, gaussian, got 'torch'"),
        (["model=resnet", "init=torch", "model.norm=batch"], "model.norm must be one of group, none, got 'batch'"),
    ],
)
def test_configs_that_cannot_be_measured_fail_before_training(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg(TINY + overrides))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_nonsmooth_activation_runs_the_hessian_checks_when_asked_to():
    validate(compose_cfg(TINY + ["model.activation=relu", "checks=default", "model.allow_nonsmooth=true"]))
