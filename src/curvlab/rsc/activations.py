"""Smooth activations phi with closed-form derivatives phi' (Assumption 1 of the RSC paper)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Activation:
    """phi and phi' as elementwise torch functions; phi' takes (z, phi(z)) to reuse the forward."""

    name: str
    phi: Callable[[Tensor], Tensor]
    dphi: Callable[[Tensor, Tensor], Tensor]


def _gelu_grad(z: Tensor, _: Tensor) -> Tensor:
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return cdf + z * pdf


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", torch.tanh, lambda z, a: 1.0 - a * a),
    "sigmoid": Activation("sigmoid", torch.sigmoid, lambda z, a: a * (1.0 - a)),
    "softplus": Activation("softplus", torch.nn.functional.softplus, lambda z, a: torch.sigmoid(z)),
    "gelu": Activation("gelu", torch.nn.functional.gelu, _gelu_grad),
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name; unknown names raise with the list of known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None
