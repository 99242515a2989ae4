"""The recovery setting follows the device of its data (no GPU needed to test it).

Two checks. (1) Pure functions on real ``meta`` tensors: every output must be on ``meta``. (2) The
fake device of ``tests/fake_device.py``: results there must equal the CPU results (same CPU kernels
underneath; the fused kernel is off): bit for bit, Hessian eigenvalues to round-off (see :func:`_close`).
"""

import functools
import math
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils import _pytree as pytree

from fake_device import CPU, META, fake_device

from curvlab.recovery import gd, hessian, losses, metrics
from curvlab.recovery.init import gaussian_init, local_init
from curvlab.recovery.module import RecoveryModule
from curvlab.recovery.teacher import sample_teacher
from curvlab.recovery.tensor_init import empirical_p2, empirical_r3, subspace, tensor_init
from curvlab.run.loaders import full_batch_loader


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    monkeypatch.setenv("CURVLAB_NO_FUSED", "1")  # the same kernels on the CPU as on the fake device


def _tensors(obj: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vars(obj).items() if isinstance(v, torch.Tensor)}


def _setup(kind: str, S: int = 3, L_: int = 4, n: int = 300, d: int = 6, K: int = 3):
    data = sample_teacher(kind, S, n, d, K, seed=3)
    W0 = local_init(data.W_star, L_, 0.1 if kind == "fcn" else 0.9, torch.Generator().manual_seed(4))
    return data, W0, gd.step_sizes(data)


def _cpu(x: Any) -> Any:
    return pytree.tree_map(lambda t: t.cpu() if isinstance(t, torch.Tensor) else t, x)


def _close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal summaries, floats to 1e-12 relative: LAPACK's eigvalsh reached through the tensor subclass
    differs from the plain call by round-off (identical Hessians in, ~1e-18 apart out)."""
    fa, fb = pytree.tree_leaves(a), pytree.tree_leaves(b)
    if pytree.tree_structure(a) != pytree.tree_structure(b):
        return False
    return all(x == y or (isinstance(x, float) and math.isclose(x, y, rel_tol=1e-12)) or (x != x and y != y)
               for x, y in zip(fa, fb))


# --------------------------------------------------------------------------------------------------


def test_fake_device_flags_tensors_created_on_the_cpu():
    with fake_device():
        x = torch.ones(3, device=META)
        assert x.device == META and float(x.sum()) == 3.0
        assert torch.equal((x * 2).cpu(), torch.full((3,), 2.0))
        assert (x + torch.tensor(1.0)).device == META  # a 0-dim CPU tensor is a scalar, as on CUDA
        with pytest.raises(RuntimeError, match="fake device"):
            x + torch.ones(3)
        with pytest.raises(RuntimeError, match="fake device"):
            x[torch.tensor([0, 1])] = 0.0
        with pytest.raises(RuntimeError, match="numpy"):
            x.numpy()  # a CPU-only step needs its explicit .cpu()


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_pure_functions_keep_meta_tensors_on_meta(kind):
    md = _setup(kind)[0].to(META)
    assert {t.device for t in (md.X, md.y, md.W_star)} == {META}
    gen = torch.Generator().manual_seed(0)
    W = local_init(md.W_star, 2, 0.1, gen)
    out = {
        "eta_auto": gd.step_sizes(md), "eta_const": gd.step_sizes(md, 0.5),
        "sphere": W, "ball": local_init(md.W_star, 2, 0.1, gen, "ball"),
        "gaussian": gaussian_init(md.W_star, 2, 1.0, gen),
        "loss": losses.loss(kind, md.X, md.y, W, md.K), "grad": losses.grad(kind, md.X, md.y, W, md.K),
        "sd": metrics.sd_n(W), "error": metrics.normalized_error(kind, W, md.W_star),
        "q": metrics.contraction_factor(torch.rand(20, 3, 2).to(META), torch.full((3, 2), 19).to(META)),
        "truth": hessian.at_truth(md), "ball_min": hessian.min_eigenvalue_in_ball(md, 0.1, 2, gen),
    }
    if kind == "fcn":
        alphas = torch.randn(3, 2, 6, dtype=md.X.dtype).to(META)
        V = subspace(empirical_p2(md.X, md.y, alphas), 3)
        out.update(V=V, R3=empirical_r3(md.X @ V, md.y))
    devices = {k: {t.device for t in pytree.tree_leaves(v)} for k, v in out.items()}
    assert all(d == {META} for d in devices.values()), devices


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_batched_gd_on_another_device_equals_cpu(kind):
    opts = dict(max_iter=300, compact_every=5, block_elements=2000, workers=1)
    if kind == "fcn":  # set 0 diverges, set 1 is capped, set 2 converges
        data, W0, eta = _setup(kind, n=3000)
        eta[0] *= 30
        opts.update(tol=1e-5, diverge_ratio=3.0)
        want = {gd.STATUS_CONVERGED, gd.STATUS_CAPPED, gd.STATUS_DIVERGED}
    else:  # every trial stops on the round-off floor, at different steps
        data, W0, eta = _setup(kind)
        opts.update(tol=0.0, stall_patience=20, stall_tol=1e-13)
        want = {gd.STATUS_CONVERGED}
    ref = gd.run_gd(data, W0, eta, **opts)
    assert set(ref.status.flatten().tolist()) == want and len(set(ref.iters.flatten().tolist())) > 3
    with fake_device():
        with gd.BatchedGD(data.to(META), W0, eta, **opts) as run:  # it moves W0 and eta to the data
            for _ in range(3):
                run.step()
            on = {**_tensors(run), **{"pk." + k: v for k, v in _tensors(run._pk).items()}}
            assert {k: v.device for k, v in on.items() if v.device != META} == {}
            res = run.run()
        assert {k: v.device for k, v in _tensors(run).items() if v.device != META} == {}
    fields = ("W", "iters", "status", "grad_norm", "eta", "history")
    assert all(getattr(res, f).device == META for f in fields)
    for f in fields:
        assert torch.equal(getattr(res, f).cpu().nan_to_num(), getattr(ref, f).nan_to_num()), f
    assert (res.steps, res.trial_steps) == (ref.steps, ref.trial_steps)


def test_fused_kernel_serves_cpu_float64_only(monkeypatch):
    calls = []

    class Kernel:  # stands in for the compiled one: records, computes nothing
        def fused_delta(self, Z: torch.Tensor, *args: Any) -> None:
            calls.append(("fused_delta", Z.device, Z.dtype))

        def fcn_step(self, Wt: torch.Tensor, Xp, cc, skip, eta, bound, gn: torch.Tensor, stepped: torch.Tensor,
                     *args: Any) -> None:
            calls.append(("fcn_step", Wt.device, Wt.dtype))
            gn.fill_(0.0), stepped.fill_(False)

        def tiled_max_k(self) -> int:
            return 8

    kernel = Kernel()
    monkeypatch.setattr(gd.fused, "kernel", lambda: kernel)
    for kind in ("fcn", "cnn"):
        for dtype, device in ((torch.float64, CPU), (torch.float32, CPU), (torch.float64, META)):
            data = sample_teacher(kind, 2, 50, 6, 3, seed=0, dtype=dtype)
            W0, eta = data.W_star.unsqueeze(1), gd.step_sizes(data, 0.1)
            with fake_device(), gd.BatchedGD(data.to(device), W0, eta, workers=1) as run:
                run.step()
    assert calls == [("fcn_step", CPU, torch.float64), ("fused_delta", CPU, torch.float64)]


@pytest.mark.parametrize("kind,K", [("fcn", 3), ("cnn", 3), ("fcn", 8)])
def test_inits_and_metrics_on_another_device_equal_cpu(kind, K):
    d = 9 if K == 8 else 6
    data = sample_teacher(kind, 2, 2000, d, K, seed=1)
    W = local_init(data.W_star, 3, 0.3, torch.Generator().manual_seed(2))
    ref = (tensor_init(data, torch.Generator().manual_seed(5), num_alpha=2),
           metrics.normalized_error(kind, W, data.W_star),
           hessian.min_eigenvalue_in_ball(data, 0.1, 2, torch.Generator().manual_seed(6)))
    with fake_device():
        md = data.to(META)
        out = (tensor_init(md, torch.Generator().manual_seed(5), num_alpha=2),  # numpy link inversion inside
               metrics.normalized_error(kind, W.to(META), md.W_star),  # K = 8: Hungarian (scipy)
               hessian.min_eigenvalue_in_ball(md, 0.1, 2, torch.Generator().manual_seed(6)))  # CPU generator draws
        assert all(t.device == META for t in out)
        out = _cpu(out)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert torch.allclose(out[2], ref[2], rtol=1e-12, atol=0)  # eigvalsh: LAPACK round-off, see _close


class _OnFakeDevice(RecoveryModule):
    """Lightning places it on the CPU; it reports the fake device."""

    @property
    def device(self) -> torch.device:
        return META


def _fit(module: RecoveryModule, max_steps: int) -> dict[str, Any]:
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, limit_val_batches=0,
                        num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=full_batch_loader())
    return {k: v for k, v in module.summary().items() if not k.endswith("_seconds")}


def _module(cls: type, kind: str) -> RecoveryModule:
    data, W0, eta = _setup(kind)
    gd_options = {"block_elements": 2000, "workers": 1}
    stop = {"tol": 1e-9 if kind == "fcn" else 0.0}
    if kind == "cnn":  # and no history: no contraction factor
        stop.update(stall_patience=20, stall_tol=1e-13)
        gd_options.update(record_history=False)
    measures = {"at_truth": {}, "at_hat": {}, "in_ball": {"points": 2, "radius": 0.1}}
    return cls(data, W0, functools.partial(gd.BatchedGD, eta=eta, **gd_options), max_steps=150,
               threshold=metrics.SUCCESS_THRESHOLD[kind], stop=stop, measures=measures, seed=2)


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_module_fitted_on_another_device_equals_cpu(kind):
    ref = _fit(_module(RecoveryModule, kind), 150)
    module = _module(_OnFakeDevice, kind)
    with fake_device():
        got = _fit(module, 150)
    assert module.data.X.device == module.W0.device == module.gd.eta.device == META
    assert {k: v.device for k, v in _tensors(module.gd).items() if v.device != META} == {}
    assert got["status"] == "completed" and not math.isnan(got["lambda_min_ball"])
    assert _close(got, ref)
    gd_only = ("sd", "success", "error", "init_error")  # no eigenvalues in these: bit-identical
    assert [got["per_set"][k] for k in gd_only] == [ref["per_set"][k] for k in gd_only]


def test_module_fitted_by_lightning_equals_batched_gd_on_cpu():
    module = _module(RecoveryModule, "cnn")
    summary = _fit(module, 150)
    data, W0, eta = _setup("cnn")
    ref = gd.run_gd(data, W0, eta, max_iter=150, tol=0.0, block_elements=2000, workers=1, stall_patience=20,
                    stall_tol=1e-13)
    res = module.gd.result()
    assert module.data.X.device == CPU
    assert torch.equal(res.W, ref.W) and torch.equal(res.iters, ref.iters) and torch.equal(res.status, ref.status)
    assert summary["per_set"]["sd"] == metrics.sd_n(ref.W).tolist()
    assert summary["iters_mean"] == ref.iters.double().mean().item()
    assert summary["gd_steps"] == ref.steps
