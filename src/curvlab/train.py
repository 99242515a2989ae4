"""Hydra entry point: ``python -m curvlab.train [-m] experiment=... key=value ...``.

Builds the task's LightningModule from the composed config, trains it, and writes the run's
summary into its Hydra output folder (see :mod:`curvlab.store`). In a multirun, a job whose
training fails or diverges is recorded as such and the sweep goes on; completed jobs are skipped
when the same sweep is launched again (``resume=true``).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from curvlab.config_checks import validate
from curvlab.instantiate import safe_instantiate
from curvlab.lit.common import full_batch_loader
from curvlab.logging_setup import finish_wandb, make_loggers, publish_summary
from curvlab.schema import register_schemas
from curvlab.store import is_complete, write_json_atomic, write_summary

log = logging.getLogger(__name__)
# Lightning's start-up tips and a torch deprecation notice inside Lightning add nothing to a run's log
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")  # Hydra's files

register_schemas()

# task name -> module with ``build(cfg) -> LightningModule`` (the module has ``summary()``)
TASKS = {
    "rsc": "curvlab.lit.rsc",
    "recovery": "curvlab.lit.recovery",
}


def build_module(cfg: DictConfig) -> L.LightningModule:
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; choose one of {sorted(TASKS)}")
    return importlib.import_module(TASKS[cfg.task]).build(cfg)


def accelerator(device: str) -> str:
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return "gpu"
    return device


def make_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The Lightning callbacks of the ``callbacks`` group (allow-listed ``_target_`` nodes)."""
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        cb = safe_instantiate(node)
        if not isinstance(cb, L.Callback):
            raise ValueError(f"callbacks.{name} must be a Lightning Callback, got {type(cb).__name__}")
        callbacks.append(cb)
    return callbacks


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train one configuration and write ``summary.json`` into ``run_dir``."""
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
    finally:
        finish_wandb()
    write_summary(run_dir, summary)
    log.info("run %s: %s", run_dir, {k: v for k, v in summary.items() if not isinstance(v, dict)})
    return summary


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if cfg.resume and is_complete(run_dir):
        log.info("skipping %s: its results are complete", run_dir)
        return None
    # which process runs this job (a cluster user looking for a stuck job, the fault-injection test)
    write_json_atomic(run_dir / "running.json", {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
    try:
        summary = run(cfg, run_dir)
    except Exception as err:
        if hc.mode != RunMode.MULTIRUN or isinstance(err, (ValueError, FileNotFoundError)):
            raise  # a single run, or a bad configuration: fail loudly
        log.error("job %s failed; the sweep goes on:\n%s", run_dir, traceback.format_exc())
        write_summary(run_dir, {"status": "failed", "error": repr(err)})
        return None
    return summary.get("final_loss")


if __name__ == "__main__":
    main()
