"""Models beyond the paper's MLP, for asking whether its claims hold for the network one trains.
Each has a width knob that sweeps (``model.width``) and a smooth activation from
:data:`curvlab.rsc.activations.ACTIVATIONS`; each takes the flat (n, d) inputs of
:mod:`curvlab.rsc.data` and returns (n, k) outputs. Their geometry is measured by the model-agnostic
engine (:mod:`curvlab.geometry`); DeepMLP keeps its closed forms.

* :class:`TorchMLP`  ``nn.Linear`` layers with biases and PyTorch's default init (no 1/sqrt(m) scaling
                     in the forward: the scale lives in the init)
* :class:`ConvNet`   3x3 convolutions with stride 2, ``width`` and 2 ``width`` channels, then a linear head
* :class:`ResNet`    a stem and two stages of one residual block each (``width``, 2 ``width`` channels),
                     GroupNorm or no normalisation, global average pooling and a linear head

BatchNorm is not offered: it couples the samples of a batch, so f(theta; x_i) would depend on the
other inputs and the per-sample quantities of the paper (grad_theta f(theta; x_i), the NTK, the
predictor Hessian at one input) would not be defined; GroupNorm normalises each sample on its own.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from curvlab.rsc.activations import get_activation
from curvlab.run.values import require_ints

NORMS = ("group", "none")


def _image_shape(in_dim: int) -> tuple[int, int, int]:
    """(channels, height, width) of a flat square image: 784 -> (1, 28, 28), 3072 -> (3, 32, 32)."""
    for c in (1, 3):
        side = math.isqrt(in_dim // c)
        if c * side * side == in_dim:
            return c, side, side
    raise ValueError(f"in_dim={in_dim} is not a square image with 1 or 3 channels")


class TorchMLP(nn.Module):
    """``depth`` hidden ``nn.Linear`` layers of width m with biases, then a linear head."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int = 1, activation: str = "tanh"):
        super().__init__()
        require_ints("TorchMLP", in_dim=in_dim, width=width, depth=depth, out_dim=out_dim)
        self.width = width
        act = get_activation(activation).module
        dims = [in_dim] + [width] * depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), act()]
        self.net = nn.Sequential(*layers, nn.Linear(width, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """conv3x3/2 (``width`` channels) - phi - conv3x3/2 (2 ``width``) - phi - flatten - linear."""

    def __init__(self, in_dim: int, width: int, out_dim: int = 1, activation: str = "tanh"):
        super().__init__()
        require_ints("ConvNet", width=width)
        self.width = width
        self.shape = _image_shape(in_dim)
        c, h, _ = self.shape
        act = get_activation(activation).module
        side = (((h + 1) // 2) + 1) // 2
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 3, stride=2, padding=1), act(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), act(),
            nn.Flatten(), nn.Linear(2 * width * side * side, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.shape))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


class Block(nn.Module):
    """x -> phi(x' + conv(phi(norm(conv(x))))) with x' = x, or a strided 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, act: type[nn.Module]):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), _norm(norm, c_out), act(),
            nn.Conv2d(c_out, c_out, 3, padding=1), _norm(norm, c_out),
        )
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride=stride)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.skip(x) + self.body(x))


class ResNet(nn.Module):
    """stem conv3x3 (``width``) - block (``width``) - block/2 (2 ``width``) - average pool - linear."""

    def __init__(self, in_dim: int, width: int, out_dim: int = 1, activation: str = "tanh", norm: str = "group"):
        super().__init__()
        require_ints("ResNet", width=width)
        self.width = width
        self.shape = _image_shape(in_dim)
        act = get_activation(activation).module
        self.net = nn.Sequential(
            nn.Conv2d(self.shape[0], width, 3, padding=1), _norm(norm, width), act(),
            Block(width, width, 1, norm, act), Block(width, 2 * width, 2, norm, act),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.shape))
