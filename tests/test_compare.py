"""``python -m curvlab.run.compare``: result trees are equal bit for bit but for timings and the config."""

from __future__ import annotations

import json
from pathlib import Path

from curvlab.run.compare import compare


def _tree(root: Path, loss: str, seconds: str, extra: str | None = None) -> None:
    run = root / "sweep" / "0"
    run.mkdir(parents=True)
    summary = {"status": "completed", "final_loss": float(loss), "wall_seconds": float(seconds), "rate": float("nan"),
               "final_checks": {"check/ntk/lambda_min": 0.5, "check/ntk/seconds": float(seconds)},
               "config": {"seed": int(seconds)}}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text(f"loss,check/ntk/seconds,step\n{loss},{seconds},0\n")
    if extra:
        (root / extra).mkdir()
        (root / extra / "summary.json").write_text("{}")


def test_timings_and_the_config_do_not_count_and_any_other_bit_does(tmp_path):
    """NaN counts as equal to NaN (the same bits); a float written differently in a CSV does not."""
    _tree(tmp_path / "a", "0.125", "1")
    _tree(tmp_path / "b", "0.125", "2")
    assert compare(tmp_path / "a", tmp_path / "b") == (2, [])
    _tree(tmp_path / "c", "0.12500000000000001", "1", extra="more")  # the same float, other text in the csv
    same, lines = compare(tmp_path / "a", tmp_path / "c")
    assert same == 1 and lines == ["only in NEW: more/summary.json", "differs: sweep/0/metrics.csv: loss"]
