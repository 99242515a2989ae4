"""Read a sweep's runs back from W&B (``python -m curvlab.figures ... --from-wandb ENTITY/PROJECT``).

Uses the public API's full history (``scan_history``, every logged row, not the sampled
``history()``), and each run's summary, which :mod:`curvlab.train` fills with the same fields as
the local ``summary.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from curvlab.run.store import Run

STEP_KEY = "trainer/global_step"  # Lightning's WandbLogger logs the trainer step under this key


def history_columns(rows: Any) -> dict[str, list[float]]:
    """W&B history rows -> columns keyed like metrics.csv (``step`` = the trainer's global step)."""
    rows = [r for r in rows if STEP_KEY in r]
    keys = sorted({k for r in rows for k in r if not k.startswith("_") and k != STEP_KEY})
    cols: dict[str, list[float]] = {"step": [float(r[STEP_KEY]) for r in rows]}
    for k in keys:
        cols[k] = [float(r[k]) if isinstance(r.get(k), (int, float)) else math.nan for r in rows]
    return cols


def load_wandb_runs(project_path: str, group: str | None = None, api: Any = None) -> list[Run]:
    """Finished runs of ``ENTITY/PROJECT`` (optionally one W&B group) as :class:`Run` objects."""
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else {}
    runs = []
    for wr in api.runs(project_path, filters=filters):
        summary = {k: v for k, v in dict(wr.summary).items() if not k.startswith("_")}
        if "status" not in summary:  # still running, or not logged by curvlab
            continue
        runs.append(
            Run(
                path=Path(*wr.path),
                config=OmegaConf.create(dict(wr.config)),
                summary=summary,
                load_history=lambda wr=wr: history_columns(wr.scan_history()),
            )
        )
    return runs
