"""A job's start-up: process start (or, in a multirun worker, the previous job's end) to its first
training step, the ``startup_seconds`` of its summary (:mod:`curvlab.run.clock`).

For an RSC job (Fig. 1 MLP, width 64, n = 512) and a recovery job (Fig. 4(a) CNN, d = 15, n = 200),
both with the default W&B logger offline and 2 training steps:

* fresh: ``python -m curvlab.train ...`` as a new process (disk caches warm after a first run);
* in a worker: the later jobs of a ``-m`` multirun of 4 seeds in one process, as Hydra's joblib
  launcher runs several grid points per worker process.

Beside them, the import floor of a fresh process: ``python -c "import X"`` for torch, lightning
(which imports torchmetrics, and with it torchvision, torch._dynamo, scipy.signal and matplotlib)
and wandb, each timed as a whole process. Rounds interleave the variants; medians.

Usage: python bench/bench_startup.py [--repeats 3]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from timing import bench_args

JOBS = {
    "rsc": ["experiment=fig1_mnist", "model.width=64", "data.n=512"],
    "recovery": ["experiment=fig4a_cnn_success", "data.d=15", "data.n=200", "data.sets=10", "init.inits=5"],
}
COMMON = ["trainer.max_steps=2", "threads=1", "progress_bar=false"]
IMPORTS = ("torch", "lightning", "wandb")
WORKER_JOBS = 4


def _train(args: list[str], out: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-m", "curvlab.train", *args], env=env, check=True, cwd=out,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _startup(run_dir: Path) -> float:
    return json.loads((run_dir / "summary.json").read_text())["startup_seconds"]


def fresh(job: str, out: Path) -> float:
    """``startup_seconds`` of the job as a new process."""
    run_dir = out / f"fresh-{job}-{time.monotonic_ns()}"
    _train([*JOBS[job], *COMMON, f"hydra.run.dir={run_dir}"], out)
    return _startup(run_dir)


def in_worker(job: str, out: Path) -> float:
    """Median ``startup_seconds`` of jobs 2.. of a multirun in one process."""
    sweep = out / f"worker-{job}-{time.monotonic_ns()}"
    seeds = ",".join(map(str, range(WORKER_JOBS)))
    _train(["-m", *JOBS[job], *COMMON, f"seed={seeds}", "hydra.launcher.n_jobs=1", f"hydra.sweep.dir={sweep}"], out)
    return statistics.median(_startup(sweep / str(i)) for i in range(1, WORKER_JOBS))


def import_seconds(module: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    args = bench_args(__doc__, repeats=3)
    variants: dict[str, Callable[[Path], float]] = {f"import {m}": lambda out, m=m: import_seconds(m) for m in IMPORTS}
    for job in JOBS:
        variants[f"{job}: fresh process"] = lambda out, job=job: fresh(job, out)
        variants[f"{job}: later job in a worker"] = lambda out, job=job: in_worker(job, out)
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for round_ in range(args.repeats + 1):  # the first round warms the disk caches
            for name, fn in variants.items():
                seconds = fn(out)
                if round_:
                    times[name].append(seconds)
    print(f"{os.cpu_count()} cores; medians of {args.repeats} interleaved rounds; target: start-up <= 4 s")
    print(f"{'what':<34} {'seconds':>8}")
    for name, ts in times.items():
        print(f"{name:<34} {statistics.median(ts):>8.2f}")


if __name__ == "__main__":
    main()
