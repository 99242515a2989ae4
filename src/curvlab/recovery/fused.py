"""Fused C++ kernels for the batched GD step (optional, with an eager fallback).

Built on first use with ``torch.utils.cpp_extension.load_inline`` (g++, offline; ~1 min once, then
cached under ``~/.cache/torch_extensions``, keyed by this CPU since the build uses ``-march=native``).
If the build fails, or ``CURVLAB_NO_FUSED=1`` is set, :mod:`curvlab.recovery.gd` runs eager ATen ops;
all paths give the same numbers to round-off (tests/test_recovery_fused.py, tests/test_recovery_gd.py). CPU float64 only. The
kernels release the GIL, so the step's worker threads run them in parallel.

``fcn_grad(Wt, Xp, cc, skip, G, K, n, eps, mode)``: the whole FCN gradient in one pass (AVX-512
builds, K <= 8). Per set and slot l, over tiles of 8 V samples (V = min(8, 24 // K)):

    z_k = w_lk^T x_i                        (FMA micro-GEMM into K x V zmm accumulators)
    s_k = 1 / (1 + exp(-z_k)),  Hs = sum_k s_k
    r = 1 / (cc_i - n Hs) if K eps <= Hs <= K (1 - eps) else 0,   D_k = r (s_k - s_k^2)
    g_lk += sum_i D_k x_i                   (per-lane partial sums, reduced once per slot)

so the (K, n) intermediate of the GEMM -> elementwise -> GEMM formulation never leaves the registers
and X is read once per slot from L1/L2, at about the cost of the two GEMMs' FMAs plus the exps.
Layouts: Wt (b, La K, d); Xp (b, n8 / 8, d, 8), X in panels of 8 samples, zero-padded to n8 (a
zero row adds exactly 0 for finite W); cc (b, n8) = (1 - y) K n, 0 in the padding; skip (b, La)
bool: slots whose gradient is not used (frozen), their G rows are set to 0; G (b, La K, d) out.
mode 1 leaves out the elementwise part (D = z: the two GEMMs alone, for the benchmark).
exp is Cody-Waite reduction (two-part ln 2, FMA), the degree-13 Taylor polynomial on
|r| <= ln2 / 2 (truncation < 5e-18) and ``vscalefpd``; 1 / a is ``vrcp14pd`` with two Newton steps.
Both are within about 1 ulp (ATen's Sleef exp: 1 ulp), so the gradient agrees with the eager path
to ~1e-15 relative. ``tiled_max_k()`` is 8 where this kernel is compiled, else 0.

``fused_delta(Z, cc, K, n, eps)``: the elementwise part alone, in place on Z (b, La, K, nc) between
two BLAS GEMMs (CNN, K > 8, CPUs without AVX-512); one pass per row, compiler-vectorized exp
(``-ffast-math``: glibc's libmvec):

    s = sigmoid(Z),  Hs = sum_k s_k,  r as above,  Z <- r s (1 - s),   cc (b, 1, 1, nc) = (1 - y) K n.

``exp_loop(x, out, reps, impl)``: out = exp(x), ``reps`` times, with the kernel's exp (impl 0) or the
compiler's (1); for the tests and the benchmark's floor.
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
#include <cstdint>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace py = pybind11;

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

#if defined(__AVX512F__)
namespace {

constexpr int kMaxK = 8;

// exp(x) on 8 lanes. x = k ln2 + r with k = rint(x log2 e); x - k ln2_hi is exact (FMA, |r| < 1/2),
// then - k ln2_lo; exp(r) by the degree-13 Taylor polynomial (|r| <= ln2/2: truncation < 5e-18);
// times 2^k by vscalefpd (exact, gradual underflow, inf past 709.78). Inputs are clamped to
// [-746, 710], which bounds k; NaN propagates (min/max return their second operand on NaN).
__attribute__((always_inline)) inline __m512d exp8(__m512d x) {
  x = _mm512_max_pd(_mm512_set1_pd(-746.0), _mm512_min_pd(_mm512_set1_pd(710.0), x));
  const __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(0.6931471805599453), x);
  r = _mm512_fnmadd_pd(k, _mm512_set1_pd(2.3190468138462996e-17), r);
  __m512d p = _mm512_set1_pd(1.6059043836821613e-10);
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.08767569878681e-09));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.505210838544172e-08));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.755731922398589e-07));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.7557319223985893e-06));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.48015873015873e-05));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.0001984126984126984));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.001388888888888889));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.008333333333333333));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.041666666666666664));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.16666666666666666));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.5));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  return _mm512_scalef_pd(p, k);
}

// 1 / a on 8 lanes: vrcp14pd (rel. error < 2^-14), two Newton steps (2^-56, then one rounding).
__attribute__((always_inline)) inline __m512d recip8(__m512d a) {
  const __m512d one = _mm512_set1_pd(1.0);
  __m512d y = _mm512_rcp14_pd(a);
  __m512d e = _mm512_fnmadd_pd(a, y, one);
  y = _mm512_fmadd_pd(y, e, y);
  e = _mm512_fnmadd_pd(a, y, one);
  return _mm512_fmadd_pd(y, e, y);
}

// One slot, V panels of 8 samples: z = W_l x (K x V accumulators), D = r s (1 - s), g += D x.
// w: the slot's K rows of Wt (stride d); xt: the tile's first panel (panel stride 8 d); cc: its labels
// term; g: K d per-lane partial sums of the slot's gradient.
template <int K, int V>
inline void tile(const double* __restrict w, const double* __restrict xt, const double* __restrict cc,
                 int64_t d, __m512d* __restrict g, __m512d nn, __m512d lo, __m512d hi, bool ew) {
  __m512d z[K][V];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) z[k][v] = _mm512_setzero_pd();
  for (int64_t j = 0; j < d; ++j) {
    __m512d wk[K];
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) wk[k] = _mm512_set1_pd(w[k * d + j]);
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      const __m512d x = _mm512_loadu_pd(xt + (v * d + j) * 8);
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) z[k][v] = _mm512_fmadd_pd(wk[k], x, z[k][v]);
    }
  }
  if (ew) {
    // exp(-z) <= e^700 keeps 1 + e in vrcp14pd's normal range; s there (< 1e-304) is 0 to the sums
    const __m512d one = _mm512_set1_pd(1.0), zero = _mm512_setzero_pd(), cap = _mm512_set1_pd(700.0);
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      __m512d hs = zero;
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) {
        const __m512d e = exp8(_mm512_min_pd(cap, _mm512_sub_pd(zero, z[k][v])));
        const __m512d s = recip8(_mm512_add_pd(one, e));
        hs = _mm512_add_pd(hs, s);
        z[k][v] = _mm512_fnmadd_pd(s, s, s);
      }
      const __mmask8 in = _mm512_cmp_pd_mask(hs, lo, _CMP_GE_OQ) & _mm512_cmp_pd_mask(hs, hi, _CMP_LE_OQ);
      const __m512d r = _mm512_maskz_mov_pd(in, recip8(_mm512_fnmadd_pd(nn, hs, _mm512_loadu_pd(cc + v * 8))));
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) z[k][v] = _mm512_mul_pd(r, z[k][v]);
    }
  }
  for (int64_t j = 0; j < d; ++j) {
    __m512d t[K];
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) t[k] = _mm512_setzero_pd();
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      const __m512d x = _mm512_loadu_pd(xt + (v * d + j) * 8);
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) t[k] = _mm512_fmadd_pd(z[k][v], x, t[k]);
    }
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) g[k * d + j] = _mm512_add_pd(g[k * d + j], t[k]);
  }
}

template <int K, int R>
inline void tail(int64_t rem, const double* w, const double* xt, const double* cc, int64_t d, __m512d* g,
                 __m512d nn, __m512d lo, __m512d hi, bool ew) {
  if constexpr (R > 0) {
    if (rem == R)
      tile<K, R>(w, xt, cc, d, g, nn, lo, hi, ew);
    else
      tail<K, R - 1>(rem, w, xt, cc, d, g, nn, lo, hi, ew);
  }
}

template <int K>
void fcn_grad_k(const double* W, const double* X, const double* C, const bool* skip, double* G, int64_t B,
                int64_t La, int64_t d, int64_t nv, double n, double eps, bool ew) {
  constexpr int V = 24 / K >= 8 ? 8 : (24 / K < 1 ? 1 : 24 / K);
  std::vector<__m512d> g(K * d);
  const __m512d nn = _mm512_set1_pd(n), lo = _mm512_set1_pd(K * eps), hi = _mm512_set1_pd(K * (1.0 - eps));
  for (int64_t b = 0; b < B; ++b) {
    const double* xb = X + b * nv * d * 8;
    const double* cb = C + b * nv * 8;
    for (int64_t l = 0; l < La; ++l) {
      double* Gl = G + (b * La + l) * K * d;
      if (skip[b * La + l]) {
        for (int64_t q = 0; q < K * d; ++q) Gl[q] = 0.0;
        continue;
      }
      for (auto& q : g) q = _mm512_setzero_pd();
      const double* w = W + (b * La + l) * K * d;
      int64_t p = 0;
      for (; p + V <= nv; p += V) tile<K, V>(w, xb + p * d * 8, cb + p * 8, d, g.data(), nn, lo, hi, ew);
      tail<K, V - 1>(nv - p, w, xb + p * d * 8, cb + p * 8, d, g.data(), nn, lo, hi, ew);
      for (int64_t q = 0; q < K * d; ++q) Gl[q] = _mm512_reduce_add_pd(g[q]);
    }
  }
}

}  // namespace
#endif

int64_t tiled_max_k() {
#if defined(__AVX512F__)
  return kMaxK;
#else
  return 0;
#endif
}

void fcn_grad(torch::Tensor Wt, torch::Tensor Xp, torch::Tensor cc, torch::Tensor skip, torch::Tensor G, int64_t K,
              double n, double eps, int64_t mode) {
  TORCH_CHECK(K >= 1 && K <= tiled_max_k(), "fcn_grad: K = ", K, " not compiled here");
  auto f64 = [](const torch::Tensor& t) { return t.is_contiguous() && t.scalar_type() == torch::kFloat64 && t.device().is_cpu(); };
  TORCH_CHECK(f64(Wt) && f64(Xp) && f64(cc) && f64(G), "fcn_grad: contiguous CPU float64 tensors");
  TORCH_CHECK(Wt.dim() == 3 && Wt.size(1) % K == 0 && G.sizes() == Wt.sizes(), "fcn_grad: Wt, G (b, La K, d)");
  const int64_t B = Wt.size(0), La = Wt.size(1) / K, d = Wt.size(2);
  TORCH_CHECK(Xp.dim() == 4 && Xp.size(0) == B && Xp.size(2) == d && Xp.size(3) == 8, "fcn_grad: Xp (b, n8 / 8, d, 8)");
  const int64_t nv = Xp.size(1);
  TORCH_CHECK(cc.numel() == B * nv * 8, "fcn_grad: cc (b, n8)");
  TORCH_CHECK(skip.is_contiguous() && skip.scalar_type() == torch::kBool && skip.numel() == B * La, "fcn_grad: skip (b, La) bool");
#if defined(__AVX512F__)
  const double* W = Wt.data_ptr<double>();
  const double* X = Xp.data_ptr<double>();
  const double* C = cc.data_ptr<double>();
  const bool* S = skip.data_ptr<bool>();
  double* Gp = G.data_ptr<double>();
  const bool ew = mode != 1;
  switch (K) {
    case 1: fcn_grad_k<1>(W, X, C, S, Gp, B, La, d, nv, n, eps, ew); break;
    case 2: fcn_grad_k<2>(W, X, C, S, Gp, B, La, d, nv, n, eps, ew); break;
    case 3: fcn_grad_k<3>(W, X, C, S, Gp, B, La, d, nv, n, eps, ew); break;
    case 4: fcn_grad_k<4>(W, X, C, S, Gp, B, La, d, nv, n, eps, ew); break;
    case 5: fcn_grad_k<5>(W, X, C, S, Gp, B, La, d, nv, n, eps, ew); break;
    case 6: fcn_grad_k<6>(W, X, C, S, Gp, B, La, d, nv, n, eps, ew); break;
    case 7: fcn_grad_k<7>(W, X, C, S, Gp, B, La, d, nv, n, eps, ew); break;
    case 8: fcn_grad_k<8>(W, X, C, S, Gp, B, La, d, nv, n, eps, ew); break;
  }
#endif
}

void exp_loop(torch::Tensor x, torch::Tensor out, int64_t reps, int64_t impl) {
  TORCH_CHECK(x.is_contiguous() && out.is_contiguous() && x.scalar_type() == torch::kFloat64 &&
              out.scalar_type() == torch::kFloat64 && x.numel() == out.numel(), "exp_loop: contiguous float64, same size");
  const double* a = x.data_ptr<double>();
  double* o = out.data_ptr<double>();
  const int64_t N = x.numel();
  for (int64_t rep = 0; rep < reps; ++rep) {
#if defined(__AVX512F__)
    if (impl == 0) {
      int64_t i = 0;
      for (; i + 8 <= N; i += 8) _mm512_storeu_pd(o + i, exp8(_mm512_loadu_pd(a + i)));
      if (i < N) {
        const __mmask8 m = static_cast<__mmask8>((1u << (N - i)) - 1u);
        _mm512_mask_storeu_pd(o + i, m, exp8(_mm512_maskz_loadu_pd(m, a + i)));
      }
      continue;
    }
#endif
#pragma omp simd
    for (int64_t i = 0; i < N; ++i) o[i] = std::exp(a[i]);
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fused_delta", &fused_delta, py::call_guard<py::gil_scoped_release>());
  m.def("fcn_grad", &fcn_grad, py::call_guard<py::gil_scoped_release>());
  m.def("exp_loop", &exp_loop, py::call_guard<py::gil_scoped_release>());
  m.def("tiled_max_k", &tiled_max_k);
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
    """The compiled module (``fcn_grad``, ``fused_delta``, ...) or None when disabled or unavailable."""
    if os.environ.get("CURVLAB_NO_FUSED") == "1":
        return None
    if "mod" in _state:
        return _state["mod"]
    with _lock:
        if "mod" not in _state:
            try:
                from torch.utils.cpp_extension import load_inline

                _state["mod"] = load_inline(
                    f"curvlab_recovery_fused_v3_{_cpu_tag()}", cpp_sources=_SOURCE,
                    extra_cflags=["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-mprefer-vector-width=512"],
                    verbose=False,
                )
            except Exception as exc:  # no compiler, no headers, ...: the eager path is used
                log.warning("fused recovery kernel unavailable (%s: %s); using eager ops",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                _state["mod"] = None
    return _state["mod"]


def tiled_max_k() -> int:
    """Largest K that ``fcn_grad`` serves here (0: not compiled, no AVX-512, or no kernel)."""
    mod = kernel()
    return int(mod.tiled_max_k()) if mod is not None else 0
