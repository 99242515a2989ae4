"""threads=auto: the cores shared among the jobs a launch runs at once."""

import os

import pytest
from conftest import compose_cfg
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from curvlab.run.fit import job_threads

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("threads,multirun,n_jobs,expected", [
    (3, True, -1, 3),  # an integer is taken as given
    (None, True, -1, None),  # torch's default
    ("auto", False, -1, None),  # a single run: all cores
    ("auto", True, -1, 1),  # a job per core
    ("auto", True, 1, CORES),  # one job at a time
    ("auto", True, 2, max(1, CORES // 2)),
    ("auto", True, 4 * CORES, 1),  # more jobs than cores: never 0
])
def test_auto_threads_share_the_cores_among_concurrent_jobs(threads, multirun, n_jobs, expected):
    cfg = compose_cfg([])
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        cfg.hydra.launcher.n_jobs = n_jobs
    HydraConfig.instance().set_config(cfg)
    assert job_threads(threads) == expected


def test_a_slurm_job_keeps_its_cores():
    cfg = compose_cfg(["hydra/launcher=slurm"])
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    assert "n_jobs" not in cfg.hydra.launcher and job_threads("auto") is None
