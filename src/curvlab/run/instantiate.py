"""Instantiate ``_target_`` config nodes from an allow-list only.

A config (or a W&B sweep parameter, which the agent turns into a command-line override) must not
be able to import and call arbitrary code. Every ``_target_`` in a config is checked before
anything is built from it:

1. its dotted path starts with an allowed package (``curvlab``, ``torch``, ``lightning``) and not
   with a denied module, one that starts processes or loads or compiles code (``torch.distributed``,
   ``torch.multiprocessing``, ``torch.hub``, ...);
2. it resolves to a class (a function such as ``torch.load`` is refused);
3. that class is *defined* in an allowed package, so a re-export reached through an attribute chain
   (``torch.utils.cpp_extension.subprocess.Popen`` is ``subprocess.Popen``) is refused, and no class
   in its MRO is one that starts a process or thread (:data:`PROCESS_CLASSES`), wherever it lives;
4. it is a subclass of what its config group builds (:data:`GROUP_BASES`: a ``callbacks`` entry is a
   Lightning ``Callback``, an ``optimizer`` a torch ``Optimizer`` or the recovery paper's batched
   GD, a ``model`` an ``nn.Module``); a ``_target_`` outside those groups is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from curvlab.run.errors import ConfigError

ALLOWED_PACKAGES = ("curvlab", "torch", "lightning")
# modules of allowed packages whose classes start processes, or load, unpickle or compile code
DENIED_MODULES = (
    "torch.distributed",
    "torch.multiprocessing",
    "torch.hub",
    "torch.package",
    "torch.serialization",
    "torch.jit",
    "torch.compiler",
    "torch._dynamo",
    "torch._inductor",
    "torch.utils.cpp_extension",
    "torch.utils.benchmark",
    "lightning.pytorch.cli",
    "lightning.fabric.cli",
    "lightning.pytorch.strategies",
    "lightning.fabric.strategies",
)
# a class with one of these in its MRO starts a process or a thread
PROCESS_CLASSES = (
    "subprocess.Popen",
    "multiprocessing.process.BaseProcess",
    "threading.Thread",
    "concurrent.futures._base.Executor",
)
# config group -> the base class of everything its ``_target_`` nodes may build
GROUP_BASES: dict[str, tuple[str, ...]] = {
    "callbacks": ("lightning.pytorch.callbacks.callback.Callback",),
    "optimizer": ("torch.optim.optimizer.Optimizer", "curvlab.recovery.gd.BatchedGD"),
    "model": ("torch.nn.modules.module.Module",),
}
Bases = type | str | tuple[type | str, ...] | None


class UnsafeTargetError(ConfigError):
    """A ``_target_`` outside the allow-list (a configuration error: fails before training)."""


def _within(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def find_keys(node: Any, keys: Sequence[str], path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every entry named one of ``keys`` in plain nested dicts and lists."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in keys:
                yield sub, value
            else:
                yield from find_keys(value, keys, sub)
    elif isinstance(node, Sequence) and not isinstance(node, str):
        for i, value in enumerate(node):
            yield from find_keys(value, keys, f"{path}[{i}]")


def _targets(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    return find_keys(node, ("_target_",), path)


def _plain(cfg: Any) -> Any:
    """A config as plain containers with interpolations resolved: what is checked is what is built."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def check_target(target: Any, where: str = "_target_", base: Bases = None) -> type:
    """Return the class a ``_target_`` names, or raise :class:`UnsafeTargetError`; with ``base`` (a
    class, its dotted path, or a tuple of them, imported only once the name passes), the class must
    subclass it (one of them)."""
    allowed = ", ".join(ALLOWED_PACKAGES)
    refuse = f"{where}={target!r} is not allowed: configs may only instantiate classes from {allowed}"
    if not isinstance(target, str) or not _within(target, ALLOWED_PACKAGES):
        raise UnsafeTargetError(refuse)
    if _within(target, DENIED_MODULES):
        raise UnsafeTargetError(f"{refuse} (and not from {target.rsplit('.', 1)[0]}, which starts processes or loads code)")
    try:
        obj = get_object(target)
    except Exception as err:
        raise UnsafeTargetError(f"{where}={target!r} does not name an importable object: {err}") from None
    if not isinstance(obj, type):
        raise UnsafeTargetError(f"{refuse}; it names a {type(obj).__name__}, not a class")
    module = getattr(obj, "__module__", "") or ""
    if not _within(module, ALLOWED_PACKAGES) or _within(module, DENIED_MODULES):
        raise UnsafeTargetError(f"{refuse}; it is {module}.{obj.__qualname__}")
    starts = [_qualname(c) for c in obj.__mro__ if _qualname(c) in PROCESS_CLASSES]
    if starts:
        raise UnsafeTargetError(f"{where}={target!r} is not allowed: it is a {starts[0]}, which starts processes")
    if base is None:
        return obj
    bases = tuple(get_object(b) if isinstance(b, str) else b for b in (base if isinstance(base, tuple) else (base,)))
    if not issubclass(obj, bases):
        names = " or ".join(_qualname(b) for b in bases)
        raise UnsafeTargetError(f"{where}={target!r} is not allowed here: it must name a subclass of {names}")
    return obj


def check_targets(cfg: Any, base: Bases = None) -> None:
    """Check every ``_target_`` anywhere in ``cfg`` (nested dicts and lists included; values are
    resolved as they are read), each against ``base`` if given."""
    for where, target in _targets(_plain(cfg), ""):
        check_target(target, where, base)


def check_config_targets(cfg: DictConfig) -> None:
    """Check every ``_target_`` of a composed config (its ``hydra`` node aside): only the groups of
    :data:`GROUP_BASES` build objects, each only subclasses of its base."""
    for group, node in cfg.items():
        found = list(_targets(_plain(node), str(group))) if group != "hydra" else []
        if not found:
            continue
        if group not in GROUP_BASES:
            where, target = found[0]
            raise UnsafeTargetError(
                f"{where}={target!r} is not allowed: configs build objects only in the groups {sorted(GROUP_BASES)}")
        for where, target in found:
            check_target(target, where, GROUP_BASES[group])


def safe_instantiate(cfg: Any, base: Bases = None, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` after :func:`check_targets` on the resolved config."""
    plain = _plain(cfg)
    check_targets(plain, base)
    return instantiate(plain, **kwargs)
