"""The deep MLP of the RSC paper, eq. (1) (one output) and eq. (41) (k outputs).

    alpha^(0) = x,  alpha^(l) = phi(W^(l) alpha^(l-1) / sqrt(m_{l-1})),  f = V^T alpha^(L) / sqrt(m_L)

No biases. The last layer is stored as ``head`` of shape (k, m_L): row h is v_h. :func:`mlp_forward`
is the one forward pass; as a function of the flat theta (eq. 2 / eq. 42) for ``torch.func`` it is
``curvlab.rsc.gbar.functional(model)``, which keeps the paper's parameter order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from curvlab.rsc.activations import Activation, get_activation
from curvlab.run.values import require_ints


def mlp_forward(
    weights: Sequence[Tensor], head: Tensor, act: Activation, x: Tensor, layers: list | None = None
) -> Tensor:
    """f(theta; x) of shape (n, k) for x of shape (n, d); with ``layers`` a list, appends each hidden
    layer's (scaled pre-activation z^(l), alpha^(l)) to it for backpropagation."""
    a = x
    for w in weights:
        z = (a @ w.T) * (1.0 / math.sqrt(w.shape[1]))
        a = act.phi(z)
        if layers is not None:
            layers.append((z, a))
    return a @ head.T / math.sqrt(head.shape[1])


class DeepMLP(nn.Module):
    """L hidden layers of width m with 1/sqrt(fan-in) scaling and k linear outputs."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int = 1, activation: str = "tanh"):
        super().__init__()
        require_ints("DeepMLP", in_dim=in_dim, width=width, depth=depth, out_dim=out_dim)
        self.act = get_activation(activation)
        self.widths = [in_dim] + [width] * depth
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(m_out, m_in)) for m_in, m_out in zip(self.widths[:-1], self.widths[1:])
        )
        self.head = nn.Parameter(torch.empty(out_dim, width))

    def params(self) -> list[nn.Parameter]:
        """theta in the paper's order (eq. 2): W^(1), ..., W^(L), V."""
        return [*self.weights, self.head]

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def width(self) -> int:
        """m, the width of the last hidden layer."""
        return self.head.shape[1]

    @property
    def out_dim(self) -> int:
        return self.head.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """Predictions of shape (n, k)."""
        return mlp_forward(self.weights, self.head, self.act, x)
