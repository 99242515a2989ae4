"""The deep MLP of the RSC paper, eq. (1) (one output) and eq. (41) (k outputs).

    alpha^(0) = x,  alpha^(l) = phi(W^(l) alpha^(l-1) / sqrt(m_{l-1})),  f = V^T alpha^(L) / sqrt(m_L)

No biases. The last layer is stored as ``head`` of shape (k, m_L): row h is v_h.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from curvlab.activations import get_activation


class DeepMLP(nn.Module):
    """L hidden layers of width m with 1/sqrt(fan-in) scaling and k linear outputs."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int = 1, activation: str = "tanh"):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("width", width), ("depth", depth), ("out_dim", out_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DeepMLP: {name} must be a positive integer, got {value!r}")
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
    def out_dim(self) -> int:
        return self.head.shape[0]

    def hidden(self, x: Tensor) -> Tensor:
        """alpha^(L)(x) for a batch x of shape (n, d)."""
        a = x
        for w in self.weights:
            a = self.act.phi(a @ w.T / math.sqrt(w.shape[1]))
        return a

    def forward(self, x: Tensor) -> Tensor:
        """Predictions of shape (n, k)."""
        return self.hidden(x) @ self.head.T / math.sqrt(self.head.shape[1])
