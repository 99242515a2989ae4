"""Batched recovery GD vs a straightforward per-trial autograd loop.

Work: FCN, d = 25, K = 3, n = 2000, float64, 1000 trials = 50 training sets x 20 local inits, a fixed
number of GD steps (no early stop: tol = 0).

* batched: ``curvlab.recovery.gd.run_gd`` on all 1000 trials (``--steps`` updates), timed with 1
  worker thread and with the default (torch threads); the faster one is the ratio's numerator;
* per-trial loop: for one trial at a time, ``loss.backward()``-style autograd on the plain loss
  (``losses.loss_single``) and ``W -= eta grad``. The loop costs the same per trial-step whatever the
  trial, so it is timed on ``--loop-trials`` trials spread over the sets and scaled per trial-step.

Prints the cost per trial-step of both, their ratio, and the achieved fraction of this machine's fp64
FLOP limit for the batched step (2 GEMMs of 2 n d K FLOP per trial-step; elementwise work not counted),
the limit measured in the same run by a large fp64 matmul on all threads.

Then, 1 worker thread, interleaved medians: the step with the fused FCN kernel (``fused.fcn_step``)
against the BLAS GEMMs around the fused elementwise pass (``CURVLAB_NO_TILED=1``), and both against
the floor: 4 n d K FLOP at the 1-thread fp64 peak (the higher of a large BLAS matmul and a register-only
FMA loop, ``fused.fma_peak``: BLAS need not reach the core's peak) plus n K exps at the cheaper measured
exp cost (the kernel's or the compiler's, ``fused.exp_loop``); the gradient kernel alone (``fused.fcn_grad``)
and its two GEMMs alone (mode 1), which splits it into GEMM time against the FLOPs and elementwise time
against the exps. Last, the gradient kernel's cost per sample at n = 2000 and 10000 (a set's X
outgrows the L2 cache in between). No asserts on time.

    .venv/bin/python bench/bench_recovery_gd.py [--steps 30] [--loop-trials 40] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from timing import median_seconds

from curvlab.recovery import fused, gd, losses
from curvlab.recovery.init import local_init
from curvlab.recovery.teacher import sample_teacher


def fp64_flop_limit(size: int = 3000, reps: int = 3) -> float:
    """GFLOP/s of a large fp64 matmul on all torch threads (best of ``reps``)."""
    A = torch.randn(size, size, dtype=torch.float64)
    B = torch.randn(size, size, dtype=torch.float64)
    A @ B
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        A @ B
        best = min(best, time.perf_counter() - t)
    return 2.0 * size**3 / best / 1e9


def per_trial_loop(data, W0, eta, steps: int, trials: list[tuple[int, int]]) -> tuple[float, torch.Tensor]:
    out = []
    t0 = time.perf_counter()
    for s, l in trials:
        X, y = data.X[s], data.y[s]
        W = W0[s, l].clone()
        for _ in range(steps):
            W.requires_grad_(True)
            loss = losses.loss_single(data.kind, X, y, W, data.K)
            (g,) = torch.autograd.grad(loss, W)
            with torch.no_grad():
                W = W - eta[s] * g
        out.append(W.detach())
    return time.perf_counter() - t0, torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--loop-trials", type=int, default=40)
    ap.add_argument("--workers", type=int, default=None, help="GD worker threads (default: torch threads)")
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    d, K, n, S, L = 25, 3, 2000, 50, 20
    data = sample_teacher("fcn", S, n, d, K, seed=0)
    W0 = local_init(data.W_star, L, 0.1, torch.Generator().manual_seed(1))
    eta = gd.step_sizes(data)
    threads = torch.get_num_threads()
    workers = gd.default_workers() if args.workers is None else args.workers
    print(f"machine: {os.cpu_count()} cpus, torch threads {threads}, torch {torch.__version__}")
    print(f"work: FCN d={d} K={K} n={n} float64, {S} sets x {L} inits = {S * L} trials, {args.steps} GD steps")

    # the batched GD is timed with 1 worker thread and with the default count (both cores); the faster
    # one enters the ratio (on a shared machine the second core may be busy)
    batched = {}
    for w in sorted({1, workers}):
        gd.run_gd(data.subset(slice(0, 2)), W0[:2], eta[:2], max_iter=2, tol=0.0, record_history=False, workers=w)
        t = time.perf_counter()
        res = gd.run_gd(data, W0, eta, max_iter=args.steps, tol=0.0, record_history=False, workers=w)
        batched[w] = (time.perf_counter() - t, res)
    best_w = min(batched, key=lambda w: batched[w][0])
    t_batched, res = batched[best_w]
    # run_gd evaluates steps + 1 gradients (the last one only for the final norm): count the updates
    # and the evaluations alike, i.e. per gradient evaluation.
    per_b = t_batched / res.trial_steps

    gen = torch.Generator().manual_seed(2)
    sets = torch.randperm(S, generator=gen)[: args.loop_trials] % S
    trials = [(int(s), int(i % L)) for i, s in enumerate(sets.tolist())]
    trials = (trials * ((args.loop_trials + len(trials) - 1) // max(len(trials), 1)))[: args.loop_trials]
    # the loop is timed with 1 torch thread and with the default count; the faster one is the baseline
    loop_times = {}
    for nt in sorted({1, threads}):
        torch.set_num_threads(nt)
        loop_times[nt], W_loop = per_trial_loop(data, W0, eta, args.steps, trials)
    torch.set_num_threads(threads)
    best_nt = min(loop_times, key=loop_times.get)
    t_loop = loop_times[best_nt]
    per_l = t_loop / (len(trials) * args.steps)
    idx_s = torch.tensor([s for s, _ in trials])
    idx_l = torch.tensor([l for _, l in trials])
    diff = (res.W[idx_s, idx_l] - W_loop).abs().max().item()

    flop_per_trial_step = 4.0 * n * d * K
    achieved = flop_per_trial_step / per_b / 1e9
    limit = fp64_flop_limit()
    torch.set_num_threads(1)
    limit1 = fp64_flop_limit()
    torch.set_num_threads(threads)
    for w, (tb, rb) in batched.items():
        print(f"batched GD      : {tb / rb.trial_steps * 1e6:8.1f} us per trial-step  ({tb:.2f} s for {rb.trial_steps} "
              f"trial-steps, {w} worker thread(s))")
    for nt, tl in loop_times.items():
        print(f"per-trial loop  : {tl / (len(trials) * args.steps) * 1e6:8.1f} us per trial-step  ({tl:.2f} s for "
              f"{len(trials)} trials x {args.steps} steps, {nt} torch thread(s))")
    print(f"speed-up (faster loop, {best_nt} thread(s) / faster batched, {best_w} worker(s)): {per_l / per_b:.1f}x")
    print(f"fp64 FLOP limit (3000^3 matmul, {threads} threads): {limit:.1f} GFLOP/s; "
          f"1 thread: {limit1:.1f} GFLOP/s -> vs the {best_w}-thread limit: {achieved / (limit1 if best_w == 1 else limit):.1%}")
    print(f"batched step ({best_w} worker(s)) achieves {achieved:.1f} GFLOP/s = {achieved / limit:.1%} of the limit "
          f"(GEMM FLOPs only: 4 n d K = {flop_per_trial_step / 1e6:.2f} MFLOP per trial-step)")
    print(f"check: max |W_batched - W_loop| over the looped trials = {diff:.2e}")
    floor_table(data, W0, eta, args.steps, limit1)
    per_sample_table(d, K, S, L)


def exp_seconds(count: int, impl: int = 0, reps: int = 200) -> float:
    """Seconds per exp, best of 3 loops of ``reps`` x ``count``: the fused kernel's vectorized exp
    (``impl`` 0) or the compiler's (1, glibc's libmvec)."""
    x = torch.randn(count, dtype=torch.float64)
    out = torch.empty_like(x)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        fused.kernel().exp_loop(x, out, reps, impl)
        best = min(best, time.perf_counter() - t)
    return best / (reps * count)


def fma_peak_gflops(reps: int = 20_000_000) -> float:
    """GFLOP/s of the kernel's register-only FMA loop (12 chains of 8 lanes, 192 FLOP a round), best of 3."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        fused.kernel().fma_peak(reps)
        best = min(best, time.perf_counter() - t)
    return 192.0 * reps / best / 1e9


def kernel_inputs(data, W0: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``fused.fcn_grad``'s arguments for all trials, none skipped: Wt, Xp, cc, G (out), skip."""
    S, L, d, K = W0.shape
    Xp, cc = gd._panels(data.X, data.y, K)
    Wt = W0.transpose(2, 3).reshape(S, L * K, d).contiguous()
    return Wt, Xp, cc, torch.empty_like(Wt), torch.zeros(S, L, dtype=torch.bool)


def floor_table(data, W0, eta, steps: int, peak1: float) -> None:
    """The 1-worker step, fused FCN kernel vs BLAS GEMMs + fused elementwise pass, against the floor."""
    if fused.tiled_max_k() < data.K:
        print("fused FCN kernel not built here (no g++, or neither AVX-512 nor AVX2): floor table skipped")
        return
    S, n, d = data.X.shape
    K = data.K
    trial_steps = {}

    def run(no_tiled: bool):
        def go():
            os.environ.pop("CURVLAB_NO_TILED", None)
            if no_tiled:
                os.environ["CURVLAB_NO_TILED"] = "1"
            res = gd.run_gd(data, W0, eta, max_iter=steps, tol=0.0, record_history=False, workers=1)
            os.environ.pop("CURVLAB_NO_TILED", None)
            trial_steps[no_tiled] = res.trial_steps
            return res.W
        return go

    L = W0.shape[1]
    Wt, Xp, cc, G, skip = kernel_inputs(data, W0)

    def grad_alone(mode: int):  # the gradient kernel by itself, all trials (mode 1: its two GEMMs only)
        def go():
            for _ in range(steps):
                fused.kernel().fcn_grad(Wt, Xp, cc, skip, G, K, float(n), 1e-6, mode)
        return go

    fns = {"fused": run(False), "blas": run(True), "grad": grad_alone(0), "gemms": grad_alone(1)}
    times = median_seconds(fns, repeats=5)
    a, b = run(False)(), run(True)()
    per = {k: times[k] / trial_steps[k == "blas"] * 1e6 for k in ("fused", "blas")}
    per.update({k: times[k] / (steps * S * L) * 1e6 for k in ("grad", "gemms")})
    exp_ns = {impl: exp_seconds(n * K, impl) * 1e9 for impl in (0, 1)}
    fma = fma_peak_gflops()
    peak = max(peak1, fma)
    gemm_floor, exp_floor = 4.0 * n * d * K / (peak * 1e9) * 1e6, n * K * min(exp_ns.values()) * 1e-3
    floor = gemm_floor + exp_floor  # with the cheaper exp
    print(f"1 worker, medians of 5 interleaved rounds: fused FCN kernel {per['fused']:.1f} us per trial-step, "
          f"BLAS GEMMs + fused elementwise {per['blas']:.1f} us -> {per['blas'] / per['fused']:.2f}x")
    print(f"exp: the kernel's {exp_ns[0]:.2f} ns, the compiler's (libmvec) {exp_ns[1]:.2f} ns; 1-thread fp64 peak: "
          f"BLAS matmul {peak1:.1f} GFLOP/s, register FMA loop {fma:.1f} GFLOP/s")
    print(f"floor (4 n d K FLOP at {peak:.1f} GFLOP/s + {n * K} exps at {min(exp_ns.values()):.2f} ns): {floor:.1f} us -> fused kernel "
          f"{per['fused'] / floor:.2f}x the floor, BLAS path {per['blas'] / floor:.2f}x")
    print(f"the gradient kernel alone (fcn_grad, no update): {per['grad']:.1f} us = {per['grad'] / floor:.2f}x the "
          f"floor; the GD step around it (update, bookkeeping, set-up) adds {per['fused'] - per['grad']:.1f} us")
    ew = per["grad"] - per["gemms"]
    print(f"its two GEMMs alone (mode 1): {per['gemms']:.1f} us = {per['gemms'] / gemm_floor:.2f}x their FLOP time; "
          f"the elementwise rest (sigmoid, 1 / (cc - n Hs), D): {ew:.1f} us = {ew / exp_floor:.2f}x the exps alone")
    print(f"check: max |W_fused - W_blas| / max |W| = {((a - b).abs().max() / b.abs().max()).item():.1e}")


def per_sample_table(d: int, K: int, S: int, L: int, ns: tuple[int, ...] = (2000, 10000)) -> None:
    """The gradient kernel's cost per sample and trial, 1 worker, at the ends of Fig. 3(a)'s n range:
    a set's X (n d 8 bytes: 0.4 MB at n = 2000, 2 MB at 10000) outgrows the L2 cache between them."""
    if fused.tiled_max_k() < K:
        return
    fns, trials = {}, S * L
    for n in ns:
        data = sample_teacher("fcn", S, n, d, K, seed=0)
        W0 = local_init(data.W_star, L, 0.1, torch.Generator().manual_seed(1))
        Wt, Xp, cc, G, skip = kernel_inputs(data, W0)
        fns[n] = lambda n=n, Wt=Wt, Xp=Xp, cc=cc, G=G, skip=skip: fused.kernel().fcn_grad(
            Wt, Xp, cc, skip, G, K, float(n), 1e-6, 0)
    times = median_seconds(fns, repeats=5)
    per = {n: times[n] / (trials * n) * 1e9 for n in ns}
    print("gradient kernel per sample and trial (1 worker, interleaved medians): " +
          ", ".join(f"n = {n}: {per[n]:.2f} ns" for n in ns) + f" -> ratio {per[ns[-1]] / per[ns[0]]:.2f}")


if __name__ == "__main__":
    main()
