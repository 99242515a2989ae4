"""Flat-parameter view of :class:`~curvlab.models.DeepMLP` for ``torch.func``.

theta = (vec(W^(1)), ..., vec(W^(L)), vec(V)) in R^p, the paper's order (RSC eq. 2; eq. 42 for k
outputs, where V is stored as ``head`` of shape (k, m_L), row h = v_h). ``vec`` is row-major
(``Tensor.reshape(-1)``); the order only matters for consistency between :meth:`FlatMLP.flatten`
and :meth:`FlatMLP.unflatten`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from curvlab.activations import Activation
from curvlab.models import DeepMLP


@dataclass(frozen=True)
class FlatMLP:
    """Shapes and activation of a DeepMLP; pure functions of a flat theta."""

    shapes: tuple[tuple[int, int], ...]  # W^(1..L) then head (k, m_L)
    act: Activation

    @classmethod
    def of(cls, model: DeepMLP) -> FlatMLP:
        return cls(tuple(tuple(p.shape) for p in model.params()), model.act)  # type: ignore[arg-type]

    @property
    def sizes(self) -> list[int]:
        return [a * b for a, b in self.shapes]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    @property
    def depth(self) -> int:
        return len(self.shapes) - 1

    @property
    def width(self) -> int:
        return self.shapes[-1][1]

    @property
    def out_dim(self) -> int:
        return self.shapes[-1][0]

    def flatten(self, params: list[Tensor]) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in params])

    def unflatten(self, theta: Tensor) -> list[Tensor]:
        return [t.view(s) for t, s in zip(torch.split(theta, self.sizes), self.shapes)]

    def blocks(self, vec: Tensor) -> list[Tensor]:
        """Alias of :meth:`unflatten` for any vector in parameter space (directions, gradients)."""
        return self.unflatten(vec)

    def predict(self, theta: Tensor, x: Tensor) -> Tensor:
        """f(theta; x) of eq. (1)/(41): shape (n, k) for x of shape (n, d)."""
        *ws, head = self.unflatten(theta)
        a = x
        for w in ws:
            a = self.act.phi(a @ w.T / math.sqrt(w.shape[1]))
        return a @ head.T / math.sqrt(head.shape[1])

    def predict_one(self, theta: Tensor, x: Tensor, output: int = 0) -> Tensor:
        """Scalar f_h(theta; x) for a single input x of shape (d,) (Theorem 4.1 / C.1)."""
        return self.predict(theta, x[None])[0, output]

    def loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Square loss (1/n) sum_i ||y_i - f(theta; x_i)||^2 (Section 3, Appendix C.1)."""
        return (self.predict(theta, x) - y).pow(2).sum() / x.shape[0]

    def loss_fn(self, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        return lambda theta: self.loss(theta, x, y)


def flat_params(model: DeepMLP) -> Tensor:
    """theta_t as one detached vector in the paper's order."""
    return torch.cat([p.detach().reshape(-1) for p in model.params()])


def flat(vs: list[Tensor]) -> Tensor:
    """Concatenate per-parameter tensors (e.g. ``FusedGrads.grad`` / ``.gbar``) into one vector."""
    return torch.cat([v.detach().reshape(-1) for v in vs])
