"""A sweep's results as a compact, committed table, and reading them back as :class:`Run` objects.

``export(sweep_dir, out_dir)`` writes into ``out_dir`` (e.g. ``results/<experiment>/``):

* ``sweep.yaml`` — the resolved config every run shares (``common``), the dotted keys that differ
  between runs (``swept``), the result-defining command-line overrides of the launch (``overrides``,
  from Hydra's ``multirun.yaml``: what a reduced sweep changed) and its measured wall time when known;
* ``runs.csv`` — one row per run: ``run`` (its folder in the sweep), ``status``, the swept keys and
  every summary field (nested ones as JSON);
* ``history.csv.gz`` — the runs' per-step rows (``metrics.csv``), with a ``run`` column.

Cells hold a value's JSON text unless it is a plain string that JSON would not read back as itself,
so the round trip is exact. :func:`load` reads a results folder or, failing that, a sweep folder, so
figures and the report take either.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from curvlab.run.store import HISTORY, Run, flatten, history_columns, is_result_key, load_runs

RUNS, SWEEP, HISTORIES = "runs.csv", "sweep.yaml", "history.csv.gz"


def encode(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value if value else '""'
    return json.dumps(value)


def decode(cell: str) -> Any:
    try:
        return json.loads(cell)
    except ValueError:
        return cell


def _unflat(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _run_id(run: Run, sweep_dir: Path) -> str:
    return run.path.relative_to(sweep_dir).as_posix() or "."


def split_config(runs: list[Run]) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """(common flat config, swept keys, each run's flat config)."""
    flats = [flatten(OmegaConf.to_container(r.config, resolve=True)) for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    missing = object()
    swept = [k for k in keys if len({json.dumps(f.get(k, missing), default=str) for f in flats}) > 1]
    common = {k: v for k, v in flats[0].items() if k not in swept}
    return common, swept, flats


def export(sweep_dir: Path, out_dir: Path, wall_seconds: float | None = None, history: bool = True) -> Path:
    """Write ``sweep.yaml``, ``runs.csv`` and (with ``history``) ``history.csv.gz`` of every run with a
    summary under ``sweep_dir`` into ``out_dir``; returns ``out_dir``. Refuses a sweep with no run."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    runs = sorted(load_runs(sweep_dir), key=lambda r: _sort_key(_run_id(r, sweep_dir)))
    if not runs:
        raise SystemExit(f"{sweep_dir}: no run with a summary.json to export")
    common, swept, flats = split_config(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"runs": len(runs), "swept": swept, "overrides": launch_overrides(sweep_dir)}
    if wall_seconds is not None:
        meta["wall_seconds"] = round(float(wall_seconds), 1)
    meta["common"] = _unflat(common)
    (out_dir / SWEEP).write_text(yaml.safe_dump(meta, sort_keys=False, width=120))
    fields = list(dict.fromkeys(k for r in runs for k in r.summary if k != "status"))
    with open(out_dir / RUNS, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run", "status", *swept, *fields])
        for run, flat in zip(runs, flats):
            cells = [encode(flat[k]) if k in flat else "" for k in swept]
            cells += [encode(run.summary[k]) if k in run.summary else "" for k in fields]
            writer.writerow([_run_id(run, sweep_dir), run.status, *cells])
    (out_dir / HISTORIES).unlink(missing_ok=True)
    if history:
        _write_histories(runs, sweep_dir, out_dir / HISTORIES)
    return out_dir


def launch_overrides(sweep_dir: Path) -> list[str]:
    """The result-defining task overrides of the multirun that made ``sweep_dir`` (none without its
    ``multirun.yaml``): ``experiment=...``, the grid, any reduction such as ``trainer.max_steps=300``."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.exists():
        return []
    task = OmegaConf.select(OmegaConf.load(path), "hydra.overrides.task") or []
    return [str(o) for o in task if is_result_key(o.split("=", 1)[0].lstrip("+~"))]


def _sort_key(run_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in run_id.split("/"))


def _write_histories(runs: list[Run], sweep_dir: Path, path: Path) -> None:
    """The runs' ``metrics.csv`` rows, as written, under the union of their columns."""
    tables = []
    for run in runs:
        file = run.path / HISTORY
        if file.exists():
            with open(file, newline="") as fh:
                tables.append((_run_id(run, sweep_dir), list(csv.DictReader(fh))))
    columns = list(dict.fromkeys(k for _, rows in tables for row in rows for k in row))
    if not columns:
        return
    # mtime=0: the same rows give the same bytes, so a re-export leaves git nothing to commit
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as raw, io.TextIOWrapper(raw, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run", *columns])
        for run_id, rows in tables:
            writer.writerows([run_id, *(row.get(k, "") for k in columns)] for row in rows)


def _histories(path: Path) -> dict[str, dict[str, list[float]]]:
    """{run: columns} from ``history.csv.gz``: each run's columns as :func:`read_history` gives them."""
    if not path.exists():
        return {}
    by_run: dict[str, list[str]] = {}
    with gzip.open(path, "rt", newline="") as fh:
        header = fh.readline()
        for line in fh:
            by_run.setdefault(line.split(",", 1)[0], []).append(line.split(",", 1)[1])
    names = header.split(",", 1)[1]
    out = {}
    for run_id, lines in by_run.items():
        cols = history_columns([names, *lines])
        out[run_id] = {k: v for k, v in cols.items() if not all(x != x for x in v)}
    return out


def load_table(folder: Path) -> list[Run]:
    """The runs of a results folder written by :func:`export`."""
    folder = Path(folder)
    meta = yaml.safe_load((folder / SWEEP).read_text())
    common = OmegaConf.create(meta.get("common") or {})
    histories = functools.cache(lambda: _histories(folder / HISTORIES))  # read once, on first use

    def history_of(run_id: str):
        return lambda: histories().get(run_id, {})

    runs = []
    with open(folder / RUNS, newline="") as fh:
        for row in csv.DictReader(fh):
            run_id, status = row.pop("run"), row.pop("status")
            swept = {k: decode(row.pop(k)) for k in meta["swept"] if row.get(k, "") != ""}
            config = OmegaConf.merge(common, _unflat(swept))  # a copy of common with the swept values
            summary = {"status": status, **{k: decode(v) for k, v in row.items() if v != ""}}
            runs.append(Run(folder / run_id, config, summary, load_history=history_of(run_id)))
    return runs


def load(path: Path) -> list[Run]:
    """The runs of a results folder (``runs.csv``), else of a sweep folder (its ``summary.json`` files)."""
    path = Path(path)
    return load_table(path) if (path / RUNS).exists() else load_runs(path)


def sweep_meta(folder: Path) -> dict[str, Any]:
    """A results folder's ``sweep.yaml``: runs, swept keys, overrides, wall_seconds (when known), common."""
    return yaml.safe_load((Path(folder) / SWEEP).read_text())
