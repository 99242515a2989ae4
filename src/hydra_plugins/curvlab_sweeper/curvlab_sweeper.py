"""curvlab's Hydra sweeper: Hydra's basic sweeper that checks every job of the grid before it
launches any (``hydra/sweeper: curvlab``, conf/config.yaml).

Each job's composed config is validated (:func:`curvlab.tasks.validate`), and a job folder
holding a finished result of another config is refused unless ``rerun_changed=true``
(:func:`curvlab.run.store.reusable`); all problems are reported together, one line each, and no job
starts.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from curvlab.tasks import validate
from curvlab.run.errors import ConfigError
from curvlab.run.store import resolved_config, reusable

SHOWN = 5  # problems listed in the error


@dataclass
class CurvlabSweeperConf:
    _target_: str = "hydra_plugins.curvlab_sweeper.curvlab_sweeper.CurvlabSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None  # typing.Dict: Hydra loads this module outside sys.modules


ConfigStore.instance().store(group="hydra/sweeper", name="curvlab", node=CurvlabSweeperConf, provider="curvlab")


def job_folder(cfg: DictConfig) -> Path:
    """The output folder Hydra's ``run_job`` gives a multirun job."""
    return Path(os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir)))


def job_problem(cfg: DictConfig) -> Optional[str]:
    """Why a job must not launch (its config is invalid, or its folder holds a finished result of
    another config), or None."""
    try:
        validate(cfg)
        if cfg.resume and not cfg.rerun_changed:  # with rerun_changed, such a job re-runs
            reusable(job_folder(cfg), resolved_config(cfg), rerun_changed=False)
    except ConfigError as err:
        return str(err)
    return None


class CurvlabSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.next_job_idx = 0

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        previous = HydraConfig.instance().cfg
        problems = []
        try:
            for i, overrides in enumerate(batch):
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                with open_dict(cfg):  # as the launchers number the jobs
                    cfg.hydra.job.num = self.next_job_idx + i
                    cfg.hydra.job.id = f"{cfg.hydra.job.name}_{self.next_job_idx + i}"
                HydraConfig.instance().set_config(cfg)
                if (problem := job_problem(cfg)) is not None:
                    problems.append(f"job {self.next_job_idx + i} ({' '.join(overrides)}): {problem}")
        finally:
            HydraConfig.instance().cfg = previous
        if problems:
            more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
            raise ConfigError(f"{len(problems)} of {len(batch)} jobs cannot launch{more}; none was launched:\n  "
                              + "\n  ".join(problems[:SHOWN]))
        self.next_job_idx += len(batch)
