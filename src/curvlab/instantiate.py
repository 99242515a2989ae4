"""Instantiate ``_target_`` config nodes from an allow-list of packages only.

A config (or a W&B sweep parameter, which the agent turns into a command-line override) must not
be able to import and call arbitrary code. Every ``_target_`` in a config is checked before
anything is imported from it or called:

1. its dotted path starts with an allowed package (``curvlab``, ``torch``, ``lightning``) and not
   with a denied module that loads or compiles code (``torch.hub``, ``torch.package``, ...);
2. it resolves to a class (a function such as ``torch.load`` is refused);
3. that class is *defined* in an allowed package, so a re-export reached through an attribute chain
   (``torch.utils.cpp_extension.subprocess.Popen`` is ``subprocess.Popen``) is refused.

This closes arbitrary import paths; it does not audit what an allowed class's constructor does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

ALLOWED_PACKAGES = ("curvlab", "torch", "lightning")
# modules of allowed packages whose classes load, unpickle or compile code
DENIED_MODULES = (
    "torch.hub",
    "torch.package",
    "torch.serialization",
    "torch.utils.cpp_extension",
    "lightning.pytorch.cli",
    "lightning.fabric.cli",
)


class UnsafeTargetError(ValueError):
    """A ``_target_`` outside the allow-list (a configuration error: fails before training)."""


def _within(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _targets(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield sub, value
            else:
                yield from _targets(value, sub)
    elif isinstance(node, Sequence) and not isinstance(node, str):
        for i, value in enumerate(node):
            yield from _targets(value, f"{path}[{i}]")


def _plain(cfg: Any) -> Any:
    """A config as plain containers with interpolations resolved: what is checked is what is built."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def check_target(target: Any, where: str = "_target_") -> type:
    """Return the class a ``_target_`` names, or raise :class:`UnsafeTargetError`."""
    allowed = ", ".join(ALLOWED_PACKAGES)
    refuse = f"{where}={target!r} is not allowed: configs may only instantiate classes from {allowed}"
    if not isinstance(target, str) or not _within(target, ALLOWED_PACKAGES):
        raise UnsafeTargetError(refuse)
    if _within(target, DENIED_MODULES):
        raise UnsafeTargetError(f"{refuse} (and not from {target.rsplit('.', 1)[0]}, which loads code)")
    try:
        obj = get_object(target)
    except Exception as err:
        raise UnsafeTargetError(f"{where}={target!r} does not name an importable object: {err}") from None
    if not isinstance(obj, type):
        raise UnsafeTargetError(f"{refuse}; it names a {type(obj).__name__}, not a class")
    module = getattr(obj, "__module__", "") or ""
    if not _within(module, ALLOWED_PACKAGES) or _within(module, DENIED_MODULES):
        raise UnsafeTargetError(f"{refuse}; it is {module}.{obj.__qualname__}")
    return obj


def check_targets(cfg: Any) -> None:
    """Check every ``_target_`` anywhere in ``cfg`` (nested dicts and lists included; values are
    resolved as they are read; Hydra's own ``hydra`` node of a composed config is skipped)."""
    if isinstance(cfg, Mapping) and "hydra" in cfg:
        cfg = {k: v for k, v in cfg.items() if k != "hydra"}
    for where, target in _targets(cfg, ""):
        check_target(target, where)


def safe_instantiate(cfg: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` after :func:`check_targets` on the resolved config."""
    plain = _plain(cfg)
    check_targets(plain)
    return instantiate(plain, **kwargs)
