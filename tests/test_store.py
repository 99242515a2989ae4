import json
import logging

import pytest

from curvlab.run.store import finished_summary, load_runs, write_json_atomic, write_summary


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"status": "completed"})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"status": object()})  # fails while serialising
    assert json.loads(target.read_text()) == {"status": "completed"}  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp file left behind


def test_incomplete_runs_are_not_loaded(tmp_path):
    for name, status in (("a", "completed"), ("b", "failed"), ("c", None)):
        run = tmp_path / name
        run.mkdir()
        if status:
            write_summary(run, {"status": status}, {"task": "rsc"})
    assert finished_summary(tmp_path / "a") and finished_summary(tmp_path / "b") is None
    assert finished_summary(tmp_path / "c") is None
    assert sorted(r.path.name for r in load_runs(tmp_path)) == ["a", "b"]  # b is shown as failed
    with pytest.raises(FileNotFoundError):
        load_runs(tmp_path / "missing")


def test_runs_carry_the_config_stored_with_their_summary(tmp_path):
    write_summary(tmp_path / "a", {"status": "completed"}, {"task": "rsc", "optimizer": {"lr": 0.5}})
    (tmp_path / "a" / ".hydra").mkdir()
    (tmp_path / "a" / ".hydra" / "config.yaml").write_text("task: rsc\noptimizer:\n  lr: 8.0\n")  # rewritten by Hydra
    (run,) = load_runs(tmp_path)
    assert run.config.optimizer.lr == 0.5 and "config" not in run.summary


def test_an_unreadable_summary_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    write_summary(tmp_path / "good", {"status": "completed"}, {"task": "rsc"})
    write_summary(tmp_path / "cut", {"status": "completed"}, {"task": "rsc"})
    cut = tmp_path / "cut" / "summary.json"
    cut.write_text(cut.read_text()[:20])  # truncated by a full disk or a copy
    with caplog.at_level(logging.WARNING):
        runs = load_runs(tmp_path)
    assert [r.path.name for r in runs] == ["good"]
    assert str(cut) in caplog.text and finished_summary(tmp_path / "cut") is None
