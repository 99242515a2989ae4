"""The Gaussian teacher generator."""

import pytest
import torch

from curvlab.recovery.teacher import sample_teacher, teacher_output


def test_shapes_seeding_and_kinds():
    a = sample_teacher("fcn", 4, 30, 10, 3, seed=5)
    b = sample_teacher("fcn", 4, 30, 10, 3, seed=5)
    c = sample_teacher("fcn", 4, 30, 10, 3, seed=6)
    assert a.X.shape == (4, 30, 10) and a.y.shape == (4, 30) and a.W_star.shape == (4, 10, 3)
    assert a.X.dtype == torch.float64
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y) and torch.equal(a.W_star, b.W_star)
    assert not torch.equal(a.X, c.X)
    assert set(a.y.unique().tolist()) <= {0.0, 1.0}
    cnn = sample_teacher("cnn", 2, 30, 12, 3, seed=0)
    assert cnn.W_star.shape == (2, 4)
    with pytest.raises(ValueError, match="divisible"):
        sample_teacher("cnn", 2, 30, 10, 3, seed=0)
    with pytest.raises(ValueError, match="kind"):
        sample_teacher("rnn", 2, 30, 10, 3, seed=0)


def test_labels_follow_the_teacher():
    """Mean label within bins of H matches H (y ~ Bernoulli(H))."""
    for kind, d in (("fcn", 6), ("cnn", 6)):
        td = sample_teacher(kind, 2, 40000, d, 3, seed=1)
        H = teacher_output(kind, td.W_star, td.X, 3).flatten()
        y = td.y.flatten()
        edges = torch.quantile(H[:50000], torch.linspace(0.05, 0.95, 6, dtype=H.dtype))
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (H >= lo) & (H < hi)
            assert sel.sum() > 1000
            assert abs(y[sel].mean() - H[sel].mean()) < 0.03


def test_weight_options():
    g = sample_teacher("fcn", 3, 5, 8, 3, seed=0, weights="orthonormal")
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(g.W_star.transpose(1, 2) @ g.W_star, eye.expand(3, 3, 3), atol=1e-12)
    u = sample_teacher("fcn", 3, 5, 8, 3, seed=0, weights="unit")
    assert torch.allclose(u.W_star.norm(dim=1), torch.ones(3, 3, dtype=torch.float64))
    k = sample_teacher("fcn", 3, 5, 8, 3, seed=0, cond=4.0)
    s = torch.linalg.svdvals(k.W_star)
    assert torch.allclose(s[:, 0] / s[:, -1], torch.full((3,), 4.0, dtype=torch.float64))
    with pytest.raises(ValueError):
        sample_teacher("cnn", 3, 5, 9, 3, seed=0, cond=2.0)
