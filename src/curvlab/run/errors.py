"""The error a bad configuration raises: one line naming the key, the value and what is allowed.

A :class:`hydra.errors.CompactHydraException`, so Hydra's command line prints only its message
(the traceback with ``HYDRA_FULL_ERROR=1``); a ``ValueError``, so callers may catch it as one.
"""

from __future__ import annotations

from hydra.errors import CompactHydraException


class ConfigError(CompactHydraException, ValueError):
    """A configuration that must not run; raised before any training."""
