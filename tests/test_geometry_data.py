"""The duplicated / near-duplicate inputs option used by the rsc_vs_ntk experiment (Remark 5.6)."""

from __future__ import annotations

import math

import pytest
import torch

from curvlab.rsc.data import duplicate_rows, load_images


def _data(n=20, d=9):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    return x * (math.sqrt(d) / x.norm(dim=1, keepdim=True)), torch.arange(n) % 10, torch.arange(100, 100 + n)


def test_exact_duplicates_copy_rows_labels_and_indices():
    x, lab, idx = _data()
    x2, lab2, idx2 = duplicate_rows(x, lab, idx, 0.25, 0.0, seed=3)
    n_dup = 5
    assert torch.equal(x2[:-n_dup], x[:-n_dup]) and torch.equal(lab2[:-n_dup], lab[:-n_dup])
    for j in range(20 - n_dup, 20):
        src = int(idx2[j]) - 100
        assert src < 20 - n_dup
        assert torch.equal(x2[j], x[src]) and lab2[j] == lab[src]
    assert torch.equal(x, _data()[0])  # inputs untouched


def test_near_duplicates_are_close_and_keep_the_norm():
    x, lab, idx = _data()
    x2, _, idx2 = duplicate_rows(x, lab, idx, 0.25, 0.01, seed=3)
    for j in range(15, 20):
        src = x[int(idx2[j]) - 100]
        rel = float((x2[j] - src).norm() / src.norm())
        assert 0 < rel < 0.03
    torch.testing.assert_close(x2.norm(dim=1), torch.full((20,), 3.0))


def test_no_duplicates_is_the_identity_and_bad_values_raise():
    x, lab, idx = _data()
    out = duplicate_rows(x, lab, idx, 0.0, 0.0, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(out, (x, lab, idx)))
    with pytest.raises(ValueError):
        duplicate_rows(x, lab, idx, 1.0, 0.0, seed=0)
    with pytest.raises(ValueError):
        duplicate_rows(x, lab, idx, 0.1, -1.0, seed=0)


def test_load_images_default_is_unchanged_and_option_applies():
    base = load_images("mnist_offline", 40, 0)
    again = load_images("mnist_offline", 40, 0, duplicates=0.0)
    assert torch.equal(base.x, again.x) and torch.equal(base.y, again.y)
    dup = load_images("mnist_offline", 40, 0, duplicates=0.5)
    assert torch.equal(dup.x[:20], base.x[:20])
    assert len(torch.unique(dup.indices)) <= 20
