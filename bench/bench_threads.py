"""Torch threads per job: 1 against all cores, for a lone job and for as many concurrent jobs as cores.

Workloads (1 GD step each): the RSC Fig. 1 MLP at widths 64 and 1024 (n = 512, fp32: fused loss,
gradient and g_bar pass + SGD update) and the recovery batched GD (FCN, d = 25, K = 3, n = 2000,
10 sets x 20 inits, float64). Each job is its own process (spawned), sets its thread count, warms
up, waits for the others at a barrier and times ``--steps`` steps; rounds interleave the settings and
report medians of the per-step time. Threads are the point here, so ``--threads`` is unused.

    python bench/bench_threads.py [--repeats 3] [--steps 20] [--workloads rsc-64 rsc-1024 recovery]

A ratio > 1 in the last columns means all-cores threads are slower than 1 thread.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time

from timing import bench_args, fig1_workload

WORKLOADS = ["rsc-64", "rsc-1024", "recovery"]  # rsc-<width>


def _rsc_step(width: int, n: int):
    import torch

    from curvlab.rsc.gbar import fused_grads

    x, y, model = fig1_workload(n, width)
    opt = torch.optim.SGD(model.params(), lr=1.0)

    def step() -> None:
        fused = fused_grads(model, x, y)
        for p, g in zip(model.params(), fused.grad):
            p.grad = g
        opt.step()

    return step


def _recovery_step():
    from curvlab.recovery import gd
    from curvlab.recovery.init import local_init
    from curvlab.recovery.teacher import sample_teacher

    import torch

    data = sample_teacher("fcn", 10, 2000, 25, 3, seed=0)  # (kind, sets, n, d, K)
    W0 = local_init(data.W_star, 20, 0.1, torch.Generator().manual_seed(1))
    opt = gd.BatchedGD(data, W0, gd.step_sizes(data), max_iter=10**9, tol=0.0, record_history=False)
    return opt.step


def _job(workload: str, threads: int, steps: int, n: int, barrier, results) -> None:
    import torch

    torch.set_num_threads(threads)
    step = _recovery_step() if workload == "recovery" else _rsc_step(int(workload.split("-")[1]), n)
    for _ in range(3):
        step()
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    results.put((time.perf_counter() - t0) / steps)


def step_seconds(workload: str, threads: int, jobs: int, steps: int, n: int) -> float:
    """Median per-step seconds over ``jobs`` concurrent processes of ``threads`` torch threads each."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(jobs), ctx.Queue()
    procs = [ctx.Process(target=_job, args=(workload, threads, steps, n, barrier, results)) for _ in range(jobs)]
    for p in procs:
        p.start()
    out = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return statistics.median(out)


def main() -> None:
    args = bench_args(__doc__, repeats=3, threads=None, steps=20, workloads=WORKLOADS)
    cores = os.cpu_count() or 1
    settings = [(t, j) for j in (1, cores) for t in (1, cores)]
    print(f"{cores} cores; per-step ms, medians of {args.repeats} interleaved rounds")
    print(f"{'workload':<12} " + " ".join(f"{f'{j} job(s) x {t}t':>14}" for t, j in settings)
          + f" {'lone: all/1':>12} {'shared: all/1':>14}")
    for workload in args.workloads:
        times: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
        for _ in range(args.repeats):
            for t, j in settings:
                times[(t, j)].append(step_seconds(workload, t, j, args.steps, args.n))
        med = {s: statistics.median(v) for s, v in times.items()}
        lone, shared = med[(cores, 1)] / med[(1, 1)], med[(cores, cores)] / med[(1, cores)]
        print(f"{workload:<12} " + " ".join(f"{med[s] * 1e3:>14.2f}" for s in settings)
              + f" {lone:>12.2f} {shared:>14.2f}")


if __name__ == "__main__":
    main()
