"""Any ``nn.Module`` as a pure function of one flat parameter vector theta, for ``torch.func``.

:class:`FunctionalModel` splits theta into the module's trainable parameters (``named_parameters``
order, each row-major) and calls the module through ``torch.func.functional_call`` with its buffers
as they are; the module itself is never modified. Every model-agnostic measurement in
:mod:`curvlab.geometry` takes one of these, so it works for an MLP, a conv net or a ResNet alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from curvlab.geometry.flat import flatten


@dataclass(frozen=True)
class FunctionalModel:
    """theta -> f(theta; x) of a module; ``names`` and ``shapes`` give theta's layout."""

    module: nn.Module
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, module: nn.Module, params: Sequence[nn.Parameter] | None = None) -> FunctionalModel:
        """theta is ``params`` in their order (e.g. ``DeepMLP.params()``, the paper's eq. 2), by default
        the module's trainable parameters in ``named_parameters`` order."""
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if params is not None:
            name_of = {id(p): n for n, p in named}
            named = [(name_of[id(p)], p) for p in params]
        return cls(module, tuple(n for n, _ in named), tuple(p.shape for _, p in named))

    @property
    def sizes(self) -> list[int]:
        return [s.numel() for s in self.shapes]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def params(self) -> list[Tensor]:
        """The module's current trainable parameters, theta's blocks."""
        named = dict(self.module.named_parameters())
        return [named[n] for n in self.names]

    def theta(self) -> Tensor:
        """The current parameters as one detached vector."""
        return flatten(self.params())

    def unflatten(self, theta: Tensor) -> list[Tensor]:
        """Per-parameter views of a flat vector (theta, a direction or a gradient)."""
        return [t.view(s) for t, s in zip(torch.split(theta, self.sizes), self.shapes)]

    def __call__(self, theta: Tensor, x: Tensor) -> Tensor:
        """f(theta; x) with the module's buffers; outputs of shape (n, k) (a 1-d output is (n, 1))."""
        out = functional_call(self.module, dict(zip(self.names, self.unflatten(theta))), (x,))
        return out[:, None] if out.dim() == 1 else out

    def loss_fn(self, loss: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        """theta -> loss(f(theta; x), y)."""
        return lambda theta: loss(self(theta, x), y)
