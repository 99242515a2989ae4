"""Activations phi with closed-form derivatives phi' (for DeepMLP's closed forms) and their
``torch.nn`` modules (for any other model). Assumption 1 of the RSC paper asks for a smooth phi
(Lipschitz, with Lipschitz phi' and bounded phi''): relu is listed only so that configs naming it
can be refused where the Hessian matters (``smooth`` is False)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Activation:
    """phi and phi' as elementwise torch functions; phi' takes (z, phi(z)) to reuse the forward."""

    name: str
    phi: Callable[[Tensor], Tensor]
    dphi: Callable[[Tensor, Tensor], Tensor]
    module: type[nn.Module]  # the same phi as a layer
    smooth: bool = True  # twice differentiable with bounded phi'' (Assumption 1)


def _gelu_grad(z: Tensor, _: Tensor) -> Tensor:
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return cdf + z * pdf


def _silu_grad(z: Tensor, _: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", torch.tanh, lambda z, a: 1.0 - a * a, nn.Tanh),
    "sigmoid": Activation("sigmoid", torch.sigmoid, lambda z, a: a * (1.0 - a), nn.Sigmoid),
    "softplus": Activation("softplus", nn.functional.softplus, lambda z, a: torch.sigmoid(z), nn.Softplus),
    "gelu": Activation("gelu", nn.functional.gelu, _gelu_grad, nn.GELU),
    "silu": Activation("silu", nn.functional.silu, _silu_grad, nn.SiLU),
    "relu": Activation("relu", torch.relu, lambda z, a: (z > 0).to(z.dtype), nn.ReLU, smooth=False),
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name; unknown names raise with the list of known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None
