"""The fused FCN gradient kernel (with either reciprocal) against the closed-form gradient, its GD
step against the eager update, its exp against torch.exp, its FMA-peak loop against its closed form,
and loading it leaves the process's floating-point mode alone."""

import ctypes
import os
import subprocess
import sys

os.environ.setdefault("WANDB_MODE", "disabled")

import pytest
import torch

from curvlab.recovery import fused, gd, losses
from curvlab.recovery.init import local_init
from curvlab.recovery.teacher import sample_teacher


def _kernel(K: int = 1):
    if fused.tiled_max_k() < K:
        pytest.skip("fused FCN kernel not built here (no g++, or neither AVX-512 nor AVX2): the BLAS path runs instead")
    return fused.kernel()


@pytest.fixture(scope="module", params=["vdivpd", "vrcp14pd"])
def either_reciprocal(request):
    """The kernel built with each of its two 1 / a (the CPU picks one by default; both are checked)."""
    _kernel()
    defines = ("-DCURVLAB_VDIV",) if request.param == "vdivpd" else ()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "_flags", lambda: fused._FLAGS + defines)
        return fused.Kernels(ctypes.CDLL(str(fused._build())))


@pytest.mark.parametrize("K", [1, 3, 5, 8])
@pytest.mark.parametrize("n", [8, 203])
def test_fcn_grad_equals_closed_form_gradient(K, n, either_reciprocal):
    mod = either_reciprocal
    td = sample_teacher("fcn", 2, n, 7, K, seed=K)
    W = local_init(td.W_star, 3, 0.5, torch.Generator().manual_seed(0))  # (S, L, d, K)
    W[1, 2] *= 40.0  # saturated: H leaves [eps, 1 - eps] for some samples, their terms vanish
    S, L, d, _ = W.shape
    Xp, cc = gd._panels(td.X, td.y, K)
    Wt = W.transpose(2, 3).reshape(S, L * K, d).contiguous()
    skip = torch.zeros(S, L, dtype=torch.bool)
    skip[0, 1] = True
    G = torch.full_like(Wt, float("nan"))
    mod.fcn_grad(Wt, Xp, cc, skip, G, K, float(n), 1e-6, 0)
    ref = losses.grad("fcn", td.X, td.y, W, K, eps=1e-6).transpose(2, 3).reshape(S, L * K, d)
    ref[0, K:2 * K] = 0.0  # skipped slot
    assert torch.allclose(G, ref, rtol=1e-13, atol=1e-16 * ref.abs().max())


@pytest.mark.parametrize("apply", [True, False])
def test_fcn_step_is_fcn_grad_then_the_masked_update(apply):
    """Slots: plain, skipped (frozen), beyond the divergence bound, NaN weights, one gradient below tol."""
    K, n = 3, 203
    mod = _kernel(K)
    td = sample_teacher("fcn", 2, n, 7, K, seed=3)
    W = local_init(td.W_star, 5, 0.5, torch.Generator().manual_seed(0))
    W[1, 3, 0, 0] = float("nan")
    S, L, d, _ = W.shape
    Xp, cc = gd._panels(td.X, td.y, K)
    Wt = W.transpose(2, 3).reshape(S, L * K, d).contiguous()
    skip = torch.zeros(S, L, dtype=torch.bool)
    skip[0, 1] = True
    bound = torch.full((S, L), 1e3, dtype=torch.float64)
    bound[0, 2] = 1e-3  # ||w|| > bound: diverged, no step
    eta = torch.tensor([0.7, 1.3], dtype=torch.float64)
    G = torch.empty_like(Wt)
    mod.fcn_grad(Wt, Xp, cc, skip, G, K, float(n), 1e-6, 0)
    norms = G.view(S, L, -1).norm(dim=-1).flatten()[[0, 3, 4, 5, 6, 7, 9]].sort().values
    tol = float(norms[:2].mean())  # between the two smallest gradient norms: one slot has converged
    ref_W = Wt.clone()
    frozen = skip if apply else torch.ones_like(skip)
    ref_gn, ref_stepped = gd._update(ref_W, G.clone(), eta, frozen, tol, bound)
    ref_gn[skip] = 0.0
    gn = torch.empty(S, L, dtype=torch.float64)
    stepped = torch.empty(S, L, dtype=torch.bool)
    mod.fcn_step(Wt, Xp, cc, skip, eta, bound, gn, stepped, K, float(n), 1e-6, tol, apply)
    assert torch.equal(stepped, ref_stepped) and int(stepped.sum()) == (6 if apply else 0)
    assert torch.equal(torch.isnan(gn), torch.isnan(ref_gn)) and gn.isnan().sum() == 2
    assert torch.allclose(gn.nan_to_num(), ref_gn.nan_to_num(), rtol=1e-14, atol=0.0)
    assert torch.allclose(Wt, ref_W, rtol=1e-14, atol=1e-15, equal_nan=True)


def test_fcn_grad_mode_1_is_the_two_gemms_alone():
    mod = _kernel(2)
    X = torch.randn(1, 16, 4, dtype=torch.float64)
    W = torch.randn(1, 2, 4, dtype=torch.float64)  # one slot, K = 2
    Xp, cc = gd._panels(X, torch.zeros(1, 16, dtype=torch.float64), 2)
    G = torch.empty_like(W)
    mod.fcn_grad(W, Xp, cc, torch.zeros(1, 1, dtype=torch.bool), G, 2, 16.0, 1e-6, 1)
    Z = W @ X.transpose(1, 2)
    assert torch.allclose(G, Z @ X, rtol=1e-13)


def test_kernel_exp_is_within_2_ulp_of_torch_exp_with_ieee_edges():
    mod = _kernel()
    x = torch.cat([torch.linspace(-745.0, 709.7, 20001, dtype=torch.float64),
                   torch.tensor([0.0, -0.0, 1e-300, -800.0, 800.0, float("inf"), -float("inf"), float("nan")],
                                dtype=torch.float64)])
    out = torch.empty_like(x)
    mod.exp_loop(x, out, 1, 0)
    ref = torch.exp(x)
    normal = ref > 1e-300
    ulp = torch.nextafter(ref, torch.tensor(float("inf"), dtype=torch.float64)) - ref
    assert ((out - ref).abs()[normal & torch.isfinite(ref)] <= 2 * ulp[normal & torch.isfinite(ref)]).all()
    edges = out[-8:].tolist()  # 0, -0, 1e-300, -800, 800, inf, -inf, nan
    assert edges[:3] == [1.0, 1.0, 1.0] and edges[3] == 0.0 and edges[4:6] == [float("inf")] * 2
    assert edges[6] == 0.0 and torch.isnan(out[-1])


def test_loading_the_kernel_keeps_subnormals_in_the_process():
    """A -ffast-math link would add crtfastmath.o, whose constructor sets flush-to-zero for the whole
    process on load; checked in a fresh interpreter, before any other library could."""
    code = ("import struct, torch; from curvlab.recovery import fused; x = float('1e-310'); "
            "t = torch.tensor([x], dtype=torch.float64); bits = lambda v: struct.pack('d', v); "  # DAZ fools ==
            "print(fused.kernel() is not None, bits((t * 1.0).item()) == bits(x), bits(x * 1.0) == bits(x))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "True":
        pytest.skip("fused kernel not built here")
    assert out[1:] == ["True", "True"]


@pytest.mark.parametrize("reps", [0, 1, 1000])
def test_fma_peak_runs_reps_rounds_of_its_12_chains(reps):
    """acc_q <- a acc_q + b from acc_q = q, 8 lanes each: the closed form of the returned sum, so the
    loop the benchmark times cannot have been dropped or shortened."""
    mod = _kernel()
    a, b = 0.999999, 1e-9
    want = 8 * sum(q * a**reps + b * (1 - a**reps) / (1 - a) for q in range(12))
    assert mod.fma_peak(reps) == pytest.approx(want, rel=1e-12)


def test_gd_with_and_without_the_fused_fcn_kernel_agree(monkeypatch):
    _kernel(3)
    td = sample_teacher("fcn", 3, 301, 10, 3, seed=0)
    W0 = local_init(td.W_star, 4, 0.3, torch.Generator().manual_seed(1))
    eta = gd.step_sizes(td)
    a = gd.run_gd(td, W0, eta, max_iter=30, tol=0.0, workers=2)
    monkeypatch.setenv("CURVLAB_NO_TILED", "1")
    b = gd.run_gd(td, W0, eta, max_iter=30, tol=0.0, workers=2)
    assert torch.allclose(a.W, b.W, rtol=1e-13, atol=1e-15)
    assert torch.allclose(a.grad_norm, b.grad_norm, rtol=1e-11)
