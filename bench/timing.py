"""Timing shared by the benchmarks: medians of interleaved rounds (A, B, A, B, ...)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median time of each function, timed in interleaved rounds so that drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_args(doc: str, repeats: int, threads: int | None = 1, **options: Any) -> argparse.Namespace:
    """A benchmark's command line: ``--n`` (512), ``--repeats``, ``--threads`` (1 unless threads are
    the point; None: torch's default) and its own ``options`` ({name: default}, a list default takes
    several values); sets torch's thread count."""
    import torch

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in {"n": 512, **options, "repeats": repeats, "threads": threads}.items():
        kind = {"nargs": "+", "type": type(default[0])} if isinstance(default, list) else {"type": int}
        parser.add_argument(f"--{name.replace('_', '-')}", default=default, **kind)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return args


def fig1_workload(n: int, width: int | None = None, d: int = 784) -> tuple:
    """The RSC Figure 1 workload of the benchmarks, seeded: inputs (n, d) with ||x_i|| = sqrt(d),
    targets (n, 1), and with ``width`` the 3-layer tanh DeepMLP at the paper's init (else None)."""
    import torch

    from curvlab.rsc.init import rsc_init
    from curvlab.rsc.model import DeepMLP

    torch.manual_seed(0)
    x = torch.randn(n, d)
    x = x * (d**0.5 / x.norm(dim=1, keepdim=True))
    y = torch.randn(n, 1)
    model = None
    if width is not None:
        model = DeepMLP(d, width, 3, 1)
        rsc_init(model, 1.0, torch.Generator().manual_seed(0))
    return x, y, model
