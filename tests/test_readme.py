"""The README's code runs as written."""

from __future__ import annotations

import math
import re

from conftest import ROOT


def _block(after: str) -> str:
    """The first python code block of the README after the line containing ``after``."""
    text = (ROOT / "README.md").read_text()
    start = text.index(after)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_the_callback_snippet_runs(capsys):
    exec(compile(_block("test_the_callback_snippet_runs"), "README.md", "exec"), {})
    assert math.isfinite(float(capsys.readouterr().out.strip().splitlines()[-1]))
