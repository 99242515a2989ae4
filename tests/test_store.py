import json

import pytest

from curvlab.store import is_complete, load_runs, write_json_atomic


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
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text("task: rsc\n")
        if status:
            write_json_atomic(run / "summary.json", {"status": status})
    assert is_complete(tmp_path / "a") and not is_complete(tmp_path / "b") and not is_complete(tmp_path / "c")
    assert sorted(r.path.name for r in load_runs(tmp_path)) == ["a", "b"]  # b is shown as failed
    with pytest.raises(FileNotFoundError):
        load_runs(tmp_path / "missing")
