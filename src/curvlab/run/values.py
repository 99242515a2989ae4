"""Typed values shared by configs and library code: integers with a lower bound, and dtypes by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from curvlab.run.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def require_int(value: Any, what: str, low: int = 1) -> int:
    """``value`` if it is an integer >= ``low`` (a bool is not), else :class:`ConfigError` (a
    ``ValueError``) naming ``what``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        kind = "a positive integer" if low == 1 else ("a non-negative integer" if low == 0 else f"an integer >= {low}")
        raise ConfigError(f"{what} must be {kind}, got {value!r}")
    return value


def require_ints(owner: str, **values: Any) -> None:
    """:func:`require_int` for each keyword, named ``"<owner>: <name>"``: positive integers."""
    for name, value in values.items():
        require_int(value, f"{owner}: {name}")


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype of a config's ``dtype`` name."""
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {list(DTYPES)}")
    return DTYPES[name]


def check_options(where: str, kind: str, table: Mapping[str, Callable[..., Any]], name: str,
                  opts: Mapping[str, Any], skip: int, extra: tuple[str, ...] = ()) -> None:
    """``name`` must be a key of ``table`` (the {name: function} of a config group of ``kind``s), and
    every key of ``opts`` one of ``extra`` or a parameter of ``table[name]`` after its first ``skip``
    (the ones the caller passes itself)."""
    if name not in table:
        raise ConfigError(f"{where}: unknown {kind}; known {kind}s: {', '.join(sorted(table))}")
    allowed = extra + tuple(list(inspect.signature(table[name]).parameters)[skip:])
    for key in opts:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: {kind} {name!r} has no option {key!r}; "
                              f"it takes {', '.join(allowed) or 'none'}")
