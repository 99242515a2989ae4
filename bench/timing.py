"""Timing shared by the benchmarks: medians of interleaved rounds (A, B, A, B, ...)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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
