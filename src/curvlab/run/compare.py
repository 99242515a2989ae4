"""Compare the results of two result trees bit for bit: ``python -m curvlab.run.compare OLD NEW``.

Every ``summary.json`` and ``metrics.csv`` under OLD is compared with the file at the same relative
path under NEW, leaving out wall-clock timings (keys and columns ending in ``seconds``) and the
stored config (which names keys, not numbers). Values are compared as written (JSON numbers, CSV
text), so "identical" means the same bits. Prints one line per differing, missing or extra file
naming the keys that differ, then a count; exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from curvlab.run.store import HISTORY, SUMMARY

RESULT_FILES = (SUMMARY, HISTORY)


def _timing(key: str) -> bool:
    return key.endswith("seconds")


def _summary(path: Path) -> Any:
    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if not _timing(k) and k != "config"}
        return [clean(v) for v in obj] if isinstance(obj, list) else obj

    return clean(json.loads(path.read_text()))


def _history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if not _timing(k)} for row in csv.DictReader(fh)]


def _same(a: Any, b: Any) -> bool:
    """Equal as written: floats by their shortest round-trip text (so NaN equals NaN, 0.0 is not -0.0)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def differing_keys(old: Path, new: Path) -> list[str]:
    """The keys (summary) or columns (history) whose values differ between two result files."""
    if old.name == SUMMARY:
        a, b = _summary(old), _summary(new)
        return sorted(k for k in set(a) | set(b) if k not in a or k not in b or not _same(a[k], b[k]))
    a, b = _history(old), _history(new)
    if len(a) != len(b):
        return [f"<rows: {len(a)} vs {len(b)}>"]
    return sorted({k for ra, rb in zip(a, b) for k in set(ra) | set(rb) if ra.get(k) != rb.get(k)})


def _results(root: Path) -> set[Path]:
    return {p.relative_to(root) for name in RESULT_FILES for p in root.rglob(name)}


def compare(old: Path, new: Path) -> tuple[int, list[str]]:
    """(number of identical files, one line per file that differs or exists on one side only)."""
    a, b = _results(old), _results(new)
    lines, same = [], 0
    for rel in sorted(a | b):
        if rel not in b or rel not in a:
            lines.append(f"{'missing in NEW' if rel not in b else 'only in NEW'}: {rel}")
        elif keys := differing_keys(old / rel, new / rel):
            lines.append(f"differs: {rel}: {', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''}")
        else:
            same += 1
    return same, lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m curvlab.run.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    same, lines = compare(args.old, args.new)
    print("\n".join(lines + [f"{same} identical, {len(lines)} not (of {same + len(lines)} result files)"]))
    raise SystemExit(1 if lines else 0)


if __name__ == "__main__":
    main()
