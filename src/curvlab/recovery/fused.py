"""Fused C++ kernels for the batched GD step (optional, with an eager fallback).

Plain C++ (no torch headers: a ~6 s build instead of ~40 s), compiled on first use by g++ into
:func:`cache_dir`, keyed by source, flags, compiler and CPU (the build uses ``-march=native``), and
called through ctypes on tensors' data pointers, the shapes checked in Python (:class:`Kernels`).
If the build fails, or ``CURVLAB_NO_FUSED=1`` is set, :mod:`curvlab.recovery.gd` runs eager ATen ops;
all paths give the same numbers to round-off (tests/test_recovery_fused.py, tests/test_recovery_gd.py). CPU float64 only. The
ctypes calls release the GIL, so the step's worker threads run them in parallel.

``fcn_grad(Wt, Xp, cc, skip, G, K, n, eps, mode)``: the whole FCN gradient in one pass (AVX-512 or
AVX2 + FMA builds, K <= 8). The tile code is written once on 8-lane vectors (the width of one X
panel): one zmm register on AVX-512, two ymm on AVX2. Per set, over tiles of 8 P samples (P = min(8,
A // K), A = 24 accumulators of 32 zmm registers, 6 of 16 ymm pairs), for every slot l of the set:

    z_k = w_lk^T x_i                        (FMA micro-GEMM into K x P vector accumulators)
    s_k = 1 / (1 + exp(-z_k)),  Hs = sum_k s_k
    r = 1 / (cc_i - n Hs) if K eps <= Hs <= K (1 - eps) else 0,   D_k = r (s_k - s_k^2)
    g_lk += sum_i D_k x_i                   (per-lane partial sums, reduced once per slot)

so the (K, n) intermediate of the GEMM -> elementwise -> GEMM formulation never leaves the registers,
and each tile of X comes from memory once per set, prefetched while the slots work on the tile before,
and from L1 for every slot (the set's partial sums, La K d vectors, stay in L2): the cost per sample
does not grow once X outgrows the L2 cache. Each X vector is loaded once into a register for its K
FMAs (left to itself the compiler folds one load into each, which makes the micro-GEMMs load-bound).
Layouts: Wt (b, La K, d); Xp (b, n8 / 8, d, 8), X in panels of 8 samples, zero-padded to n8 (a
zero row adds exactly 0 for finite W); cc (b, n8) = (1 - y) K n, 0 in the padding; skip (b, La)
bool: slots whose gradient is not used (frozen), their G rows are set to 0; G (b, La K, d) out.
mode 1 leaves out the elementwise part (D = z: the two GEMMs alone, for the benchmark).
exp is Cody-Waite reduction (two-part ln 2, FMA), a degree-11 polynomial on |r| <= ln2 / 2 (the
Chebyshev fit, relative error < 2e-17 with its coefficients in double, as A(r) + r^6 B(r): two
independent Horner chains of 5 FMAs) and 2^k by ``vscalefpd`` (AVX-512) or as 2^(k/2) 2^(k - k/2)
from exponent bits (AVX2); exp(-z) takes the negation into the reduction's and the polynomial's FMA
signs. 1 / a is ``vdivpd`` (AVX2, and AVX-512 on AMD: ``-DCURVLAB_VDIV``, the divider runs beside the
FMA pipes) or ``vrcp14pd`` with two Newton steps (AVX-512 elsewhere). Both are within about 1 ulp
(ATen's Sleef exp: 1 ulp), so the gradient agrees with the eager path to ~1e-15 relative.
``tiled_max_k()`` is 8 where this kernel is compiled, else 0.

``fcn_step(Wt, Xp, cc, skip, eta, bound, gn, stepped, K, n, eps, tol, apply)``: the GD step of
:class:`curvlab.recovery.gd.BatchedGD` in the same pass: each slot's gradient stays in a K d buffer,
then ``gd._update``'s rule runs on it, gn = ||g||_F (NaN when ||w||_F > bound or either is not
finite), stepped = apply and gn finite and gn > tol, and then w -= eta_b g in place on Wt; skipped
slots get gn = 0, stepped = false. eta (b,), bound / gn (b, La) float64, stepped (b, La) bool.
No G leaves the kernel, and the step makes none of the eager update's passes over (b, La K, d).

``fused_delta(Z, cc, K, n, eps)``: the elementwise part alone, in place on Z (b, La, K, nc) between
two BLAS GEMMs (CNN, K > 8, CPUs without AVX-512 or AVX2); one pass per row, compiler-vectorized exp
(``-ffast-math``: glibc's libmvec):

    s = sigmoid(Z),  Hs = sum_k s_k,  r as above,  Z <- r s (1 - s),   cc (b, 1, 1, nc) = (1 - y) K n.

``exp_loop(x, out, reps, impl)``: out = exp(x), ``reps`` times, with the kernel's exp (impl 0) or the
compiler's (1); ``fma_peak(reps)``: ``reps`` rounds of 12 independent 8-lane FMAs in registers (192
FLOP each), the core's FMA peak, which BLAS need not reach (MKL on AMD). For the tests and the
benchmark's floor.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

static void fused_delta(double* z, const double* c, int64_t B, int64_t La, int64_t K, int64_t nc, double n, double eps) {
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

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define CURVLAB_TILED 1
namespace {

constexpr int kMaxK = 8;

// 8 double lanes, the width of one X panel: one zmm register (AVX-512) or two ymm (AVX2). The tile
// code below is written once in these operations; each ISA defines them.
#if defined(__AVX512F__)
using vec = __m512d;
constexpr int kAcc = 24;  // z accumulators per tile (of 32 registers)
__attribute__((always_inline)) inline vec vzero() { return _mm512_setzero_pd(); }
__attribute__((always_inline)) inline vec vset(double a) { return _mm512_set1_pd(a); }
__attribute__((always_inline)) inline vec vload(const double* p) { return _mm512_loadu_pd(p); }
__attribute__((always_inline)) inline void vstore(double* p, vec a) { _mm512_storeu_pd(p, a); }
// a load kept in a register: the compiler would otherwise fold it into each FMA that reads it (K
// loads per X vector instead of one, which makes the micro-GEMMs load-bound)
__attribute__((always_inline)) inline vec vload_reg(const double* p) {
  vec a = _mm512_loadu_pd(p);
  asm("" : "+v"(a));
  return a;
}
__attribute__((always_inline)) inline vec vadd(vec a, vec b) { return _mm512_add_pd(a, b); }
__attribute__((always_inline)) inline vec vmul(vec a, vec b) { return _mm512_mul_pd(a, b); }
__attribute__((always_inline)) inline vec vmin(vec a, vec b) { return _mm512_min_pd(a, b); }
__attribute__((always_inline)) inline vec vmax(vec a, vec b) { return _mm512_max_pd(a, b); }
__attribute__((always_inline)) inline vec vrint(vec a) {
  return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
__attribute__((always_inline)) inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_pd(a, b, c); }
__attribute__((always_inline)) inline vec vfnma(vec a, vec b, vec c) { return _mm512_fnmadd_pd(a, b, c); }
__attribute__((always_inline)) inline double vsum(vec a) { return _mm512_reduce_add_pd(a); }
// r where lo <= h <= hi (ordered: false on NaN), else 0
__attribute__((always_inline)) inline vec vkeep(vec r, vec h, vec lo, vec hi) {
  return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(h, lo, _CMP_GE_OQ) & _mm512_cmp_pd_mask(h, hi, _CMP_LE_OQ), r);
}

// 2^k p by vscalefpd (exact, gradual underflow, inf past 709.78)
__attribute__((always_inline)) inline vec exp_scale(vec p, vec k) { return _mm512_scalef_pd(p, k); }

// 1 / a: vdivpd (correctly rounded) with CURVLAB_VDIV (AMD: the divider works beside the FMA pipes),
// else vrcp14pd (rel. error < 2^-14) and two Newton steps (2^-56, then one rounding) on the FMA pipes.
__attribute__((always_inline)) inline vec recip8(vec a) {
  const vec one = _mm512_set1_pd(1.0);
#if defined(CURVLAB_VDIV)
  return _mm512_div_pd(one, a);
#else
  vec y = _mm512_rcp14_pd(a);
  vec e = _mm512_fnmadd_pd(a, y, one);
  y = _mm512_fmadd_pd(y, e, y);
  e = _mm512_fnmadd_pd(a, y, one);
  return _mm512_fmadd_pd(y, e, y);
#endif
}
#else
struct vec {
  __m256d a, b;
};
constexpr int kAcc = 6;  // z accumulators per tile (each two of 16 registers)
__attribute__((always_inline)) inline vec vzero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
__attribute__((always_inline)) inline vec vset(double a) { return {_mm256_set1_pd(a), _mm256_set1_pd(a)}; }
__attribute__((always_inline)) inline vec vload(const double* p) { return {_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)}; }
__attribute__((always_inline)) inline vec vload_reg(const double* p) {
  vec a = vload(p);
  asm("" : "+x"(a.a), "+x"(a.b));
  return a;
}
__attribute__((always_inline)) inline void vstore(double* p, vec x) {
  _mm256_storeu_pd(p, x.a);
  _mm256_storeu_pd(p + 4, x.b);
}
#define CURVLAB_LANES2(name, op)                                                                   \
  __attribute__((always_inline)) inline vec name(vec x, vec y) { return {op(x.a, y.a), op(x.b, y.b)}; }
CURVLAB_LANES2(vadd, _mm256_add_pd)
CURVLAB_LANES2(vmul, _mm256_mul_pd)
CURVLAB_LANES2(vmin, _mm256_min_pd)
CURVLAB_LANES2(vmax, _mm256_max_pd)
#undef CURVLAB_LANES2
__attribute__((always_inline)) inline vec vrint(vec x) {
  constexpr int nearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  return {_mm256_round_pd(x.a, nearest), _mm256_round_pd(x.b, nearest)};
}
__attribute__((always_inline)) inline vec vfma(vec x, vec y, vec z) {
  return {_mm256_fmadd_pd(x.a, y.a, z.a), _mm256_fmadd_pd(x.b, y.b, z.b)};
}
__attribute__((always_inline)) inline vec vfnma(vec x, vec y, vec z) {
  return {_mm256_fnmadd_pd(x.a, y.a, z.a), _mm256_fnmadd_pd(x.b, y.b, z.b)};
}
__attribute__((always_inline)) inline double vsum(vec x) {
  const __m256d s = _mm256_add_pd(x.a, x.b);
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
__attribute__((always_inline)) inline __m256d keep4(__m256d r, __m256d h, __m256d lo, __m256d hi) {
  return _mm256_and_pd(r, _mm256_and_pd(_mm256_cmp_pd(h, lo, _CMP_GE_OQ), _mm256_cmp_pd(h, hi, _CMP_LE_OQ)));
}
__attribute__((always_inline)) inline vec vkeep(vec r, vec h, vec lo, vec hi) {
  return {keep4(r.a, h.a, lo.a, hi.a), keep4(r.b, h.b, lo.b, hi.b)};
}

// 2^j for integer-valued j in [-1022, 1023]: j + 1.5 2^52 holds j in its low mantissa bits.
__attribute__((always_inline)) inline __m256d pow2_4(__m256d j) {
  const __m256i bits = _mm256_castpd_si256(_mm256_add_pd(j, _mm256_set1_pd(6755399441055744.0)));
  return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(bits, _mm256_set1_epi64x(1023)), 52));
}
// 2^k p as 2^k1 2^k2 p with k1 = floor(k / 2), k2 = k - k1 (each a normal power of two built from its
// exponent bits), so the product is exact or rounds once into the subnormal range, and overflows to inf
// past 709.78.
__attribute__((always_inline)) inline __m256d exp_scale4(__m256d p, __m256d k) {
  const __m256d k1 = _mm256_floor_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.5)));
  __m256d q = _mm256_mul_pd(p, pow2_4(k1));
  asm("" : "+x"(q));  // keeps the products apart: -ffast-math would form 2^k1 2^k2 first (inf at k = 1024)
  return _mm256_mul_pd(q, pow2_4(_mm256_sub_pd(k, k1)));
}
__attribute__((always_inline)) inline vec exp_scale(vec p, vec k) { return {exp_scale4(p.a, k.a), exp_scale4(p.b, k.b)}; }

// 1 / a: vdivpd (correctly rounded; AVX2 has no double reciprocal estimate).
__attribute__((always_inline)) inline vec recip8(vec x) {
  const __m256d one = _mm256_set1_pd(1.0);
  return {_mm256_div_pd(one, x.a), _mm256_div_pd(one, x.b)};
}
#endif

// exp(x) (Neg: exp(-x)) for x clamped to [lo, hi] (NaN propagates: min/max return their second
// operand on NaN). x = k ln2 + r with k = rint(x log2 e); x - k ln2_hi is exact (FMA, |r| < 1/2), then
// - k ln2_lo; exp(r) = A(r) + r^6 B(r), the degree-11 Chebyshev fit on |r| <= ln2 / 2 (mpmath.chebyfit),
// two independent Horner chains; times 2^k. With Neg the reduction of -x returns -r and the Horner steps
// flip their FMA signs: bit for bit exp of the negated input, without the negation.
template <bool Neg>
__attribute__((always_inline)) inline vec exp_clamped(vec x, double lo, double hi) {
  x = vmax(vset(lo), vmin(vset(hi), x));
  const vec k = vrint(vmul(x, vset(Neg ? -1.4426950408889634 : 1.4426950408889634)));
  const auto sub = [](vec a, vec b, vec c) { return Neg ? vfma(a, b, c) : vfnma(a, b, c); };  // c -+ a b
  const vec r = sub(k, vset(2.3190468138462996e-17), sub(k, vset(0.6931471805599453), x));  // -r with Neg
  const auto horner = [](vec a, vec r, double c) { return Neg ? vfnma(a, r, vset(c)) : vfma(a, r, vset(c)); };
  const vec r2 = vmul(r, r), r6 = vmul(vmul(r2, r2), r2);
  vec a = vset(0.008333333333319601), b = vset(2.5110037605963777e-08);
  a = horner(a, r, 0.0416666666664881);
  b = horner(b, r, 2.763263963904103e-07);
  a = horner(a, r, 0.1666666666666668);
  b = horner(b, r, 2.755724091857897e-06);
  a = horner(a, r, 0.5000000000000019);
  b = horner(b, r, 2.4801485482328494e-05);
  a = horner(a, r, 1.0);
  b = horner(b, r, 0.00019841269890047113);
  a = horner(a, r, 1.0);
  b = horner(b, r, 0.0013888888952314775);
  return exp_scale(vfma(b, r6, a), k);
}

// exp(x): clamped to [-746, 710], which bounds k
__attribute__((always_inline)) inline vec exp8(vec x) { return exp_clamped<false>(x, -746.0, 710.0); }

// One slot, P panels of 8 samples: z = W_l x (K x P accumulators), D = r s (1 - s), g += D x.
// w: the slot's K rows of Wt (stride d); xt: the tile's first panel (panel stride 8 d); cc: its labels
// term; g: K d per-lane partial sums of the slot's gradient.
template <int K, int P>
inline void tile(const double* __restrict w, const double* __restrict xt, const double* __restrict cc,
                 int64_t d, vec* __restrict g, vec nn, vec lo, vec hi, bool ew) {
  vec z[K][P];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k)
#pragma GCC unroll 8
    for (int v = 0; v < P; ++v) z[k][v] = vzero();
  for (int64_t j = 0; j < d; ++j) {
    vec wk[K];
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) wk[k] = vset(w[k * d + j]);
#pragma GCC unroll 8
    for (int v = 0; v < P; ++v) {
      const vec x = vload_reg(xt + (v * d + j) * 8);
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) z[k][v] = vfma(wk[k], x, z[k][v]);
    }
  }
  if (ew) {
    // exp(-z) <= e^700 keeps 1 + e finite and normal (vrcp14pd's range); s there (< 1e-304) is 0 to the sums
    const vec one = vset(1.0), zero = vzero();
#pragma GCC unroll 8
    for (int v = 0; v < P; ++v) {
      vec hs = zero;
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) {
        const vec e = exp_clamped<true>(z[k][v], -700.0, 746.0);
        const vec s = recip8(vadd(one, e));
        hs = vadd(hs, s);
        z[k][v] = vfnma(s, s, s);
      }
      const vec r = vkeep(recip8(vfnma(nn, hs, vload(cc + v * 8))), hs, lo, hi);
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) z[k][v] = vmul(r, z[k][v]);
    }
  }
  for (int64_t j = 0; j < d; ++j) {
    vec t[K];
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) t[k] = g[k * d + j];
#pragma GCC unroll 8
    for (int v = 0; v < P; ++v) {
      const vec x = vload_reg(xt + (v * d + j) * 8);
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) t[k] = vfma(z[k][v], x, t[k]);
    }
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) g[k * d + j] = t[k];
  }
}

template <int K, int R>
inline void tail(int64_t rem, const double* w, const double* xt, const double* cc, int64_t d, vec* g,
                 vec nn, vec lo, vec hi, bool ew) {
  if constexpr (R > 0) {
    if (rem == R)
      tile<K, R>(w, xt, cc, d, g, nn, lo, hi, ew);
    else
      tail<K, R - 1>(rem, w, xt, cc, d, g, nn, lo, hi, ew);
  }
}

// Whether x is finite, read off its exponent bits (-ffast-math folds std::isfinite to true).
inline bool finite(double x) {
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return ((u >> 52) & 0x7ff) != 0x7ff;
}

// The masked GD update of one slot (gd._update): gn = ||g||, NaN if ||w|| > bound or not finite;
// w -= eta g where stepped = apply and gn finite and gn > tol. Returns stepped.
inline bool update(double* w, const double* g, int64_t len, double eta, double bound, double tol, bool apply,
                   double* gn) {
  double gs = 0.0, ws = 0.0;
  for (int64_t q = 0; q < len; ++q) {
    gs += g[q] * g[q];
    ws += w[q] * w[q];
  }
  const double v = std::sqrt(gs);
  const bool out = !finite(ws) || ws > bound * bound;
  *gn = out || !finite(v) ? std::numeric_limits<double>::quiet_NaN() : v;
  const bool stepped = apply && !out && finite(v) && v > tol;
  if (stepped)
    for (int64_t q = 0; q < len; ++q) w[q] += -eta * g[q];
  return stepped;
}

// The update arguments of fcn_step, per set b and slot l: eta (b,), bound / gn / stepped (b, La).
struct Step {
  const double* eta;
  const double* bound;
  double* gn;
  bool* stepped;
  double tol;
  bool apply;
};

// Gradient of every non-skipped slot; into G (skipped: 0), or, with st, the GD update of W in place.
template <int K>
void fcn_grad_k(double* W, const double* X, const double* C, const bool* skip, double* G, const Step* st,
                int64_t B, int64_t La, int64_t d, int64_t nv, double n, double eps, bool ew) {
  constexpr int P = kAcc / K >= 8 ? 8 : (kAcc / K < 1 ? 1 : kAcc / K);
  const int64_t Kd = K * d;
  std::vector<vec> g(La * Kd);  // per-slot partial sums of the current set
  std::vector<double> gl(Kd);
  const vec nn = vset(n), lo = vset(K * eps), hi = vset(K * (1.0 - eps));
  for (int64_t b = 0; b < B; ++b) {
    const double* xb = X + b * nv * d * 8;
    const double* cb = C + b * nv * 8;
    double* Wb = W + b * La * Kd;
    const bool* sk = skip + b * La;
    for (auto& q : g) q = vzero();
    // tiles outer, slots inner: each tile of X is read from L1 by every slot of the set, while the
    // slots prefetch the next tile (P d lines of 64 bytes; past a set's end, the next set's first)
    const int64_t per = (P * d + La - 1) / La;
    int64_t p = 0;
    for (; p + P <= nv; p += P) {
      const char* next = reinterpret_cast<const char*>(xb + (p + P) * d * 8);
      const int64_t lines = std::min<int64_t>(P * d, ((B - b) * nv - p - P) * d);  // none past X's end
      for (int64_t l = 0; l < La; ++l) {
        for (int64_t q = l * per; q < (l + 1) * per && q < lines; ++q) _mm_prefetch(next + q * 64, _MM_HINT_T0);
        if (!sk[l]) tile<K, P>(Wb + l * Kd, xb + p * d * 8, cb + p * 8, d, g.data() + l * Kd, nn, lo, hi, ew);
      }
    }
    for (int64_t l = 0; l < La; ++l)
      if (!sk[l]) tail<K, P - 1>(nv - p, Wb + l * Kd, xb + p * d * 8, cb + p * 8, d, g.data() + l * Kd, nn, lo, hi, ew);
    for (int64_t l = 0; l < La; ++l) {
      const int64_t s = b * La + l;
      double* Gl = st ? gl.data() : G + s * Kd;
      if (sk[l]) {
        if (st) {
          st->gn[s] = 0.0;
          st->stepped[s] = false;
        } else {
          for (int64_t q = 0; q < Kd; ++q) Gl[q] = 0.0;
        }
        continue;
      }
      for (int64_t q = 0; q < Kd; ++q) Gl[q] = vsum(g[l * Kd + q]);
      if (st) st->stepped[s] = update(Wb + l * Kd, Gl, Kd, st->eta[b], st->bound[s], st->tol, st->apply, st->gn + s);
    }
  }
}

}  // namespace
#endif

extern "C" {

int64_t curvlab_tiled_max_k() {
#if defined(CURVLAB_TILED)
  return kMaxK;
#else
  return 0;
#endif
}

void curvlab_fused_delta(double* z, const double* cc, int64_t B, int64_t La, int64_t K, int64_t nc, double n,
                         double eps) {
  fused_delta(z, cc, B, La, K, nc, n, eps);
}

// G != nullptr: the gradient (mode 1: the two GEMMs alone); else the GD step (fcn_step in Python).
void curvlab_fcn(double* W, const double* X, const double* C, const bool* skip, double* G, const double* eta,
                 const double* bound, double* gn, bool* stepped, int64_t B, int64_t La, int64_t K, int64_t d,
                 int64_t nv, double n, double eps, double tol, int64_t apply, int64_t mode) {
#if defined(CURVLAB_TILED)
  const Step st{eta, bound, gn, stepped, tol, apply != 0};
  const Step* sp = G ? nullptr : &st;
  const bool ew = mode != 1;
  switch (K) {
    case 1: fcn_grad_k<1>(W, X, C, skip, G, sp, B, La, d, nv, n, eps, ew); break;
    case 2: fcn_grad_k<2>(W, X, C, skip, G, sp, B, La, d, nv, n, eps, ew); break;
    case 3: fcn_grad_k<3>(W, X, C, skip, G, sp, B, La, d, nv, n, eps, ew); break;
    case 4: fcn_grad_k<4>(W, X, C, skip, G, sp, B, La, d, nv, n, eps, ew); break;
    case 5: fcn_grad_k<5>(W, X, C, skip, G, sp, B, La, d, nv, n, eps, ew); break;
    case 6: fcn_grad_k<6>(W, X, C, skip, G, sp, B, La, d, nv, n, eps, ew); break;
    case 7: fcn_grad_k<7>(W, X, C, skip, G, sp, B, La, d, nv, n, eps, ew); break;
    case 8: fcn_grad_k<8>(W, X, C, skip, G, sp, B, La, d, nv, n, eps, ew); break;
  }
#endif
}

// reps x 12 independent chains of 8-lane FMAs in registers (192 FLOP each step); returns a sum so that
// the work is kept. The FMA peak of one core, for the benchmark's floor (BLAS may not reach it).
double curvlab_fma_peak(int64_t reps) {
#if defined(CURVLAB_TILED)
  vec acc[12];
  const vec a = vset(0.999999), b = vset(1e-9);
  for (int q = 0; q < 12; ++q) acc[q] = vset(q);
  for (int64_t r = 0; r < reps; ++r) {
#pragma GCC unroll 12
    for (int q = 0; q < 12; ++q) acc[q] = vfma(acc[q], a, b);
  }
  vec s = vzero();
  for (int q = 0; q < 12; ++q) s = vadd(s, acc[q]);
  return vsum(s);
#else
  (void)reps;
  return 0.0;
#endif
}

void curvlab_exp_loop(const double* a, double* o, int64_t N, int64_t reps, int64_t impl) {
  for (int64_t rep = 0; rep < reps; ++rep) {
#if defined(CURVLAB_TILED)
    if (impl == 0) {
      int64_t i = 0;
      for (; i + 8 <= N; i += 8) vstore(o + i, exp8(vload(a + i)));
      if (i < N) {
        double buf[8] = {0.0};
        std::memcpy(buf, a + i, (N - i) * sizeof(double));
        vstore(buf, exp8(vload(buf)));
        std::memcpy(o + i, buf, (N - i) * sizeof(double));
      }
      continue;
    }
#endif
#pragma omp simd
    for (int64_t i = 0; i < N; ++i) o[i] = std::exp(a[i]);
  }
}

}  // extern "C"
"""

_FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-mprefer-vector-width=512", "-std=c++17", "-fPIC")
_P, _I, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
_SIGNATURES = {
    "curvlab_tiled_max_k": ([], _I),
    "curvlab_fused_delta": ([_P, _P, _I, _I, _I, _I, _D, _D], None),
    "curvlab_fcn": ([_P] * 9 + [_I] * 5 + [_D] * 3 + [_I] * 2, None),
    "curvlab_exp_loop": ([_P, _P, _I, _I, _I], None),
    "curvlab_fma_peak": ([_I], _D),
}
_lock = threading.Lock()
_state: dict[str, object] = {}


def _cpuinfo() -> dict[str, str]:
    """The first core's vendor, model name and instruction-set flags from /proc/cpuinfo ({} elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [line.partition(":") for line in fh if line.startswith(("vendor_id", "model name", "flags"))]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in reversed(lines)}


def _cpu_tag() -> str:
    """A short hash of this CPU's model and instruction-set flags: the build uses -march=native,
    so a cache shared across machines (a cluster home) must not serve it elsewhere."""
    info = _cpuinfo()
    text = info.get("model name", "") + info.get("flags", "") if info else platform.processor()
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _flags() -> tuple[str, ...]:
    """Compiler flags: :data:`_FLAGS`, and on AMD CPUs ``-DCURVLAB_VDIV``, 1 / a by vdivpd (on Zen 5,
    7% less time per gradient than vrcp14pd with Newton steps, the two builds timed interleaved)."""
    return _FLAGS + (("-DCURVLAB_VDIV",) if _cpuinfo().get("vendor_id") == "AuthenticAMD" else ())


def cache_dir() -> Path:
    """Where the built library is kept: ``CURVLAB_CACHE``, else ``$XDG_CACHE_HOME/curvlab``."""
    env = os.environ.get("CURVLAB_CACHE")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "curvlab"


def _build() -> Path:
    """Compile :data:`_SOURCE` once per source, flags, compiler and CPU; returns the shared library.
    Concurrent builders (a sweep's first jobs) each compile into their own folder and rename into
    place, so a reader never sees a half-written file. The link step runs without -ffast-math: with it
    g++ links crtfastmath.o, which on load would switch the whole process to flush subnormals to zero."""
    cxx = os.environ.get("CXX", "g++")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    flags = _flags()
    key = hashlib.sha1("\0".join([_SOURCE, *flags, version, _cpu_tag()]).encode()).hexdigest()[:16]
    lib = cache_dir() / f"recovery_fused_{key}.so"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
            src, obj, so = (Path(tmp) / name for name in ("fused.cpp", "fused.o", "fused.so"))
            src.write_text(_SOURCE)
            for cmd in ([cxx, *flags, "-c", str(src), "-o", str(obj)], [cxx, "-shared", str(obj), "-o", str(so)]):
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"{cxx} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
            os.replace(so, lib)
    return lib


def _f64(name: str, t: Tensor, shape: tuple[int, ...]) -> int:
    if not (t.is_contiguous() and t.dtype == torch.float64 and t.device.type == "cpu" and tuple(t.shape) == shape):
        raise ValueError(f"{name}: contiguous CPU float64 {shape} expected, got {t.dtype} {tuple(t.shape)} on {t.device}")
    return t.data_ptr()


def _bool(name: str, t: Tensor, numel: int) -> int:
    if not (t.is_contiguous() and t.dtype == torch.bool and t.device.type == "cpu" and t.numel() == numel):
        raise ValueError(f"{name}: contiguous CPU bool with {numel} elements expected, got {t.dtype} {tuple(t.shape)}")
    return t.data_ptr()


class Kernels:
    """The built library's entry points on tensors (shapes checked here; the calls release the GIL)."""

    def __init__(self, lib: ctypes.CDLL):
        for name, (args, res) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        self._lib = lib

    def tiled_max_k(self) -> int:
        return int(self._lib.curvlab_tiled_max_k())

    def fused_delta(self, Z: Tensor, cc: Tensor, K: int, n: float, eps: float) -> None:
        b, La, k, nc = Z.shape
        if k != K:
            raise ValueError(f"fused_delta: Z.size(2) = {k} != K = {K}")
        self._lib.curvlab_fused_delta(_f64("Z", Z, (b, La, K, nc)), _f64("cc", cc.view(b, nc), (b, nc)),
                                      b, La, K, nc, n, eps)

    def _fcn(self, Wt: Tensor, Xp: Tensor, cc: Tensor, skip: Tensor, K: int) -> tuple[int, ...]:
        if not 1 <= K <= self.tiled_max_k():
            raise ValueError(f"fcn kernel: K = {K} not compiled here (max {self.tiled_max_k()})")
        b, LaK, d = Wt.shape
        if LaK % K:
            raise ValueError(f"fcn kernel: Wt (b, La K, d) with K = {K}, got {tuple(Wt.shape)}")
        La, nv = LaK // K, Xp.shape[1]
        _f64("Wt", Wt, (b, LaK, d)), _f64("Xp", Xp, (b, nv, d, 8)), _f64("cc", cc, (b, nv * 8))
        _bool("skip", skip, b * La)
        return b, La, d, nv

    def fcn_grad(self, Wt: Tensor, Xp: Tensor, cc: Tensor, skip: Tensor, G: Tensor, K: int, n: float, eps: float,
                 mode: int) -> None:
        b, La, d, nv = self._fcn(Wt, Xp, cc, skip, K)
        g = _f64("G", G, tuple(Wt.shape))
        self._lib.curvlab_fcn(Wt.data_ptr(), Xp.data_ptr(), cc.data_ptr(), skip.data_ptr(), g, None, None, None,
                              None, b, La, K, d, nv, n, eps, 0.0, 0, mode)

    def fcn_step(self, Wt: Tensor, Xp: Tensor, cc: Tensor, skip: Tensor, eta: Tensor, bound: Tensor, gn: Tensor,
                 stepped: Tensor, K: int, n: float, eps: float, tol: float, apply: bool) -> None:
        b, La, d, nv = self._fcn(Wt, Xp, cc, skip, K)
        self._lib.curvlab_fcn(Wt.data_ptr(), Xp.data_ptr(), cc.data_ptr(), skip.data_ptr(), None,
                              _f64("eta", eta, (b,)), _f64("bound", bound, (b, La)), _f64("gn", gn, (b, La)),
                              _bool("stepped", stepped, b * La), b, La, K, d, nv, n, eps, tol, int(apply), 0)

    def fma_peak(self, reps: int) -> float:
        return float(self._lib.curvlab_fma_peak(reps))

    def exp_loop(self, x: Tensor, out: Tensor, reps: int, impl: int) -> None:
        self._lib.curvlab_exp_loop(_f64("x", x, (x.numel(),)), _f64("out", out, (x.numel(),)), x.numel(), reps, impl)


def kernel() -> Kernels | None:
    """The compiled kernels (``fcn_step``, ``fcn_grad``, ``fused_delta``, ...) or None when disabled or
    unavailable."""
    if os.environ.get("CURVLAB_NO_FUSED") == "1":
        return None
    if "mod" in _state:
        return _state["mod"]
    with _lock:
        if "mod" not in _state:
            try:
                _state["mod"] = Kernels(ctypes.CDLL(str(_build())))
            except Exception as exc:  # no compiler, ...: the eager path is used
                log.warning("fused recovery kernel unavailable (%s: %s); using eager ops",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                _state["mod"] = None
    return _state["mod"]


def tiled_max_k() -> int:
    """Largest K that ``fcn_grad`` serves here (0: not compiled, neither AVX-512 nor AVX2, or no kernel)."""
    mod = kernel()
    return mod.tiled_max_k() if mod is not None else 0
