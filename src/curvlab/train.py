"""Hydra entry point: ``python -m curvlab.train [-m] experiment=... key=value ...``.

Before Hydra builds anything, the composed config's ``hydra`` node is checked
(:func:`curvlab.run.validate.check_hydra_node`), and a single run's whole config is validated; a
multirun's sweeper validates every job of the grid (:mod:`hydra_plugins.curvlab_sweeper`). Each job
claims its folder (:mod:`curvlab.run.claim`), so a sweep launched twice runs each job once; a job whose
folder holds a finished result of the same config is skipped (``resume=true``), one of another
config is refused unless ``rerun_changed=true``. Running a job (:mod:`curvlab.run.fit`) imports Lightning,
so a refused command line answers without that import. In a multirun, a job whose training fails
or diverges is recorded as such and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from curvlab.run.claim import ClaimHeld, claim
from curvlab.run.errors import ConfigError
from curvlab.run.store import FAILED, resolved_config, reusable, start_fresh, write_summary
from curvlab.run.validate import check_hydra_node
from curvlab.tasks import register_schemas, validate

log = logging.getLogger(__name__)
register_schemas()

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def run_job(cfg: DictConfig, run_dir: Path, multirun: bool) -> float | None:
    """One job in its claimed folder: skipped if the folder holds its finished result, else run
    afresh; in a multirun, a job that fails in training is recorded failed and the sweep goes on."""
    if cfg.resume and reusable(run_dir, resolved_config(cfg), cfg.rerun_changed):
        log.info("skipping %s: its results are complete", run_dir)
        return None
    start_fresh(run_dir)
    from curvlab.run.fit import run  # Lightning, only once a job trains

    try:
        summary = run(cfg, run_dir)
    except Exception as err:
        if not multirun or isinstance(err, ConfigError):
            raise  # a single run, or a bad configuration: fail loudly
        log.error("job %s failed; the sweep goes on:\n%s", run_dir, traceback.format_exc())
        write_summary(run_dir, {"status": FAILED, "error": repr(err)}, resolved_config(cfg))
        return None
    return summary.get("final_loss")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        with claim(run_dir):
            return run_job(cfg, run_dir, multirun=hc.mode == RunMode.MULTIRUN)
    except ClaimHeld as held:
        log.warning("skipping: %s", held)
        return None


def compose_primary(argv: list[str]) -> tuple[DictConfig, bool]:
    """The primary config ``hydra.main`` composes from this command line, and whether it is a
    multirun; composed the way Hydra does, without configuring logging or building anything."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    args = get_args_parser().parse_args(argv)
    search_path = create_config_search_path(f"file://{Path(args.config_path or CONF_DIR).resolve()}")
    if args.config_dir:
        search_path.prepend("command-line", f"file://{Path(args.config_dir).resolve()}")
    hydra_app = Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
    first, second = (RunMode.MULTIRUN, RunMode.RUN) if args.multirun else (RunMode.RUN, RunMode.MULTIRUN)
    name = args.config_name or "config"
    try:
        try:
            cfg = hydra_app.compose_config(name, args.overrides, run_mode=first)
        except Exception:  # hydra.mode=MULTIRUN in a config makes a multirun without -m
            cfg = hydra_app.compose_config(name, args.overrides, run_mode=second)
    finally:
        GlobalHydra.instance().clear()
    return cfg, bool(args.multirun) or cfg.hydra.mode == RunMode.MULTIRUN


def preflight(argv: list[str]) -> None:
    """Check the command line's config before Hydra builds anything from it: its ``hydra`` node
    always, the whole config of a single run. A config that does not compose is left to Hydra,
    which reports it and stops before building anything."""
    try:
        cfg, multirun = compose_primary(argv)
    except Exception:
        return
    check_hydra_node(cfg)
    if not multirun:  # a multirun's jobs are checked by its sweeper
        HydraConfig.instance().set_config(cfg)
        validate(cfg)


def main() -> None:
    """``python -m curvlab.train``: a configuration error is one line on stderr (exit 1), with the
    traceback only under ``HYDRA_FULL_ERROR=1``."""
    try:
        preflight(sys.argv[1:])
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"Error: {err}")
    hydra_main()


if __name__ == "__main__":
    main()
