"""Empirical NTK of the conv net (``model=convnet``) at n inputs: time and peak memory of curvlab's
Gram (``ntk_gram``: one pass when the Jacobian fits its memory budget, and forced to chunks of 64
rows) and matrix-free statistics (``ntk_stats_matrix_free``: lambda_max,
lambda_min and 1^T K 1 by Lanczos on J(J^T v)) against the PyTorch NTK tutorial's recipe (the whole
per-sample Jacobian by ``vmap(jacrev)``, then J J^T). Times are medians of interleaved rounds; the
peak memory of each method is the growth of the resident set of a forked process that runs it once.

Usage: python bench/bench_ntk.py [--n 512] [--width 16] [--threads 1]
"""

from __future__ import annotations

import multiprocessing as mp
import resource

import torch
from torch.func import jacrev, vmap

from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.ntk import ntk_gram, ntk_stats_matrix_free
from curvlab.rsc.nets import ConvNet
from timing import bench_args, fig1_workload, median_seconds


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _peak(fn, queue) -> None:
    start = _rss_mb()
    fn()
    queue.put(_rss_mb() - start)


def peak_mb(fn) -> float:
    """Resident-set growth of a forked child that runs ``fn`` once."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_peak, args=(fn, q))
    p.start()
    p.join()
    return q.get()


def main() -> None:
    args = bench_args(__doc__, repeats=3, width=16)
    x, _, _ = fig1_workload(args.n)
    net = ConvNet(784, args.width, 1)
    fm = FunctionalModel.of(net)
    theta = fm.theta()

    def jacobian_gram() -> torch.Tensor:
        J = vmap(jacrev(lambda th, xi: fm(th, xi[None])[0, 0]), in_dims=(None, 0))(theta, x)  # (n, p)
        return J.double() @ J.double().T

    methods = {
        "jacrev+vmap": jacobian_gram,
        "gram": lambda: ntk_gram(fm, theta, x),
        "gram 64 rows": lambda: ntk_gram(fm, theta, x, chunk=64),
        "matrix-free": lambda: ntk_stats_matrix_free(fm, theta, x, tol=1e-3, ncv=12, maxiter=300),
    }
    t = median_seconds(methods, args.repeats)
    mem = {name: peak_mb(fn) for name, fn in methods.items()}
    K = jacobian_gram()
    ev = torch.linalg.eigvalsh(K)
    mf = methods["matrix-free"]()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, conv net width {args.width}, "
          f"p = {theta.numel()}, n = {args.n}, fp32 rows, fp64 Gram")
    print(f"{'method':>13} {'seconds':>9} {'vs jacrev':>10} {'peak MB':>9}")
    for name in methods:
        print(f"{name:>13} {t[name]:>9.2f} {t['jacrev+vmap'] / t[name]:>9.2f}x {mem[name]:>9.0f}")
    print(f"64-row Gram == jacrev Gram: max rel diff {float((methods['gram 64 rows']() - K).abs().max() / K.abs().max()):.1e}; "
          f"matrix-free lambda_max {mf['lambda_max']:.6g} vs dense {float(ev[-1]):.6g}")


if __name__ == "__main__":
    main()
