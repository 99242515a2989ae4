"""The README's Results section, made from ``results/``: per experiment its figures, the report's
verdict on each of its claims and the sweep's size and measured wall time.

``python -m curvlab.gallery [RESULTS] [--readme README.md]`` rewrites the block between
:data:`START` and :data:`END` in the README; a test keeps that block equal to what ``results/`` gives,
so the README never shows a stale figure or verdict.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from curvlab.claims import Row
from curvlab.report import experiment_rows
from curvlab.run.table import RUNS, load, sweep_meta

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _claim(row: Row) -> str:
    value = "" if not math.isfinite(row.value) else f": {row.value:.3g}"
    if math.isfinite(row.ci_low):
        value += f" [{row.ci_low:.3g}, {row.ci_high:.3g}]"
    return f"{row.paper} {row.claim} — **{row.verdict}**{value}".replace("|", "\\|").strip()


def _sweep(folder: Path, runs: int) -> str:
    meta = sweep_meta(folder)
    seconds = meta.get("wall_seconds")
    took = f"{seconds / 60:.0f} min" if seconds is not None else "wall time not recorded"
    changed = [o for o in meta.get("overrides") or [] if not o.startswith("experiment=")]
    size = f"<br>overrides: `{' '.join(changed)}`" if changed else ""
    return f"`{folder.name}`: {runs} runs, {took}{size}"


def section(results: Path, base: Path) -> str:
    """The markdown table of every experiment folder under ``results``, images linked relative to
    ``base`` (the README's folder)."""
    lines = ["| figure | claims: the report's verdict, statistic [95% CI] | sweep (2-core machine) |", "|---|---|---|"]
    for folder in sorted(p.parent for p in Path(results).glob(f"*/{RUNS}")):
        runs = load(folder)
        pngs = " ".join(f'<img src="{Path(os.path.relpath(p, base)).as_posix()}" width="380">'
                        for p in sorted(folder.glob("*.png")))
        claims = "<br>".join(_claim(r) for r in experiment_rows(folder.name, runs)) or "(no paper claim)"
        lines.append(f"| {pngs} | {claims} | {_sweep(folder, len(runs))} |")
    return "\n".join(lines) + "\n"


def updated(readme_text: str, results: Path, base: Path = Path(".")) -> str:
    """``readme_text`` (of a README in ``base``) with the block between the markers replaced by :func:`section`."""
    head, start, rest = readme_text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"the README has no {START} ... {END} block to fill")
    return f"{head}{START}\n{section(results, base)}{END}{tail}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m curvlab.gallery", description=__doc__)
    parser.add_argument("results", type=Path, nargs="?", default=Path("results"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)
    args.readme.write_text(updated(args.readme.read_text(), args.results, args.readme.parent))
    print(args.readme)


if __name__ == "__main__":
    main()
