"""Loggers of a run: Lightning's CSVLogger into the run folder (always) and W&B (optional).

W&B is offline by default on machines without credentials (``logger.wandb.mode: auto``), online
once the user has logged in; ``WANDB_MODE`` in the environment always wins. An online run starts
before training and waits at most ``logger.wandb.init_timeout`` seconds for the server; without an
answer (a cluster node without internet) it falls back to an offline run, with one warning.
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from curvlab.run.store import resolved_config
from curvlab.run.wandb_runs import STEP_KEY

if TYPE_CHECKING:  # Lightning takes seconds to import: only the loggers' own functions import it
    import lightning as L
    from lightning.pytorch.loggers import Logger

log = logging.getLogger(__name__)


def wandb_mode(requested: str) -> str:
    """``auto`` -> online if an API key is configured, else offline; WANDB_MODE overrides."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    return "offline"


def run_tags(cfg: DictConfig) -> list[str]:
    """Tags that let the W&B dashboard group runs by setting, dataset and size without manual work."""
    data, model = cfg.get("data"), cfg.get("model") or {}
    tags = [f"task={cfg.task}", *([f"data={data.name}"] if data is not None else []), f"seed={cfg.seed}"]
    tags += [f"{key}={model[key]}" for key in ("width", "depth", "K") if key in model]
    return tags + list(cfg.logger.wandb.tags or [])


def _wandb_logger(cfg: DictConfig, run_dir: Path, mode: str) -> Logger:
    """A W&B logger whose run has started: online within ``init_timeout`` seconds, else offline."""
    import wandb

    wb = cfg.logger.wandb
    kwargs: dict[str, Any] = dict(
        project=wb.project,
        entity=wb.entity,
        group=wb.group or cfg.get("experiment_name") or cfg.task,
        job_type=cfg.task,
        tags=run_tags(cfg),
        save_dir=str(run_dir),
        config=resolved_config(cfg),
        reinit="finish_previous",
        settings=wandb.Settings(init_timeout=float(wb.init_timeout)),
    )
    try:
        return _started(mode, kwargs)
    except wandb.errors.CommError as err:
        if mode != "online":
            raise
        logger = _started("offline", kwargs)
        sync_dir = logger.experiment.settings.sync_dir
        log.warning("W&B did not start the online run within %gs (%s); logging offline to %s instead: sync it "
                    "later with `wandb sync %s`", wb.init_timeout, str(err).partition("\n")[0], sync_dir, sync_dir)
        return logger


def _started(mode: str, kwargs: dict[str, Any]) -> Logger:
    """A WandbLogger whose run is started now, so a failure surfaces before training, not at its first log."""
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(mode=mode, **kwargs)
    define_metrics(logger.experiment)
    return logger


# metric -> the W&B summary the papers read off it: min_t ||g_bar_t|| (RSC Fig. 1), the lowest loss,
# and the largest Hessian spectral norms along training (Thm 4.1; beta of Thm 5.2)
SUMMARIES = {
    "gbar_norm": "min",
    "loss": "min",
    "check/hessian/pred_norm_max": "max",
    "check/hessian/loss_lambda_max": "max",
}


def define_metrics(run: Any) -> None:
    """Give :data:`SUMMARIES` their min/max summaries on the W&B dashboard. Lightning's WandbLogger
    already plots every metric (``*``) against the trainer step; a metric named here restates its step
    metric, which a named definition would otherwise drop. These summaries sit under the metric's own
    key (``gbar_norm.min``), apart from the ``summary.json`` fields (``min_gbar_norm``, ``final_loss``)
    that :func:`publish_summary` writes."""
    for name, summary in SUMMARIES.items():
        run.define_metric(name, step_metric=STEP_KEY, step_sync=True, summary=summary)


def make_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    mode = wandb_mode(cfg.logger.wandb.mode)
    if cfg.logger.wandb.enabled and mode != "disabled":
        loggers.append(_wandb_logger(cfg, run_dir, mode))
    return loggers


def _active_wandb_run() -> Any:
    """The current W&B run, if this process started one (wandb is not imported otherwise)."""
    wandb = sys.modules.get("wandb")
    return wandb.run if wandb is not None else None


def publish_summary(summary: dict[str, Any]) -> None:
    """Copy the run's summary.json fields into the W&B run summary (figures read them back)."""
    if (run := _active_wandb_run()) is not None:
        run.summary.update(summary)


def finish_wandb() -> None:
    """End the W&B run of this job, so multirun jobs in one process stay separate runs."""
    if (run := _active_wandb_run()) is not None:
        run.finish()


def row_due(module: L.LightningModule, step: int) -> bool:
    """Whether ``step``'s per-step row is logged: every ``logger.every_n_steps`` steps (the Trainer's
    ``log_every_n_steps``). Rows that carry a check or an end-of-run measurement are always logged."""
    return step % module.trainer.log_every_n_steps == 0


def log_row(module: L.LightningModule, metrics: Mapping[str, Any], step: int) -> None:
    """One history row, straight to the module's loggers. Lightning's ``self.log`` would carry a
    key's last value into every later row of an endless full-batch epoch (checks that run only on
    some steps, end-of-run measurements)."""
    row = {k: float(v) for k, v in metrics.items()}
    for lg in module.loggers:
        lg.log_metrics(row, step=step)
