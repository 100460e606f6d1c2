// Skinny float32 matrix products for decoding on CPU: y[M, N] = x[M, K] . w,
// M <= 8 rows (a decoding step's batch), w a large weight matrix read once.
//
//   transpose_w = false: w is [K, N] row-major (t5x's dense kernels).
//   transpose_w = true:  w is [N, K] row-major (a tied output embedding).
//
// At M <= 8 the product is as many multiply-adds per weight as there are rows,
// so its time is reading w. XLA:CPU's library GEMM reads it at about a third
// of the memory's rate at these shapes and spends ~0.1 ms of thread hand-off
// on every 1 MB projection (docs/measured.md); these loops stream w once, in
// address order, from each thread's contiguous part:
//
//   [K, N]: the K rows are split among threads; each walks its rows four at a
//           time in address order, adding into its own [M, N] partial (kept in
//           cache, column blocks of at most kColumnBlock); the caller adds the
//           partials.
//   [N, K]: the N rows are split among threads; each row is a dot product
//           against the M rows of x, the M sums reduced by a shuffle tree.
//
// Threads come from XLA's intra-op pool (the FFI's ThreadPool context); the
// calling thread takes parts too and never waits on a part nobody started, so
// a busy pool only makes the call single-threaded.
//
// Built by pad_jax/kernels/skinny_matmul.py for the machine it runs on
// (-march=native) and registered as the XLA FFI target
// "pad_skinny_matmul_f32" on the CPU platform.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
constexpr int kMaxRows = 8;
constexpr int64_t kColumnBlock = 2048;  // [K, N]: a part's columns at a time.
constexpr int64_t kMinRowsPerPart = 64;

typedef float Vec __attribute__((vector_size(kLanes * 4), aligned(4)));

inline Vec Load(const float* p) { Vec v; std::memcpy(&v, p, sizeof(Vec)); return v; }
inline void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof(Vec)); }
inline Vec Splat(float f) { return Vec{} + f; }

// ---------------------------------------------------------------- [K, N] ----

// p[m, n0:n1] (+)= x[m, k0:k1] . w[k0:k1, n0:n1] (overwrites p on the part's
// first chunk). Chunks of kChunk rows; within a chunk, panels of C vectors
// walk down the rows with M x C accumulators in registers (broadcast x times
// w: the multiply-adds' operands come from registers). The chunk kPrefetch
// chunks ahead is prefetched line by line, spread over the panel steps, so
// memory streams while the multiply-adds run.
constexpr int64_t kChunk = 16;
constexpr int64_t kPrefetch = 2;

template <int M, int C>
void ChunksKN(const float* x, int64_t K, const float* w, int64_t N, int64_t k0,
              int64_t k1, int64_t n0, int64_t n1, float* p) {
  constexpr int64_t kPanel = C * kLanes;
  const int64_t nv = n0 + (n1 - n0) / kPanel * kPanel;
  const int64_t row_lines = (n1 - n0 + 15) / 16;
  for (int64_t kc = k0; kc < k1; kc += kChunk) {
    const int64_t ke = std::min(k1, kc + kChunk);
    const bool first = kc == k0;
    // The rows to prefetch while this chunk is multiplied, in address order.
    int64_t pf_row = std::min(k1, kc + kPrefetch * kChunk), pf_line = 0;
    const int64_t pf_end = std::min(k1, ke + kPrefetch * kChunk);
    const int64_t steps = std::max<int64_t>(1, (nv - n0) / kPanel * (ke - kc));
    const int64_t per_step = ((pf_end - pf_row) * row_lines + steps - 1) / steps;
    for (int64_t n = n0; n < nv; n += kPanel) {
      Vec acc[M][C];
      for (int m = 0; m < M; ++m)
        for (int c = 0; c < C; ++c)
          acc[m][c] = first ? Vec{} : Load(p + m * N + n + c * kLanes);
      const float* wp = w + kc * N + n;
      for (int64_t k = kc; k < ke; ++k, wp += N) {
        for (int64_t i = 0; i < per_step && pf_row < pf_end; ++i) {
          __builtin_prefetch(w + pf_row * N + n0 + pf_line * 16, 0, 1);
          if (++pf_line == row_lines) { pf_line = 0; ++pf_row; }
        }
        Vec v[C];
        for (int c = 0; c < C; ++c) v[c] = Load(wp + c * kLanes);
        for (int m = 0; m < M; ++m) {
          const Vec b = Splat(x[m * K + k]);
          for (int c = 0; c < C; ++c) acc[m][c] += b * v[c];
        }
      }
      for (int m = 0; m < M; ++m)
        for (int c = 0; c < C; ++c) Store(p + m * N + n + c * kLanes, acc[m][c]);
    }
    for (int64_t n = nv; n < n1; ++n)  // Columns left over from the panels.
      for (int m = 0; m < M; ++m) {
        float a = first ? 0.f : p[m * N + n];
        for (int64_t k = kc; k < ke; ++k) a += x[m * K + k] * w[k * N + n];
        p[m * N + n] = a;
      }
  }
}

template <int M>
void PartKN(const float* x, int64_t K, const float* w, int64_t N, int64_t k0,
            int64_t k1, float* p) {
  constexpr int C = M <= 4 ? 4 : 2;  // M x C accumulators: 16 registers.
  for (int64_t n0 = 0; n0 < N; n0 += kColumnBlock)
    ChunksKN<M, C>(x, K, w, N, k0, k1, n0, std::min(N, n0 + kColumnBlock), p);
}

// ---------------------------------------------------------------- [N, K] ----

// The lane sums of a[0..7], as lanes 0..7 of one vector (16 lanes only).
#if defined(__AVX512F__)
typedef int32_t Idx __attribute__((vector_size(64)));
inline Vec Sum8(const Vec* a) {
  const Idx lo1 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  const Idx hi1 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  const Idx lo2 = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
  const Idx hi2 = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
  const Idx lo3 = {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29};
  const Idx hi3 = {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31};
  const Idx even = {0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14};
  const Idx odd = {1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15};
  Vec s[4], t[2];
  // s[i]: lanes 0-7 hold a[2i]'s 8 partial sums, lanes 8-15 a[2i+1]'s.
  for (int i = 0; i < 4; ++i)
    s[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1], lo1) +
           __builtin_shuffle(a[2 * i], a[2 * i + 1], hi1);
  // t[i]: 4 lanes per vector, a[4i .. 4i+3].
  for (int i = 0; i < 2; ++i)
    t[i] = __builtin_shuffle(s[2 * i], s[2 * i + 1], lo2) +
           __builtin_shuffle(s[2 * i], s[2 * i + 1], hi2);
  // u: 2 lanes per vector, a[0 .. 7].
  const Vec u = __builtin_shuffle(t[0], t[1], lo3) + __builtin_shuffle(t[0], t[1], hi3);
  return __builtin_shuffle(u, even) + __builtin_shuffle(u, odd);
}
#endif

template <int M>
void PartNK(const float* x, int64_t K, const float* w, int64_t N, int64_t n0,
            int64_t n1, float* y) {
  const int64_t kv = K / kLanes * kLanes;
  for (int64_t n = n0; n < n1; ++n) {
    const float* wr = w + n * K;
    Vec a[kMaxRows];
    for (int m = 0; m < kMaxRows; ++m) a[m] = Vec{};
    for (int64_t k = 0; k < kv; k += kLanes) {
      const Vec v = Load(wr + k);
      for (int m = 0; m < M; ++m) a[m] += Load(x + m * K + k) * v;
    }
    float sums[kMaxRows];
#if defined(__AVX512F__)
    const Vec s = Sum8(a);
    for (int m = 0; m < M; ++m) sums[m] = s[m];
#else
    for (int m = 0; m < M; ++m) {
      sums[m] = 0.f;
      for (int i = 0; i < kLanes; ++i) sums[m] += a[m][i];
    }
#endif
    for (int m = 0; m < M; ++m) {
      float t = sums[m];
      for (int64_t k = kv; k < K; ++k) t += x[m * K + k] * wr[k];
      y[m * N + n] = t;
    }
  }
}

// ------------------------------------------------------------ dispatch ------

template <int M>
void Part(bool transpose_w, const float* x, int64_t K, const float* w,
          int64_t N, int64_t lo, int64_t hi, float* out) {
  if (transpose_w) {
    PartNK<M>(x, K, w, N, lo, hi, out);
  } else {
    PartKN<M>(x, K, w, N, lo, hi, out);
  }
}

using PartFn = void (*)(bool, const float*, int64_t, const float*, int64_t,
                        int64_t, int64_t, float*);
constexpr PartFn kParts[kMaxRows] = {Part<1>, Part<2>, Part<3>, Part<4>,
                                     Part<5>, Part<6>, Part<7>, Part<8>};

struct Call {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

ffi::Error SkinnyMatmul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                        ffi::Buffer<ffi::F32> w,
                        ffi::ResultBuffer<ffi::F32> y, bool transpose_w) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  if (xd.size() != 2 || wd.size() != 2) {
    return ffi::Error::InvalidArgument("pad_skinny_matmul: x and w must be 2-D");
  }
  const int64_t rows = xd[0], K = xd[1];
  const int64_t N = transpose_w ? wd[0] : wd[1];
  if ((transpose_w ? wd[1] : wd[0]) != K || rows < 1 || rows > kMaxRows) {
    return ffi::Error::InvalidArgument(
        "pad_skinny_matmul: shapes do not match, or more than 8 rows");
  }
  const float* xp = x.typed_data();
  const float* wp = w.typed_data();
  float* yp = y->typed_data();
  // Rows of w split among the parts: [N, K] splits N, [K, N] splits K.
  const int64_t split = transpose_w ? N : K;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(threads, split / kMinRowsPerPart));
  // [K, N] parts after the first add into their own partial; the caller sums.
  std::vector<float> partials(transpose_w ? 0 : (parts - 1) * rows * N);
  const PartFn part = kParts[rows - 1];
  auto call = std::make_shared<Call>();
  auto run = [=, partials = partials.data()]() {
    for (int64_t i; (i = call->next.fetch_add(1)) < parts;) {
      const int64_t lo = split * i / parts, hi = split * (i + 1) / parts;
      float* out = (transpose_w || i == 0) ? yp : partials + (i - 1) * rows * N;
      part(transpose_w, xp, K, wp, N, lo, hi, out);
      call->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t i = 1; i < parts; ++i) pool.Schedule([run]() { run(); });
  run();
  // Every part has been taken; wait for those still running elsewhere.
  while (call->done.load(std::memory_order_acquire) < parts) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  for (int64_t i = 1; i < parts && !transpose_w; ++i) {
    const float* p = partials.data() + (i - 1) * rows * N;
    for (int64_t j = 0; j < rows * N; ++j) yp[j] += p[j];
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(PadSkinnyMatmulF32, SkinnyMatmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transpose_w"));
