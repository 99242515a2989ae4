import math

import pytest
import torch

from curvlab.rsc.init import normal_init, rsc_init, sigma0 as rsc_sigma0
from curvlab.rsc.model import DeepMLP


def test_forward_is_eq1():
    torch.manual_seed(0)
    model = DeepMLP(5, 7, 2, out_dim=3, activation="tanh").double()
    rsc_init(model, 1.0, torch.Generator().manual_seed(1))
    x = torch.randn(4, 5, dtype=torch.float64)
    W1, W2 = model.weights
    a1 = torch.tanh(x @ W1.T / math.sqrt(5))
    a2 = torch.tanh(a1 @ W2.T / math.sqrt(7))
    expected = a2 @ model.head.T / math.sqrt(7)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-14)
    assert model.params()[-1] is model.head and len(model.params()) == 3


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_width_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="width must be a positive integer"):
        DeepMLP(4, bad, 2)


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        DeepMLP(4, 4, 2, activation="relu6")


def test_sigma0_formula():
    # Assumption 2 at m = 1000: sqrt(log 1000) / sqrt(2000) = 2.628.../44.72...
    m = 1000
    expected = 0.7 / (2 * (1 + math.sqrt(math.log(m)) / math.sqrt(2 * m)))
    assert rsc_sigma0(0.7, m) == pytest.approx(expected, rel=1e-15)
    assert rsc_sigma0(1.0, m) == pytest.approx(0.5 / (1 + 2.6282608 / 44.7213595), rel=1e-6)


def test_rsc_init_unit_last_layer_and_variance():
    model = DeepMLP(300, 400, 2, out_dim=10)
    rsc_init(model, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.head.norm(dim=1), torch.ones(10))
    sigma0 = rsc_sigma0(1.0, 400)
    for w in model.weights:  # 120k-160k samples: std estimate within ~1%
        assert w.std().item() == pytest.approx(sigma0, rel=0.02)
        assert abs(w.mean().item()) < 0.01


def test_normal_init_and_seed_determinism():
    a, b = DeepMLP(20, 30, 2), DeepMLP(20, 30, 2)
    normal_init(a, 0.3, torch.Generator().manual_seed(5))
    normal_init(b, 0.3, torch.Generator().manual_seed(5))
    for p, q in zip(a.params(), b.params()):
        assert torch.equal(p, q)
    assert a.weights[1].std().item() == pytest.approx(0.3, rel=0.1)
    with pytest.raises(ValueError, match="std must be > 0"):
        normal_init(a, 0.0, torch.Generator())
