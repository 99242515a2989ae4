"""One job: its task's LightningModule trained by a Lightning Trainer (``trainer`` group) with the
run's loggers and callbacks, or the task's computation for a job without training; then the run's
``summary.json`` (:mod:`curvlab.run.store`). SIGTERM ends a training run with exit code 143 and no
summary, so a resumed sweep runs it again.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from curvlab.run.clock import StartupClock
from curvlab.run.errors import ConfigError
from curvlab.run.instantiate import safe_instantiate
from curvlab.run.loggers import finish_wandb, make_loggers, publish_summary
from curvlab.run.store import resolved_config, write_summary
from curvlab.tasks import TASKS, Built, validate

log = logging.getLogger(__name__)
# Lightning's start-up tips and a torch deprecation notice inside Lightning add nothing to a run's log
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")  # Hydra's files

EXIT_SIGTERM = 128 + signal.SIGTERM  # the shell's code for a process ended by SIGTERM


def build_task(cfg: DictConfig) -> Built:
    """The task's LightningModule and callbacks; what fails while building them (data files missing,
    n above the dataset size, ...) is a configuration error."""
    try:
        return TASKS[cfg.task].build(cfg)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from err


def make_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The Lightning callbacks of the ``callbacks`` group (allow-listed ``_target_`` nodes, each
    checked to name a ``Callback`` subclass before it is built)."""
    return [safe_instantiate(node, base=L.Callback) for node in (cfg.get("callbacks") or {}).values()]


def make_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[L.Callback]) -> L.Trainer:
    """The ``trainer`` group's Lightning Trainer: ``max_steps`` steps, no validation or checkpoints."""
    return L.Trainer(
        max_steps=cfg.trainer.max_steps,
        accelerator=cfg.trainer.accelerator,
        devices=1,
        logger=make_loggers(cfg, run_dir),
        callbacks=callbacks,
        log_every_n_steps=cfg.logger.every_n_steps,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.progress_bar,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit the task's module; its summary with each callback's ``summary()`` entries."""
    module, task_callbacks = build_task(cfg)
    callbacks = [StartupClock(), *task_callbacks, *make_callbacks(cfg)]
    trainer = make_trainer(cfg, run_dir, callbacks)
    try:
        trainer.fit(module)  # the data: the module's train_dataloader
    except SIGTERMException:  # a SystemExit without a code: it would end the process with 0
        log.error("%s: terminated by SIGTERM; the run is left incomplete and re-runs on resume", run_dir)
        raise SystemExit(EXIT_SIGTERM) from None
    summary = module.summary()
    for cb in callbacks:
        if hasattr(cb, "summary"):
            summary.update(cb.summary())
    return summary


def compute(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """A job without training: the task's summary, logged to W&B like a training run's."""
    make_loggers(cfg, run_dir)
    return TASKS[cfg.task].compute(cfg)


def job_threads(threads: int | str | None) -> int | None:
    """Torch threads for this job (``threads`` in the config): an integer as given, None for torch's
    default; ``auto``: the cores divided among the jobs the launch runs at once, i.e. 1 thread per job
    when a local multirun runs a job per core, and torch's default (all cores) for a single run or a
    SLURM job, whose cores are its own (``bench/bench_threads.py`` measures both cases)."""
    if threads != "auto":
        return threads
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    n_jobs = HydraConfig.get().launcher.get("n_jobs")  # the joblib launcher's; SLURM has none
    if not n_jobs:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    concurrent = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores
    return max(1, cores // concurrent)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one configuration and write ``summary.json`` (with the config) into ``run_dir``."""
    validate(cfg)
    if (threads := job_threads(cfg.threads)) is not None:
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, verbose=False)
    # deterministic cuBLAS on a GPU needs this before its first use (CUDA's reproducibility notes)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    t0 = time.perf_counter()
    try:
        summary = (compute if TASKS[cfg.task].compute else train)(cfg, run_dir)
        summary.update(wall_seconds=time.perf_counter() - t0, torch_threads=torch.get_num_threads())
        publish_summary(summary)
    finally:
        finish_wandb()
        StartupClock.job_ended()
    write_summary(run_dir, summary, resolved_config(cfg))
    log.info("run %s: %s", run_dir, {k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
    return summary
