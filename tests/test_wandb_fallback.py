"""A logged-in user without network: W&B's start-up wait is bounded, then the run logs offline."""

import logging

from conftest import compose_cfg

from curvlab.fit import run

TINY = ["logger=wandb", "logger.wandb.mode=online", "logger.wandb.init_timeout=1", "data.n=32", "model.width=8",
        "optimizer.max_steps=3", "progress_bar=false"]


def test_an_unreachable_server_falls_back_to_an_offline_run(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: no network, no wait for DNS
    with caplog.at_level(logging.WARNING):
        summary = run(compose_cfg(TINY), tmp_path)
    assert summary["status"] == "completed"
    assert "W&B did not answer within 1s" in caplog.text and "logging offline instead" in caplog.text
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    assert any(offline.glob("*.wandb"))  # the history went to the offline run
