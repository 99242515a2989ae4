"""Running jobs, independent of either paper: results on disk, the exclusive claim of a run folder,
loggers, config schemas and checks, and allow-listed instantiation.

:mod:`curvlab.run.fit` (a job through a Lightning Trainer) and :mod:`curvlab.run.loggers` import
Lightning and are imported on use.
"""

from curvlab.run.claim import ClaimHeld, claim
from curvlab.run.errors import ConfigError
from curvlab.run.instantiate import check_target, safe_instantiate
from curvlab.run.store import FINISHED, PLOTTED, Run, load_runs, read_summary, write_summary
from curvlab.run.validate import check_hydra_node, validate_common
from curvlab.run.values import DTYPES, check_options, require_int, resolve_dtype

__all__ = [
    # results on disk
    "Run", "load_runs", "read_summary", "write_summary", "FINISHED", "PLOTTED", "claim", "ClaimHeld",
    # configuration: errors, values, checks
    "ConfigError", "require_int", "check_options", "DTYPES", "resolve_dtype", "validate_common", "check_hydra_node",
    # building objects from configs
    "safe_instantiate", "check_target",
]
