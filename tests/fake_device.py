"""A fake accelerator for tests on a CPU-only machine.

``Fake`` holds CPU data but reports the ``meta`` device, so data-dependent code (``.item()``,
repacking, numpy round trips) runs on real numbers, while every op that mixes it with a plain CPU
tensor (other than a 0-dim one, as CUDA allows) raises: a tensor created without the input's device,
or a CPU-only step without its explicit ``.cpu()`` / ``.to(device)``. Results on the fake device use
the same CPU kernels, so they must equal the CPU results.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

META = torch.device("meta")
CPU = torch.device("cpu")


class Fake(torch.Tensor):
    """A CPU tensor ``inner`` that reports the ``meta`` device."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> "Fake":
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, strides=inner.stride(),
                                                   storage_offset=inner.storage_offset(), dtype=inner.dtype,
                                                   device=META, requires_grad=False)

    def __init__(self, inner: torch.Tensor):
        self.inner = inner

    def tolist(self) -> Any:  # a device-to-host copy, as on CUDA (torch refuses it for subclasses)
        return self.inner.tolist()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _run(func, args: tuple, kwargs: dict) -> Any:
    """Check the devices of ``func``'s tensor arguments, run it on the CPU data, wrap what it returns
    when it ran on the fake device."""
    flat, spec = pytree.tree_flatten((args, kwargs))
    fakes = {id(a.inner): a for a in flat if isinstance(a, Fake)}
    dev = kwargs.get("device")
    to_fake = torch.device(dev) == META if dev is not None else bool(fakes)
    moving = func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default)
    for a in flat:
        if type(a) is torch.Tensor and (a.device != CPU or (fakes and a.dim() > 0 and not moving)):
            raise RuntimeError(f"{func}: a {tuple(a.shape)} tensor on device {a.device} meets tensors on the "
                               f"fake device")
    flat = [a.inner if isinstance(a, Fake) else a for a in flat]
    args, kwargs = pytree.tree_unflatten(flat, spec)
    if dev is not None and to_fake:
        kwargs["device"] = CPU
    out = func(*args, **kwargs)

    def wrap(o: Any) -> Any:
        if not isinstance(o, torch.Tensor):
            return o
        if id(o) in fakes:  # in place or out=: the argument itself
            return fakes[id(o)]
        return Fake(o) if to_fake else o

    return pytree.tree_map(wrap, out)


class FakeDevice(TorchDispatchMode):
    """Factories and ``.to`` with ``device="meta"`` give ``Fake`` tensors."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


@contextmanager
def fake_device() -> Iterator[None]:
    """``torch.tensor`` / ``torch.as_tensor`` of Python or numpy data bypass the dispatcher: they build
    on the CPU and wrap."""
    orig = torch.tensor, torch.as_tensor

    def from_data(make):
        def f(data, *args, device=None, **kwargs):
            if device is not None and torch.device(device) == META:
                return Fake(make(data, *args, **kwargs))
            return make(data, *args, device=device, **kwargs)
        return f

    torch.tensor, torch.as_tensor = map(from_data, orig)
    try:
        with FakeDevice():
            yield
    finally:
        torch.tensor, torch.as_tensor = orig
