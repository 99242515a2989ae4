"""Where a run's results land on disk, and how a sweep's results are read back.

Each run writes into its own Hydra output folder:

* ``metrics.csv`` — the per-step history (Lightning's CSVLogger), started afresh by every run,
* ``summary.json`` — the final summary with ``status`` in {completed, converged, diverged,
  stopped (by a callback before max_steps; re-run on resume), failed} and, under ``config``, the
  resolved config that produced it; written last and atomically (temp file + rename), so a folder
  without it is incomplete and figures never read half-written results. Figures read the config
  from here, not from Hydra's ``.hydra/config.yaml``, which Hydra rewrites whenever a job is
  launched into the folder.

A result is reused only for the same *result-defining* config: the resolved config without the
keys in :data:`NON_RESULT_KEYS`, which do not change a number (:func:`config_changes`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from curvlab.run.errors import ConfigError

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
HISTORY = "metrics.csv"
# a run's status (decided by its LightningModule's ``status``, or ``failed`` by the sweep)
COMPLETED, CONVERGED, DIVERGED, STOPPED, FAILED = "completed", "converged", "diverged", "stopped", "failed"
FINISHED = (COMPLETED, CONVERGED, DIVERGED)  # a run that ran to its end: resume keeps it
PLOTTED = (COMPLETED, CONVERGED)  # a run whose numbers figures plot as data
# dotted keys of the resolved config that do not change a result (where it is logged, shown,
# resumed, how many threads compute it, where the data files live)
NON_RESULT_KEYS = (
    "logger", "progress_bar", "resume", "rerun_changed", "threads", "experiment_name",
    "data.root", "data.download", "optimizer.workers",
)


def _umask() -> int:
    mask = os.umask(0)  # os.umask can only be read by setting it: done once, at import
    os.umask(mask)
    return mask


UMASK = _umask()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, default=_jsonable)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp creates 0600; results are for the group to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"cannot serialise {type(v).__name__}")


def write_summary(run_dir: Path, summary: dict[str, Any], config: dict[str, Any]) -> None:
    """Write ``summary.json``: the summary and the resolved ``config`` that produced it."""
    write_json_atomic(Path(run_dir) / SUMMARY, {**summary, "config": config})


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The stored summary of a run folder, or None if it has none or it cannot be parsed."""
    path = Path(run_dir) / SUMMARY
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        log.warning("ignoring %s: not a readable summary (%s)", path, err)
        return None


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{dotted.key: leaf}`` (an empty dict is a leaf)."""
    if isinstance(node, dict) and node:
        return {k: v for key, sub in node.items() for k, v in flatten(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def is_result_key(key: str) -> bool:
    """Whether a dotted config key can change a result (it is not under :data:`NON_RESULT_KEYS`)."""
    return not any(key == n or key.startswith(n + ".") for n in NON_RESULT_KEYS)


def result_keys(config: dict[str, Any]) -> dict[str, Any]:
    """The result-defining part of a resolved config, as ``{dotted.key: value}``."""
    return {k: v for k, v in flatten(config).items() if is_result_key(k)}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each result-defining key that differs (``<unset>`` where absent)."""
    a, b = result_keys(old), result_keys(new)
    unset = "<unset>"
    return [f"{k}: {a.get(k, unset)!r} -> {b.get(k, unset)!r}"
            for k in sorted(a.keys() | b.keys()) if a.get(k, unset) != b.get(k, unset)]


@dataclass
class Run:
    """One finished run of a sweep: where it lives (folder or W&B path), resolved config, summary.

    ``load_history`` returns its per-step metrics as columns (missing entries NaN); it defaults
    to reading ``metrics.csv`` in the run folder and is called once, on first use.
    """

    path: Path
    config: DictConfig
    summary: dict[str, Any]
    load_history: Callable[[], dict[str, list[float]]] | None = field(default=None, repr=False)
    _history: dict[str, list[float]] | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    def history(self) -> dict[str, list[float]]:
        if self._history is None:
            self._history = self.load_history() if self.load_history else read_history(self.path / HISTORY)
        return self._history


def read_history(path: Path) -> dict[str, list[float]]:
    """A ``metrics.csv`` as columns (empty cells NaN); none if the file is absent."""
    if not Path(path).exists():
        return {}
    with open(path, newline="") as fh:
        return history_columns(fh)


def history_columns(lines: Iterable[str]) -> dict[str, list[float]]:
    """CSV lines (header first) as float columns, empty or missing cells NaN (none without a row)."""
    rows = csv.reader(lines)
    header = next(rows, [])
    width = len(header)
    body = [row[:width] + [""] * (width - len(row)) for row in rows if row]
    return {k: [float(v) if v else math.nan for v in col] for k, col in zip(header, zip(*body))}


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config a run stores with its result: resolved, without Hydra's own node."""
    return {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in cfg.items() if k != "hydra"}


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a run that ran to its end (:data:`FINISHED`), or None."""
    summary = read_summary(run_dir)
    return summary if summary is not None and summary.get("status") in FINISHED else None


def reusable(run_dir: Path, config: dict[str, Any], rerun_changed: bool) -> bool:
    """True if ``run_dir`` holds a finished result of the same result-defining ``config`` (the job
    is skipped), False if the job must run. A finished result of another config raises
    :class:`ConfigError` naming the keys that differ, unless ``rerun_changed`` (it is replaced)."""
    summary = finished_summary(run_dir)
    if summary is None:
        return False
    changes = config_changes(summary.get("config") or {}, config)
    if not changes:
        return True
    if not rerun_changed:
        raise ConfigError(f"{run_dir} holds a finished result of another config ({'; '.join(changes)}); "
                          "launch into a new folder (hydra.sweep.dir / hydra.run.dir) or pass "
                          "rerun_changed=true to replace it")
    log.warning("re-running %s: its stored result has another config (%s)", run_dir, "; ".join(changes))
    return False


def start_fresh(run_dir: Path) -> None:
    """Remove a previous attempt's summary and history, so a run never continues an old history."""
    for name in (SUMMARY, HISTORY, "hparams.yaml"):
        (Path(run_dir) / name).unlink(missing_ok=True)


def load_runs(sweep_dir: Path, task: str | None = None) -> list[Run]:
    """All runs with a readable summary below ``sweep_dir`` (a Hydra run or multirun folder);
    an unreadable one is skipped with a warning naming it."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
    runs = []
    for summary_path in sorted(sweep_dir.rglob(SUMMARY)):
        summary = read_summary(summary_path.parent)
        if summary is None:
            continue
        if not isinstance(summary.get("config"), dict):
            log.warning("ignoring %s: it records no config", summary_path)
            continue
        cfg = OmegaConf.create(summary.pop("config"))
        if task is not None and cfg.get("task") != task:
            continue
        runs.append(Run(summary_path.parent, cfg, summary))
    return runs
