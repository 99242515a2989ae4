"""The README's Results table is what results/ gives: no stale figure, verdict or wall time."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest
from conftest import ROOT

from curvlab import gallery


def test_the_readme_results_block_matches_results():
    readme = (ROOT / "README.md").read_text()
    assert readme == gallery.updated(readme, ROOT / "results", ROOT), "run `python -m curvlab.gallery` and commit README.md"


def test_every_committed_results_folder_is_shown_with_its_figures():
    block = (ROOT / "README.md").read_text().partition(gallery.START)[2].partition(gallery.END)[0]
    for folder in (ROOT / "results").glob("*/runs.csv"):
        assert f"`{folder.parent.name}`" in block
        for png in folder.parent.glob("*.png"):
            assert f'src="{png.relative_to(ROOT).as_posix()}"' in block


def test_a_readme_without_the_block_is_refused():
    with pytest.raises(SystemExit, match="results:start"):
        gallery.updated("# no block here\n", ROOT / "results", ROOT)
