"""One training run: the task's LightningModule, a Lightning Trainer with the run's loggers and
callbacks, and the run's ``summary.json`` (:mod:`curvlab.store`). SIGTERM ends it with exit code 143
and no summary, so a resumed sweep runs it again.
"""

from __future__ import annotations

import importlib
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
from omegaconf import DictConfig

from curvlab.config_checks import validate
from curvlab.errors import ConfigError
from curvlab.instantiate import safe_instantiate
from curvlab.lit.common import full_batch_loader
from curvlab.logging_setup import finish_wandb, make_loggers, publish_summary
from curvlab.store import resolved_config, write_summary

log = logging.getLogger(__name__)
# Lightning's start-up tips and a torch deprecation notice inside Lightning add nothing to a run's log
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")  # Hydra's files

# task name -> module with ``build(cfg) -> LightningModule`` (the module has ``summary()``)
TASKS = {
    "rsc": "curvlab.lit.rsc",
    "recovery": "curvlab.lit.recovery",
}

EXIT_SIGTERM = 128 + signal.SIGTERM  # the shell's code for a process ended by SIGTERM


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The task's LightningModule; what fails while building it (data files missing, n above the
    dataset size, ...) is a configuration error."""
    try:
        return importlib.import_module(TASKS[cfg.task]).build(cfg)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from err


def accelerator(device: str) -> str:
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return "gpu"
    return device


def make_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The Lightning callbacks of the ``callbacks`` group (allow-listed ``_target_`` nodes, each
    checked to name a ``Callback`` subclass before it is built)."""
    return [safe_instantiate(node, base=L.Callback) for node in (cfg.get("callbacks") or {}).values()]


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train one configuration and write ``summary.json`` (with the config) into ``run_dir``."""
    validate(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, verbose=False)
    # deterministic cuBLAS on a GPU needs this before its first use (CUDA's reproducibility notes)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    t0 = time.perf_counter()
    module = build_module(cfg)
    trainer = L.Trainer(
        max_steps=cfg.optimizer.max_steps,
        accelerator=accelerator(cfg.device),
        devices=1,
        logger=make_loggers(cfg, run_dir),
        callbacks=make_callbacks(cfg),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.progress_bar,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    try:
        trainer.fit(module, train_dataloaders=full_batch_loader())
        summary = module.summary()
        summary.update(wall_seconds=time.perf_counter() - t0, torch_threads=torch.get_num_threads())
        publish_summary(summary)
    except SIGTERMException:  # a SystemExit without a code: it would end the process with 0
        log.error("%s: terminated by SIGTERM; the run is left incomplete and re-runs on resume", run_dir)
        raise SystemExit(EXIT_SIGTERM) from None
    finally:
        finish_wandb()
    write_summary(run_dir, summary, resolved_config(cfg))
    log.info("run %s: %s", run_dir, {k: v for k, v in summary.items() if not isinstance(v, dict)})
    return summary
