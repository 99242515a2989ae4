"""A fused C++ kernel for the elementwise part of the batched GD step (optional, with eager fallback).

Between the two GEMMs of a GD step (:mod:`curvlab.recovery.gd`) the eager path runs ~8 ATen ops
over the (b, La, K, nc) buffer; this kernel does the same in one pass per row with a vectorized
exp (``-O3 -march=native -ffast-math -mprefer-vector-width=512``: gcc + glibc's libmvec), 2-3x
faster on that part. It is built on first use with ``torch.utils.cpp_extension.load_inline`` (g++,
offline; ~1 min once, then cached under ``~/.cache/torch_extensions``). If the build fails, or
``CURVLAB_NO_FUSED=1`` is set, the eager ops are used; both give the same numbers to round-off
(tests/test_recovery_gd.py). It serves CPU float64 tensors only (:mod:`curvlab.recovery.gd`).

Contract (``fused_delta(Z, cc, K, n, eps)``), in place on Z (b, La, K, nc) float64 contiguous:
    s = sigmoid(Z),  Hs = sum_k s_k,  r = 1 / (cc - n Hs) if K eps <= Hs <= K (1 - eps) else 0,
    Z <- r s (1 - s),   cc (b, 1, 1, nc) = (1 - y) K n.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <torch/extension.h>
#include <cmath>
#include <vector>

void fused_delta(torch::Tensor Z, torch::Tensor cc, int64_t K, double n, double eps) {
  TORCH_CHECK(Z.dim() == 4 && Z.is_contiguous() && Z.scalar_type() == torch::kFloat64, "Z: contiguous float64 (b, La, K, nc)");
  TORCH_CHECK(cc.is_contiguous() && cc.scalar_type() == torch::kFloat64 && cc.numel() == Z.size(0) * Z.size(3), "cc: (b, 1, 1, nc)");
  TORCH_CHECK(Z.size(2) == K, "Z.size(2) != K");
  const int64_t B = Z.size(0), La = Z.size(1), nc = Z.size(3);
  double* z = Z.data_ptr<double>();
  const double* c = cc.data_ptr<double>();
  const double lo = K * eps, hi = K * (1.0 - eps);
  std::vector<double> hs(nc);
  for (int64_t b = 0; b < B; ++b) {
    const double* cb = c + b * nc;
    for (int64_t l = 0; l < La; ++l) {
      double* zl = z + (b * La + l) * K * nc;
      double* h = hs.data();
      for (int64_t i = 0; i < nc; ++i) h[i] = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        double* zk = zl + k * nc;
#pragma omp simd
        for (int64_t i = 0; i < nc; ++i) {
          const double s = 1.0 / (1.0 + std::exp(-zk[i]));
          zk[i] = s;
          h[i] += s;
        }
      }
#pragma omp simd
      for (int64_t i = 0; i < nc; ++i) {
        const double v = h[i];
        const double r = 1.0 / (cb[i] - n * v);
        h[i] = (v >= lo && v <= hi) ? r : 0.0;
      }
      for (int64_t k = 0; k < K; ++k) {
        double* zk = zl + k * nc;
#pragma omp simd
        for (int64_t i = 0; i < nc; ++i) {
          const double s = zk[i];
          zk[i] = h[i] * (s - s * s);
        }
      }
    }
  }
}
"""

_lock = threading.Lock()
_state: dict[str, object] = {}


def _cpu_tag() -> str:
    """A short hash of this CPU's model and instruction-set flags: the build uses -march=native,
    so a torch_extensions cache shared across machines (a cluster home) must not serve it elsewhere."""
    try:
        with open("/proc/cpuinfo") as fh:
            info = [line for line in fh if line.startswith(("model name", "flags"))][:2]
    except OSError:
        info = [platform.processor()]
    return hashlib.sha1("".join(info).encode()).hexdigest()[:10]


def kernel():
    """The compiled module (with ``fused_delta``) or None when disabled or unavailable."""
    if os.environ.get("CURVLAB_NO_FUSED") == "1":
        return None
    if "mod" in _state:
        return _state["mod"]
    with _lock:
        if "mod" not in _state:
            try:
                from torch.utils.cpp_extension import load_inline

                _state["mod"] = load_inline(
                    f"curvlab_recovery_fused_v2_{_cpu_tag()}", cpp_sources=_SOURCE, functions=["fused_delta"],
                    extra_cflags=["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-mprefer-vector-width=512"],
                    verbose=False,
                )
            except Exception as exc:  # no compiler, no headers, ...: the eager path is used
                log.warning("fused recovery kernel unavailable (%s: %s); using eager ops",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                _state["mod"] = None
    return _state["mod"]
