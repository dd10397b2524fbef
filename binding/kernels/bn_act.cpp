#include "kernels/bn_act.h"

#include <ATen/Parallel.h>
#include <ATen/SequenceNumber.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

// The element loops below are compiled three times on x86-64 Linux, for x86-64-v4 (AVX-512),
// x86-64-v3 (AVX2 + FMA: 1.7x faster than AVX2 alone) and the baseline, and the loader picks one
// per CPU: a prebuilt binary stays runnable everywhere.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    __GNUC__ >= 12
#define YOLO5_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define YOLO5_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define YOLO5_SIMD_CLONES
#endif

namespace yolo5 {

#if defined(__GNUC__) || defined(__clang__)
#define YOLO5_INLINE inline __attribute__((always_inline))
#else
#define YOLO5_INLINE inline
#endif

// External linkage: multiversioned functions need a global resolver.
namespace bn_kernels {

// Activations come as float32, or under autocast as bfloat16 (its bits): the kernels read and
// write that type and compute in float32, so a bf16 layer needs no fp32 copy of its input, nor
// one of its output, nor their two conversions back in the backward pass.
using bf16_bits = uint16_t;

YOLO5_INLINE float load(float v) { return v; }
YOLO5_INLINE float load(bf16_bits v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
YOLO5_INLINE void store(float& to, float v) { to = v; }
// Round to nearest even, as LibTorch's float → bfloat16 (a NaN stays a quiet NaN).
YOLO5_INLINE void store(bf16_bits& to, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  to = static_cast<bf16_bits>(v != v ? 0x7FC0u : rounded);
}

// e^x within ~1 ulp, written so the compiler vectorises it: round x/ln2 to k, a degree-6
// polynomial for e^r on |r| ≤ ln2/2, and 2^k from the exponent bits. The clamps are written as
// single max/min instructions (a NaN becomes a finite bound: SiLU's own factor y keeps it NaN).
inline float exp_approx(float x) {
  x = x > -87.0f ? x : -87.0f;
  x = x < 88.0f ? x : 88.0f;
  const float k = (x * 1.44269504f + 12582912.f) - 12582912.f;  // nearest integer
  const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-6f;
  float p = 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// 1/d for d in [1, ∞) within 2.4e-7 relative (measured against division over N(0,1)·γ + β): a
// bit-trick first guess and three Newton steps, all multiply-adds. A vector division's time
// depends on its operands on this CPU (AMD Zen 4): SiLU over normally distributed values ran
// 2x slower than over a sine, and 3x slower than this. Past 1e37 the reciprocal is taken of
// 1e37 (SiLU is then within 1e-37 of zero either way); a NaN stays in y.
inline float reciprocal(float d) {
  d = d < 1e37f ? d : 1e37f;
  int32_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  bits = 0x7EF311C7 - bits;
  float r;
  std::memcpy(&r, &bits, sizeof r);
  r = r * (2.f - d * r);
  r = r * (2.f - d * r);
  return r * (2.f - d * r);
}

inline float silu(float y) { return y * reciprocal(1.f + exp_approx(-y)); }

inline float silu_grad(float y) {
  const float s = reciprocal(1.f + exp_approx(-y));
  return s * (1.f + y * (1.f - s));
}

// NHWC: `rows` rows of C channels. NCHW: one plane of n values of one channel.

// Each loop is a template inlined into one multiversioned function per element type (T: float
// or bf16_bits), so that every clone gets its own vectorised loop.
template <typename T>
YOLO5_INLINE void rows_stats_t(const T* x, int64_t rows, int64_t C, double* s, double* q) {
  for (int64_t r = 0; r < rows; ++r, x += C) {
    for (int64_t c = 0; c < C; ++c) {
      const double v = load(x[c]);
      s[c] += v;
      q[c] += v * v;
    }
  }
}

template <typename T>
YOLO5_INLINE void plane_stats_t(const T* x, int64_t n, double* s, double* q) {
  double as[8] = {0, 0, 0, 0, 0, 0, 0, 0}, aq[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) {
      const double v = load(x[i + l]);
      as[l] += v;
      aq[l] += v * v;
    }
  }
  double ts = 0, tq = 0;
  for (int l = 0; l < 8; ++l) ts += as[l], tq += aq[l];
  for (; i < n; ++i) {
    const double v = load(x[i]);
    ts += v, tq += v * v;
  }
  *s += ts;
  *q += tq;
}

template <typename T>
YOLO5_INLINE void rows_apply_t(const T* x, T* z, int64_t rows, int64_t C, const float* a,
                               const float* b, bool act) {
  for (int64_t r = 0; r < rows; ++r, x += C, z += C) {
    if (act) {
      for (int64_t c = 0; c < C; ++c) store(z[c], silu(load(x[c]) * a[c] + b[c]));
    } else {
      for (int64_t c = 0; c < C; ++c) store(z[c], load(x[c]) * a[c] + b[c]);
    }
  }
}

template <typename T>
YOLO5_INLINE void plane_apply_t(const T* x, T* z, int64_t n, float a, float b, bool act) {
  if (act) {
    for (int64_t i = 0; i < n; ++i) store(z[i], silu(load(x[i]) * a + b));
  } else {
    for (int64_t i = 0; i < n; ++i) store(z[i], load(x[i]) * a + b);
  }
}

#define YOLO5_FOR_EACH_TYPE(DEFINE) DEFINE(float) DEFINE(bf16_bits)

#define YOLO5_DEFINE_FORWARD(T)                                                                  \
  YOLO5_SIMD_CLONES void rows_stats(const T* x, int64_t rows, int64_t C, double* s, double* q) { \
    rows_stats_t(x, rows, C, s, q);                                                              \
  }                                                                                              \
  YOLO5_SIMD_CLONES void plane_stats(const T* x, int64_t n, double* s, double* q) {              \
    plane_stats_t(x, n, s, q);                                                                   \
  }                                                                                              \
  YOLO5_SIMD_CLONES void rows_apply(const T* x, T* z, int64_t rows, int64_t C, const float* a,   \
                                    const float* b, bool act) {                                  \
    rows_apply_t(x, z, rows, C, a, b, act);                                                      \
  }                                                                                              \
  YOLO5_SIMD_CLONES void plane_apply(const T* x, T* z, int64_t n, float a, float b, bool act) {  \
    plane_apply_t(x, z, n, a, b, act);                                                           \
  }
YOLO5_FOR_EACH_TYPE(YOLO5_DEFINE_FORWARD)

// The gradient at the BatchNorm output from the one at the activation's: gy = gz·act'(a·x + b).
template <bool Act>
YOLO5_INLINE float grad_at_bn(float gz, float x, float a, float b) {
  if constexpr (Act) {
    return gz * silu_grad(x * a + b);
  } else {
    return gz;
  }
}

// Backward sums: sg += Σ gy, sgx += Σ gy·(x − m). Templates inline into the clones below, so
// each activation and element type gets its own branch-free loop.
template <bool Act, typename T>
YOLO5_INLINE void rows_grad_sums_t(const T* gz, const T* x, int64_t rows, int64_t C, const float* a,
                                   const float* b, const float* m, double* sg, double* sgx) {
  for (int64_t r = 0; r < rows; ++r, x += C, gz += C) {
    for (int64_t c = 0; c < C; ++c) {
      const float xv = load(x[c]);
      const float gy = grad_at_bn<Act>(load(gz[c]), xv, a[c], b[c]);
      sg[c] += gy;
      sgx[c] += static_cast<double>(gy) * (xv - m[c]);
    }
  }
}

template <bool Act, typename T>
YOLO5_INLINE void plane_grad_sums_t(const T* gz, const T* x, int64_t n, float a, float b, float m,
                                    double* sg, double* sgx) {
  double as[8] = {0, 0, 0, 0, 0, 0, 0, 0}, ax[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) {
      const float xv = load(x[i + l]);
      const float gy = grad_at_bn<Act>(load(gz[i + l]), xv, a, b);
      as[l] += gy;
      ax[l] += static_cast<double>(gy) * (xv - m);
    }
  }
  double ts = 0, tx = 0;
  for (int l = 0; l < 8; ++l) ts += as[l], tx += ax[l];
  for (; i < n; ++i) {
    const float xv = load(x[i]);
    const float gy = grad_at_bn<Act>(load(gz[i]), xv, a, b);
    ts += gy;
    tx += static_cast<double>(gy) * (xv - m);
  }
  *sg += ts;
  *sgx += tx;
}

// gx = a·gy + k1·(x − m) + k0.
template <bool Act, typename T>
YOLO5_INLINE void rows_grad_input_t(const T* gz, const T* x, T* gx, int64_t rows, int64_t C,
                                    const float* a, const float* b, const float* m, const float* k1,
                                    const float* k0) {
  for (int64_t r = 0; r < rows; ++r, x += C, gz += C, gx += C) {
    for (int64_t c = 0; c < C; ++c) {
      const float xv = load(x[c]);
      store(gx[c],
            a[c] * grad_at_bn<Act>(load(gz[c]), xv, a[c], b[c]) + k1[c] * (xv - m[c]) + k0[c]);
    }
  }
}

template <bool Act, typename T>
YOLO5_INLINE void plane_grad_input_t(const T* gz, const T* x, T* gx, int64_t n, float a, float b,
                                     float m, float k1, float k0) {
  for (int64_t i = 0; i < n; ++i) {
    const float xv = load(x[i]);
    store(gx[i], a * grad_at_bn<Act>(load(gz[i]), xv, a, b) + k1 * (xv - m) + k0);
  }
}

#define YOLO5_DEFINE_BACKWARD(T)                                                                  \
  YOLO5_SIMD_CLONES void rows_grad_sums(const T* gz, const T* x, int64_t rows, int64_t C,         \
                                        const float* a, const float* b, const float* m, bool act, \
                                        double* sg, double* sgx) {                                \
    if (act)                                                                                      \
      rows_grad_sums_t<true>(gz, x, rows, C, a, b, m, sg, sgx);                                   \
    else                                                                                          \
      rows_grad_sums_t<false>(gz, x, rows, C, a, b, m, sg, sgx);                                  \
  }                                                                                               \
  YOLO5_SIMD_CLONES void plane_grad_sums(const T* gz, const T* x, int64_t n, float a, float b,    \
                                         float m, bool act, double* sg, double* sgx) {            \
    if (act)                                                                                      \
      plane_grad_sums_t<true>(gz, x, n, a, b, m, sg, sgx);                                        \
    else                                                                                          \
      plane_grad_sums_t<false>(gz, x, n, a, b, m, sg, sgx);                                       \
  }                                                                                               \
  YOLO5_SIMD_CLONES void rows_grad_input(const T* gz, const T* x, T* gx, int64_t rows, int64_t C, \
                                         const float* a, const float* b, const float* m,          \
                                         const float* k1, const float* k0, bool act) {            \
    if (act)                                                                                      \
      rows_grad_input_t<true>(gz, x, gx, rows, C, a, b, m, k1, k0);                               \
    else                                                                                          \
      rows_grad_input_t<false>(gz, x, gx, rows, C, a, b, m, k1, k0);                              \
  }                                                                                               \
  YOLO5_SIMD_CLONES void plane_grad_input(const T* gz, const T* x, T* gx, int64_t n, float a,     \
                                          float b, float m, float k1, float k0, bool act) {       \
    if (act)                                                                                      \
      plane_grad_input_t<true>(gz, x, gx, n, a, b, m, k1, k0);                                    \
    else                                                                                          \
      plane_grad_input_t<false>(gz, x, gx, n, a, b, m, k1, k0);                                   \
  }
YOLO5_FOR_EACH_TYPE(YOLO5_DEFINE_BACKWARD)

}  // namespace bn_kernels

namespace {

using namespace bn_kernels;

// x as NHWC rows (channels last) or NCHW planes. NHWC rows go `tile` at a time, as one wide row
// of width() = tile·C values, so that inner loops run over ≥ 256 values even when C is 16; the
// per-channel vectors are repeated to that width (tiled()).
struct Layout {
  bool rows;
  int64_t N, C, HW;
  int64_t tile = 1;
  int64_t count() const { return N * HW; }  // values per channel
  int64_t width() const { return tile * C; }
};

Layout layout_of(const torch::Tensor& x) {
  Layout L{!x.is_contiguous(), x.size(0), x.size(1), x.size(2) * x.size(3)};
  if (L.rows) L.tile = std::max<int64_t>(1, 256 / L.C);
  return L;
}

std::vector<float> tiled(const Layout& L, const std::vector<float>& v) {
  std::vector<float> out(static_cast<size_t>(L.width()));
  for (int64_t i = 0; i < L.width(); ++i) out[i] = v[i % L.C];
  return out;
}

// A run of NHWC wide rows: element offset, number of wide rows, their width (a multiple of C; the
// last run of a tensor may be one narrower row).
struct Rows {
  int64_t offset, count, width;
};

// Two per-channel double sums, in an order fixed by the shape alone (not by the thread count),
// so results repeat exactly. rows_fn(Rows, s, q) / plane_fn(n, c, s, q) add into s, q (for rows:
// per position in the wide row).
template <typename RowsFn, typename PlaneFn>
void channel_sums(const Layout& L, std::vector<double>& s, std::vector<double>& q, RowsFn rows_fn,
                  PlaneFn plane_fn) {
  s.assign(L.C, 0);
  q.assign(L.C, 0);
  if (!L.rows) {
    at::parallel_for(0, L.C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t n = 0; n < L.N; ++n) plane_fn(n, c, &s[c], &q[c]);
    });
    return;
  }
  const int64_t W = L.width(), wide = L.count() / L.tile, rest = L.count() % L.tile;
  const int64_t chunks = std::clamp<int64_t>(wide * W / 32768, 1, 64);
  const int64_t per = (wide + chunks - 1) / chunks;
  // One slot per chunk and one for the narrower last row.
  std::vector<double> part(static_cast<size_t>((chunks + 1) * 2 * W), 0.0);
  auto slot = [&](int64_t k) { return &part[static_cast<size_t>(k * 2 * W)]; };
  at::parallel_for(0, chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t r0 = k * per, r1 = std::min(wide, r0 + per);
      if (r0 < r1) rows_fn(Rows{r0 * W, r1 - r0, W}, slot(k), slot(k) + W);
    }
  });
  if (rest > 0) rows_fn(Rows{wide * W, 1, rest * L.C}, slot(chunks), slot(chunks) + W);
  for (int64_t k = 0; k <= chunks; ++k) {
    for (int64_t j = 0; j < W; ++j) {
      s[j % L.C] += slot(k)[j];
      q[j % L.C] += slot(k)[W + j];
    }
  }
}

// Per-element work split over wide rows (NHWC) or planes (NCHW).
template <typename RowsFn, typename PlaneFn>
void for_each_block(const Layout& L, RowsFn rows_fn, PlaneFn plane_fn) {
  if (!L.rows) {
    at::parallel_for(0, L.N * L.C, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) plane_fn(p / L.C, p % L.C);
    });
    return;
  }
  const int64_t W = L.width(), wide = L.count() / L.tile, rest = L.count() % L.tile;
  const int64_t grain = std::max<int64_t>(1, 16384 / W);
  at::parallel_for(0, wide, grain, [&](int64_t r0, int64_t r1) {
    rows_fn(Rows{r0 * W, r1 - r0, W});
  });
  if (rest > 0) rows_fn(Rows{wide * W, 1, rest * L.C});
}

struct Stats {
  std::vector<float> mean, invstd;
  double count = 0;  // values per channel behind the statistics (over every rank with --sync-bn)
};

thread_local ChannelSumsReducer* current_sync = nullptr;

// Two per-channel sums and a count, summed over the ranks in one all-reduce.
double sum_over_ranks(ChannelSumsReducer* sync, std::vector<double>& a, std::vector<double>& b,
                      double count) {
  const size_t C = a.size();
  std::vector<double> v(a);
  v.insert(v.end(), b.begin(), b.end());
  v.push_back(count);
  sync->sum(v);
  std::copy(v.begin(), v.begin() + C, a.begin());
  std::copy(v.begin() + C, v.begin() + 2 * C, b.begin());
  return v[2 * C];
}

// Batch statistics (over every rank with `sync`); updates the running ones (momentum as
// PyTorch: unbiased variance).
template <typename T>
Stats batch_stats(const Layout& L, const T* x, torch::Tensor& running_mean,
                  torch::Tensor& running_var, double momentum, double eps,
                  ChannelSumsReducer* sync) {
  std::vector<double> s, q;
  channel_sums(
      L, s, q,
      [&](Rows r, double* ps, double* pq) { rows_stats(x + r.offset, r.count, r.width, ps, pq); },
      [&](int64_t n, int64_t c, double* ps, double* pq) {
        plane_stats(x + (n * L.C + c) * L.HW, L.HW, ps, pq);
      });
  double M = static_cast<double>(L.count());
  if (sync) M = sum_over_ranks(sync, s, q, M);
  Stats st;
  st.count = M;
  st.mean.resize(L.C);
  st.invstd.resize(L.C);
  std::vector<float> batch_var(L.C);
  for (int64_t c = 0; c < L.C; ++c) {
    const double mean = s[c] / M, var = std::max(q[c] / M - mean * mean, 0.0);
    st.mean[c] = static_cast<float>(mean);
    st.invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
    batch_var[c] = static_cast<float>(M > 1 ? var * M / (M - 1) : var);
  }
  torch::NoGradGuard no_grad;
  auto cpu = torch::TensorOptions().dtype(torch::kFloat);
  running_mean.mul_(1 - momentum).add_(torch::from_blob(st.mean.data(), {L.C}, cpu), momentum);
  running_var.mul_(1 - momentum).add_(torch::from_blob(batch_var.data(), {L.C}, cpu), momentum);
  return st;
}

// z = act(a·x + b) per channel.
template <typename T>
void normalize_act(const Layout& L, const T* x, T* z, const std::vector<float>& a,
                   const std::vector<float>& b, bool act) {
  const auto ta = tiled(L, a), tb = tiled(L, b);
  for_each_block(
      L,
      [&](Rows r) {
        rows_apply(x + r.offset, z + r.offset, r.count, r.width, ta.data(), tb.data(), act);
      },
      [&](int64_t n, int64_t c) {
        const int64_t off = (n * L.C + c) * L.HW;
        plane_apply(x + off, z + off, L.HW, a[c], b[c], act);
      });
}

// Calls f(T{}) with T the element type the kernels read x as: float, or bfloat16's bits.
template <typename F>
auto with_elements(const torch::Tensor& x, F&& f) {
  if (x.scalar_type() == torch::kBFloat16) return f(bf16_bits{});
  return f(float{});
}

template <typename T>
T* elements(const torch::Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

std::vector<float> to_floats(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

torch::Tensor from_floats(const std::vector<float>& v) {
  return torch::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())},
                          torch::kFloat)
      .clone();
}

// Scale a = γ·invstd and shift b = β − mean·a.
void scale_shift(const Stats& st, const std::vector<float>& gamma, const std::vector<float>& beta,
                 std::vector<float>& a, std::vector<float>& b) {
  const size_t C = gamma.size();
  a.resize(C);
  b.resize(C);
  for (size_t c = 0; c < C; ++c) {
    a[c] = gamma[c] * st.invstd[c];
    b[c] = beta[c] - st.mean[c] * a[c];
  }
}

class BnActFunction : public torch::autograd::Function<BnActFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               torch::Tensor weight, torch::Tensor bias, torch::Tensor running_mean,
                               torch::Tensor running_var, double momentum, double eps, bool act) {
    const auto L = layout_of(x);
    auto* sync = current_sync;
    auto z = torch::empty_like(x);
    const auto st = with_elements(x, [&](auto t) {
      using T = decltype(t);
      auto st = batch_stats(L, elements<T>(x), running_mean, running_var, momentum, eps, sync);
      std::vector<float> a, b;
      scale_shift(st, to_floats(weight), to_floats(bias), a, b);
      normalize_act(L, elements<T>(x), elements<T>(z), a, b, act);
      return st;
    });
    ctx->save_for_backward({x, weight, bias});
    ctx->saved_data["mean"] = from_floats(st.mean);
    ctx->saved_data["invstd"] = from_floats(st.invstd);
    ctx->saved_data["act"] = act;
    ctx->saved_data["count"] = st.count;
    // The backward may run on another thread (CUDA's autograd threads): it takes the reducer from
    // here (the trainer that installed it outlives the graph).
    ctx->saved_data["sync"] = reinterpret_cast<int64_t>(sync);
    return z;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    Stats st{to_floats(ctx->saved_data["mean"].toTensor()),
             to_floats(ctx->saved_data["invstd"].toTensor())};
    const bool act = ctx->saved_data["act"].toBool();
    const auto L = layout_of(x);
    // The incoming gradient in x's memory layout (a channel slice of a concat's gradient is not).
    auto gz = grads[0]
                  .to(x.scalar_type())
                  .contiguous(L.rows ? torch::MemoryFormat::ChannelsLast
                                     : torch::MemoryFormat::Contiguous);
    std::vector<float> a, b;
    const auto gamma = to_floats(saved[1]);
    scale_shift(st, gamma, to_floats(saved[2]), a, b);
    const double M = ctx->saved_data["count"].toDouble();
    auto* sync = reinterpret_cast<ChannelSumsReducer*>(ctx->saved_data["sync"].toInt());
    const bool input_grad = ctx->needs_input_grad(0);
    torch::Tensor gx = input_grad ? torch::empty_like(x) : torch::Tensor();
    std::vector<float> g_gamma, g_beta;
    with_elements(x, [&](auto t) {
      using T = decltype(t);
      gradients(L, elements<T>(gz), elements<T>(x), input_grad ? elements<T>(gx) : nullptr, st, a,
                b, act, M, sync, g_gamma, g_beta);
      return 0;
    });
    auto like = [&](const std::vector<float>& v, const torch::Tensor& p) {
      return from_floats(v).to(p.scalar_type());
    };
    return {gx,
            ctx->needs_input_grad(1) ? like(g_gamma, saved[1]) : torch::Tensor(),
            ctx->needs_input_grad(2) ? like(g_beta, saved[2]) : torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }

 private:
  // The weight and bias gradients, and gx (when not null) from the two backward passes.
  template <typename T>
  static void gradients(const Layout& L, const T* gp, const T* xp, T* out, const Stats& st,
                        const std::vector<float>& a, const std::vector<float>& b, bool act,
                        double M, ChannelSumsReducer* sync, std::vector<float>& g_gamma,
                        std::vector<float>& g_beta) {
    const auto ta = tiled(L, a), tb = tiled(L, b), tm = tiled(L, st.mean);
    std::vector<double> sg, sgx;
    channel_sums(
        L, sg, sgx,
        [&](Rows r, double* ps, double* px) {
          rows_grad_sums(gp + r.offset, xp + r.offset, r.count, r.width, ta.data(), tb.data(),
                         tm.data(), act, ps, px);
        },
        [&](int64_t n, int64_t c, double* ps, double* px) {
          const int64_t off = (n * L.C + c) * L.HW;
          plane_grad_sums(gp + off, xp + off, L.HW, a[c], b[c], st.mean[c], act, ps, px);
        });
    std::vector<float> k1(L.C), k0(L.C);
    g_gamma.resize(L.C);
    g_beta.resize(L.C);
    for (int64_t c = 0; c < L.C; ++c) {
      g_beta[c] = static_cast<float>(sg[c]);
      g_gamma[c] = static_cast<float>(sgx[c] * st.invstd[c]);
    }
    if (out == nullptr) return;
    // The input gradient needs the sums over every rank's batch, as its statistics did.
    if (sync) sum_over_ranks(sync, sg, sgx, 0);
    for (int64_t c = 0; c < L.C; ++c) {
      const double inv = st.invstd[c];
      k1[c] = static_cast<float>(-a[c] * inv * inv * sgx[c] / M);
      k0[c] = static_cast<float>(-a[c] * sg[c] / M);
    }
    const auto tk1 = tiled(L, k1), tk0 = tiled(L, k0);
    for_each_block(
        L,
        [&](Rows r) {
          rows_grad_input(gp + r.offset, xp + r.offset, out + r.offset, r.count, r.width, ta.data(),
                          tb.data(), tm.data(), tk1.data(), tk0.data(), act);
        },
        [&](int64_t n, int64_t c) {
          const int64_t off = (n * L.C + c) * L.HW;
          plane_grad_input(gp + off, xp + off, out + off, L.HW, a[c], b[c], st.mean[c], k1[c],
                           k0[c], act);
        });
  }
};

std::vector<double> to_doubles(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

torch::Tensor channels(const std::vector<double>& v, const torch::Tensor& like) {
  return torch::from_blob(const_cast<double*>(v.data()), {1, static_cast<int64_t>(v.size()), 1, 1},
                          torch::kDouble)
      .to(like.device(), like.scalar_type());
}

struct SyncStats {
  torch::Tensor mean, invstd;  // (1, C, 1, 1), x's dtype and device
  double count = 0;
};

// Batch statistics over every rank (this thread's reducer); updates the running ones.
SyncStats synced_stats(const torch::Tensor& x, torch::Tensor& running_mean,
                       torch::Tensor& running_var, double momentum, double eps) {
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> dims{0, 2, 3};
  auto s = to_doubles(x.sum(dims)), q = to_doubles((x * x).sum(dims));
  const double M = sum_over_ranks(current_sync, s, q, static_cast<double>(x.numel() / x.size(1)));
  std::vector<double> mean(s.size()), invstd(s.size()), var_unbiased(s.size());
  for (size_t c = 0; c < s.size(); ++c) {
    mean[c] = s[c] / M;
    const double var = std::max(q[c] / M - mean[c] * mean[c], 0.0);
    invstd[c] = 1.0 / std::sqrt(var + eps);
    var_unbiased[c] = M > 1 ? var * M / (M - 1) : var;
  }
  running_mean.mul_(1 - momentum).add_(channels(mean, running_mean).view({-1}), momentum);
  running_var.mul_(1 - momentum).add_(channels(var_unbiased, running_var).view({-1}), momentum);
  return {channels(mean, x), channels(invstd, x), M};
}

torch::Tensor normalize(const torch::Tensor& x, const SyncStats& st, const torch::Tensor& weight,
                        const torch::Tensor& bias) {
  return (x - st.mean) * st.invstd * weight.view({1, -1, 1, 1}) + bias.view({1, -1, 1, 1});
}

// SyncBatchNorm in tensor operations (any device): the same sums as the fused kernel's.
class SyncBnFunction : public torch::autograd::Function<SyncBnFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               torch::Tensor weight, torch::Tensor bias, torch::Tensor running_mean,
                               torch::Tensor running_var, double momentum, double eps) {
    auto st = synced_stats(x, running_mean, running_var, momentum, eps);
    ctx->save_for_backward({x, weight, st.mean, st.invstd});
    ctx->saved_data["count"] = st.count;
    ctx->saved_data["sync"] = reinterpret_cast<int64_t>(current_sync);  // as in BnActFunction
    return normalize(x, st, weight, bias);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &m = saved[2], &inv = saved[3];
    const auto& gy = grads[0];
    const std::vector<int64_t> dims{0, 2, 3};
    auto xm = x - m;
    auto sg_t = gy.sum(dims), sgx_t = (gy * xm).sum(dims);
    torch::Tensor gx;
    if (ctx->needs_input_grad(0)) {
      // The input gradient needs the sums over every rank's batch; the weight's stays local.
      auto* sync = reinterpret_cast<ChannelSumsReducer*>(ctx->saved_data["sync"].toInt());
      auto sg = to_doubles(sg_t), sgx = to_doubles(sgx_t);
      sum_over_ranks(sync, sg, sgx, 0);
      const double M = ctx->saved_data["count"].toDouble();
      auto k0 = channels(sg, x) / M, k1 = channels(sgx, x) / M;
      gx = w.view({1, -1, 1, 1}) * inv * (gy - k0 - xm * inv * inv * k1);
    }
    return {
        gx,
        ctx->needs_input_grad(1) ? (sgx_t * inv.view({-1})).to(w.scalar_type()) : torch::Tensor(),
        ctx->needs_input_grad(2) ? sg_t : torch::Tensor(),
        torch::Tensor(),
        torch::Tensor(),
        torch::Tensor(),
        torch::Tensor()};
  }
};

std::atomic<bool> fused_enabled{true};

}  // namespace

SyncBatchNormScope::SyncBatchNormScope(ChannelSumsReducer* reducer) : previous_(current_sync) {
  current_sync = reducer;
}
SyncBatchNormScope::~SyncBatchNormScope() { current_sync = previous_; }
ChannelSumsReducer* sync_batch_norm() { return current_sync; }

torch::Tensor synced_batch_norm(torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  TORCH_CHECK(current_sync != nullptr && bn->is_training(), "synced_batch_norm: not synchronised");
  const auto& o = bn->options;
  TORCH_CHECK(o.affine() && o.track_running_stats(),
              "--sync-bn needs BatchNorm with affine weights and running statistics");
  double momentum = 0;
  {
    torch::NoGradGuard no_grad;
    bn->num_batches_tracked.add_(1);
    momentum = o.momentum().has_value()
                   ? *o.momentum()
                   : 1.0 / static_cast<double>(bn->num_batches_tracked.item<int64_t>());
  }
  if (!torch::GradMode::is_enabled()) {
    // A frozen prefix: the same statistics, no graph.
    auto st = synced_stats(x, bn->running_mean, bn->running_var, momentum, o.eps());
    return normalize(x, st, bn->weight, bn->bias);
  }
  RECORD_FUNCTION("yolo5::synced_batch_norm", std::vector<c10::IValue>{},
                  at::sequence_number::peek());
  return SyncBnFunction::apply(x, bn->weight, bn->bias, bn->running_mean, bn->running_var, momentum,
                               o.eps());
}

void set_fused_batch_norm(bool enabled) { fused_enabled = enabled; }
bool fused_batch_norm() { return fused_enabled; }

// Under autocast an fp16 convolution's activations are normalised in fp32 on an fp32 copy, and
// the result goes back to fp16 (bf16 ones go through the kernels as they are, computed in fp32).
static torch::Tensor reduced_precision(torch::nn::BatchNorm2d& bn, const torch::Tensor& input,
                                       FusedAct act) {
  // The copy keeps the memory format (NHWC stays NHWC).
  auto z = batch_norm_act(bn, input.to(torch::kFloat), act, true);
  return z.defined() ? z.to(input.scalar_type()) : z;
}

torch::Tensor batch_norm_act(torch::nn::BatchNorm2d& bn, const torch::Tensor& input, FusedAct act,
                             bool x_is_temporary) {
  const auto& o = bn->options;
  if (fused_enabled && input.device().is_cpu() && input.scalar_type() == torch::kHalf)
    return reduced_precision(bn, input, act);
  const bool supported =
      input.scalar_type() == torch::kFloat || input.scalar_type() == torch::kBFloat16;
  if (!fused_enabled || !input.device().is_cpu() || !supported || input.dim() != 4 || !o.affine() ||
      !o.track_running_stats() || input.numel() == 0 || bn->weight.scalar_type() != torch::kFloat ||
      bn->running_mean.scalar_type() != torch::kFloat)
    return {};
  const bool silu = act == FusedAct::SiLU;
  const bool grad =
      torch::GradMode::is_enabled() &&
      (input.requires_grad() || bn->weight.requires_grad() || bn->bias.requires_grad());
  const bool training = bn->is_training();
  if (!training && grad) return {};
  torch::Tensor x = input;
  bool temporary = x_is_temporary;
  if (!x.is_contiguous() && !x.is_contiguous(torch::MemoryFormat::ChannelsLast)) {
    x = x.contiguous();
    temporary = true;
  }
  double momentum = 0;
  if (training) {
    // As LibTorch's BatchNorm: batch statistics need more than one value per channel.
    TORCH_CHECK(x.size(0) * x.size(2) * x.size(3) > 1,
                "Expected more than 1 value per channel when training, got input size ", x.sizes());
    torch::NoGradGuard no_grad;
    bn->num_batches_tracked.add_(1);
    momentum = o.momentum().has_value()
                   ? *o.momentum()
                   : 1.0 / static_cast<double>(bn->num_batches_tracked.item<int64_t>());
  }
  if (grad) {
    // Named with the sequence number its autograd node gets, so that a profile (YOLO5_PROFILE)
    // gives the node's backward time to the layer that ran this forward.
    RECORD_FUNCTION("yolo5::batch_norm_act", std::vector<c10::IValue>{},
                    at::sequence_number::peek());
    return BnActFunction::apply(x, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                                momentum, o.eps(), silu);
  }
  // No autograd: one pass (two with batch statistics), in place when x is this call's own.
  const auto L = layout_of(x);
  torch::Tensor z = temporary ? x : torch::empty_like(x);
  with_elements(x, [&](auto t) {
    using T = decltype(t);
    Stats st;
    if (training) {
      st = batch_stats(L, elements<T>(x), bn->running_mean, bn->running_var, momentum, o.eps(),
                       current_sync);
    } else {
      st.mean = to_floats(bn->running_mean);
      st.invstd = to_floats(bn->running_var);
      for (auto& v : st.invstd) v = static_cast<float>(1.0 / std::sqrt(v + o.eps()));
    }
    std::vector<float> a, b;
    scale_shift(st, to_floats(bn->weight), to_floats(bn->bias), a, b);
    normalize_act(L, elements<T>(x), elements<T>(z), a, b, silu);
    return 0;
  });
  return z;
}

}  // namespace yolo5
