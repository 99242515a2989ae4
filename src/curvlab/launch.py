"""One experiment's Hydra multirun as a subprocess, with its jobs counted on a progress bar.

Shared by ``make demo`` (:mod:`curvlab.demo`) and ``make reproduce`` (:mod:`curvlab.reproduce`).
Jobs whose folder holds a finished result of the same config are skipped by the sweep itself, so a
repeated or interrupted launch loses and duplicates nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import OmegaConf
from tqdm import tqdm

from curvlab.run.store import SUMMARY
from curvlab.train import CONF_DIR

LAUNCHES = "launches.jsonl"  # one line per launch into a sweep folder: when, how long, how many jobs ran


def grid_size(params: Mapping[str, object]) -> int:
    """Jobs in a sweep grid of ``{key: "v1,v2,..."}`` (Hydra's basic sweeper: the product)."""
    return math.prod(len(str(v).split(",")) for v in params.values())


def experiment_grid(experiment: str) -> dict[str, str]:
    """The sweep grid ``hydra.sweeper.params`` that conf/experiment/NAME.yaml declares."""
    cfg = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml")
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    return {str(k): str(v) for k, v in params.items()}


def _finished(sweep_dir: Path, since: float = 0.0) -> int:
    return sum(1 for p in sweep_dir.glob(f"*/{SUMMARY}") if p.stat().st_mtime >= since)


def sweep(experiment: str, overrides: list[str], sweep_dir: Path, jobs: int, bar: tqdm) -> float:
    """Run ``experiment`` with ``overrides`` into ``sweep_dir``, advancing ``bar`` by its ``jobs``;
    appends the launch to ``sweep_dir/launches.jsonl`` and returns its wall seconds. Exits with one
    line naming the log if the multirun fails."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "curvlab.train", "-m", f"experiment={experiment}", *overrides,
           "progress_bar=false", f"hydra.sweep.dir={sweep_dir}"]
    done_before, t0, started = bar.n, time.perf_counter(), time.time()
    with open(sweep_dir / "launcher.log", "a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(1.0)
            bar.n = done_before + min(jobs, _finished(sweep_dir))
            bar.refresh()
    seconds = time.perf_counter() - t0
    launch = {"started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
              "seconds": round(seconds, 1), "jobs_run": _finished(sweep_dir, started), "exit": proc.returncode}
    with open(sweep_dir / LAUNCHES, "a") as fh:
        fh.write(json.dumps(launch) + "\n")
    bar.n = done_before + jobs
    bar.refresh()
    if proc.returncode != 0:
        raise SystemExit(f"{experiment}: the sweep failed (exit {proc.returncode}); see {sweep_dir / 'launcher.log'}")
    return seconds


def wall_seconds(sweep_dir: Path) -> float | None:
    """The sweep's measured wall time: the launches into ``sweep_dir`` that ran a job, added up."""
    path = Path(sweep_dir) / LAUNCHES
    if not path.exists():
        return None
    launches = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ran = [la["seconds"] for la in launches if la.get("jobs_run", 0) > 0]
    return sum(ran) if ran else None
