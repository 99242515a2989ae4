"""How long a job waits for its first training step: ``startup_seconds`` in its summary.

A job's start-up runs from the start of its process (a single run, a SLURM job), or from the end of
the previous job in the same process (a multirun worker runs several grid points one after another),
to its first training step: imports, config composition, W&B start, data and model set-up, the
Trainer's own set-up. ``bench/bench_startup.py`` reads it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import lightning as L


def process_start() -> float:
    """This process's start as a ``time.time()`` timestamp (Linux ``/proc``, 10 ms resolution); the
    current time where ``/proc`` is unavailable."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks after boot
    except (OSError, IndexError, ValueError):
        return time.time()
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - age


class StartupClock(L.Callback):
    """Measures the job's start-up (see the module docstring) at its first training batch."""

    _previous_job_end: float | None = None  # per process: the end of the last job it ran

    def __init__(self) -> None:
        self.since = StartupClock._previous_job_end or process_start()
        self.seconds = math.nan

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if math.isnan(self.seconds):
            self.seconds = time.time() - self.since

    def summary(self) -> dict[str, float]:
        return {"startup_seconds": self.seconds}

    @classmethod
    def job_ended(cls) -> None:
        """Mark the end of a job: the next job in this process starts its clock here."""
        cls._previous_job_end = time.time()
