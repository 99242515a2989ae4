"""Where a run's results land on disk, and how a sweep's results are read back.

Each run writes into its own Hydra output folder:

* ``.hydra/config.yaml`` — the resolved config (written by Hydra),
* ``metrics.csv`` — the per-step history (Lightning's CSVLogger),
* ``summary.json`` — the final summary with ``status`` in {completed, converged, diverged,
  stopped (by a callback before max_steps; re-run on resume), failed}, written last and
  atomically (temp file + rename), so a folder without it is incomplete and figures never read
  half-written results.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SUMMARY = "summary.json"
HISTORY = "metrics.csv"
CONFIG = ".hydra/config.yaml"
FINISHED = ("completed", "converged", "diverged")  # statuses of a run that ran to its end


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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"cannot serialise {type(v).__name__}")


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / SUMMARY, summary)


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
    cols: dict[str, list[float]] = {}
    if not Path(path).exists():
        return cols
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                cols.setdefault(k, []).append(float(v) if v not in ("", None) else math.nan)
    return cols


def is_complete(run_dir: Path) -> bool:
    """True if the run folder holds a summary of a run that ran to its end."""
    p = Path(run_dir) / SUMMARY
    if not p.exists():
        return False
    try:
        return json.loads(p.read_text()).get("status") in FINISHED
    except json.JSONDecodeError:
        return False


def load_runs(sweep_dir: Path, task: str | None = None) -> list[Run]:
    """All runs with a summary below ``sweep_dir`` (a Hydra run or multirun folder)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
    runs = []
    for summary_path in sorted(sweep_dir.rglob(SUMMARY)):
        run_dir = summary_path.parent
        cfg_path = run_dir / CONFIG
        if not cfg_path.exists():
            continue
        cfg = OmegaConf.load(cfg_path)
        if task is not None and cfg.get("task") != task:
            continue
        runs.append(Run(run_dir, cfg, json.loads(summary_path.read_text())))
    return runs
