"""A logged-in user without network: W&B's start-up wait is bounded, then the run logs offline."""

import logging
import time

import pytest
from conftest import compose_cfg

from curvlab.run.fit import run

TINY = ["logger=wandb", "logger.wandb.init_timeout=1", "data.n=32", "model.width=8", "trainer.max_steps=3",
        "progress_bar=false"]


@pytest.fixture
def logged_in_without_network(monkeypatch):
    """An API key, as after ``wandb login``, and a W&B server that refuses every connection."""
    import wandb

    wandb.teardown()  # W&B reads the environment once per process, at its first use
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("WANDB_SILENT", "true")  # no "logged in as" line: it costs two 5 s account look-ups
    yield
    wandb.teardown()  # so later tests do not inherit these settings


def test_an_unreachable_server_falls_back_to_an_offline_run(tmp_path, logged_in_without_network, caplog):
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="curvlab.run.loggers"):
        summary = run(compose_cfg(TINY), tmp_path)
    assert time.monotonic() - t0 < 30  # W&B's own default wait is 90 s
    assert summary["status"] == "completed"
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "curvlab.run.loggers"]
    assert warning.startswith("W&B did not start the online run within 1s (")
    assert warning.endswith(f"logging offline to {offline} instead: sync it later with `wandb sync {offline}`")
    assert any(offline.glob("*.wandb"))  # the run's history went there
