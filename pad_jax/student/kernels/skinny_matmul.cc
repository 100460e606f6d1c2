// Skinny float32 matrix products for decoding on CPU: y[M, N] = x[M, K] . w,
// M <= kMaxRows rows (a decoding step's batch, beams or samples), w a large
// weight matrix read once.
//
//   transpose_w = false: w is [K, N] row-major (t5x's dense kernels).
//   transpose_w = true:  w is [N, K] row-major (a tied output embedding).
//
// At these M the product is as many multiply-adds per weight as there are
// rows, so its time is reading w (and, past 8 rows, the multiply-adds).
// XLA:CPU's library GEMM reads w at about a third of the memory's rate at
// these shapes and spends ~0.1 ms of thread hand-off on every 1 MB
// projection (docs/measured.md); these loops stream w once, in address
// order, from each thread's contiguous part:
//
//   [K, N]: the K rows are split among threads; each multiplies its rows in
//           chunks (see ChunkKN), adding into its own [M, N] partial (column
//           blocks of at most kColumnBlock); the caller adds the partials.
//   [N, K]: the N rows are split among threads; each row is a dot product
//           against the rows of x, the sums reduced by a shuffle tree.
//
// Rows of x are taken 8 at a time (kGroup, the register tile); the groups
// of a call run over the same chunk of w while it is in cache, so w is read
// from memory once whatever M is.
//
// Threads come from XLA's intra-op pool (common.h, ParallelParts).
//
// Built by pad_jax/student/kernels/__init__.py for the machine it runs on
// (-march=native) and registered as the XLA FFI target
// "pad_skinny_matmul_f32" on the CPU platform.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using namespace pad_kernels;  // NOLINT: the kernels' shared vocabulary.

namespace {

constexpr int kGroup = 8;      // Rows of x per register tile.
constexpr int64_t kColumnBlock = 2048;  // [K, N]: a part's columns at a time.
constexpr int64_t kMinRowsPerPart = 64;

// ---------------------------------------------------------------- [K, N] ----

// Spreads the prefetch of the rows [row, end) of w, columns [n0, n0 +
// 16 * row_lines), over `steps` calls of Step (line by line, address order).
struct Prefetcher {
  const float* w;
  int64_t N, n0, row, end, row_lines, line = 0, per_step = 0;
  void Plan(int64_t steps) {
    per_step = ((end - row) * row_lines + steps - 1) / std::max<int64_t>(1, steps);
  }
  void Step() {
    for (int64_t i = 0; i < per_step && row < end; ++i) {
      __builtin_prefetch(w + row * N + n0 + line * 16, 0, 1);
      if (++line == row_lines) { line = 0; ++row; }
    }
  }
};

// p[m, n0:n1] (+)= x[m, kc:ke] . w[kc:ke, n0:n1] for one group of M rows
// (`first` overwrites p). Panels of C vectors walk down the chunk's rows
// with M x C accumulators in registers: broadcast x times w, the
// multiply-adds' operands come from registers.
template <int M, int C>
void ChunkKN(const float* x, int64_t K, const float* w, int64_t N, int64_t kc,
             int64_t ke, int64_t n0, int64_t n1, float* p, bool first,
             Prefetcher& shared) {
  Prefetcher prefetch = shared;  // In registers for the loop.
  constexpr int64_t kPanel = C * kLanes;
  const int64_t nv = n0 + (n1 - n0) / kPanel * kPanel;
  for (int64_t n = n0; n < nv; n += kPanel) {
    Vec acc[M][C];
    for (int m = 0; m < M; ++m)
      for (int c = 0; c < C; ++c)
        acc[m][c] = first ? Vec{} : Load(p + m * N + n + c * kLanes);
    const float* wp = w + kc * N + n;
    for (int64_t k = kc; k < ke; ++k, wp += N) {
      prefetch.Step();
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
  shared = prefetch;
  for (int64_t n = nv; n < n1; ++n)  // Columns left over from the panels.
    for (int m = 0; m < M; ++m) {
      float a = first ? 0.f : p[m * N + n];
      for (int64_t k = kc; k < ke; ++k) a += x[m * K + k] * w[k * N + n];
      p[m * N + n] = a;
    }
}

// Vectors per panel for a group of M rows: M x C accumulators, 16 registers.
constexpr int PanelVectors(int64_t m) { return m <= 4 ? 4 : 2; }
template <int M>
constexpr int Panel() { return PanelVectors(M); }

using ChunkFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t,
                         int64_t, int64_t, int64_t, float*, bool, Prefetcher&);
constexpr ChunkFn kChunks[kGroup] = {
    ChunkKN<1, Panel<1>()>, ChunkKN<2, Panel<2>()>, ChunkKN<3, Panel<3>()>,
    ChunkKN<4, Panel<4>()>, ChunkKN<5, Panel<5>()>, ChunkKN<6, Panel<6>()>,
    ChunkKN<7, Panel<7>()>, ChunkKN<8, Panel<8>()>};

// p (rows x N) = x[:, k0:k1] . w[k0:k1, :]: chunks of kChunk rows, every
// group of x's rows over each chunk in turn, while the chunk kPrefetch
// chunks ahead is prefetched, spread over the chunk's panel steps, so memory
// streams while the multiply-adds run.
constexpr int64_t kChunk = 16;
constexpr int64_t kPrefetch = 2;

void PartKN(int64_t rows, const float* x, int64_t K, const float* w, int64_t N,
            int64_t k0, int64_t k1, float* p) {
  for (int64_t n0 = 0; n0 < N; n0 += kColumnBlock) {
    const int64_t n1 = std::min(N, n0 + kColumnBlock);
    for (int64_t kc = k0; kc < k1; kc += kChunk) {
      const int64_t ke = std::min(k1, kc + kChunk);
      Prefetcher prefetch{w, N, n0, std::min(k1, kc + kPrefetch * kChunk),
                          std::min(k1, ke + kPrefetch * kChunk),
                          (n1 - n0 + 15) / 16};
      int64_t steps = 0;  // Panel steps of the chunk, all groups.
      for (int64_t m0 = 0; m0 < rows; m0 += kGroup) {
        const int64_t group = std::min<int64_t>(kGroup, rows - m0);
        steps += (n1 - n0) / (PanelVectors(group) * kLanes) * (ke - kc);
      }
      prefetch.Plan(steps);
      for (int64_t m0 = 0; m0 < rows; m0 += kGroup) {
        const int64_t group = std::min<int64_t>(kGroup, rows - m0);
        kChunks[group - 1](x + m0 * K, K, w, N, kc, ke, n0, n1, p + m0 * N,
                           kc == k0, prefetch);
      }
    }
  }
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
void RowsNK(const float* x, int64_t K, const float* w, int64_t N, int64_t n0,
            int64_t n1, float* y) {
  const int64_t kv = K / kLanes * kLanes;
  for (int64_t n = n0; n < n1; ++n) {
    const float* wr = w + n * K;
    Vec a[kGroup];
    for (int m = 0; m < kGroup; ++m) a[m] = Vec{};
    for (int64_t k = 0; k < kv; k += kLanes) {
      const Vec v = Load(wr + k);
      for (int m = 0; m < M; ++m) a[m] += Load(x + m * K + k) * v;
    }
    float sums[kGroup];
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

using RowsFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t,
                        int64_t, float*);
constexpr RowsFn kRowsNK[kGroup] = {RowsNK<1>, RowsNK<2>, RowsNK<3>, RowsNK<4>,
                                    RowsNK<5>, RowsNK<6>, RowsNK<7>, RowsNK<8>};
constexpr int64_t kNKBlock = 128;  // Rows of w (256 KB at K = 512) per block.

// y[:, n0:n1] = x . w[n0:n1, :]^T, every group over each block of w's rows
// while the block is in cache.
void PartNK(int64_t rows, const float* x, int64_t K, const float* w, int64_t N,
            int64_t n0, int64_t n1, float* y) {
  for (int64_t b = n0; b < n1; b += kNKBlock) {
    for (int64_t m0 = 0; m0 < rows; m0 += kGroup) {
      const int64_t group = std::min<int64_t>(kGroup, rows - m0);
      kRowsNK[group - 1](x + m0 * K, K, w, N, b, std::min(n1, b + kNKBlock),
                         y + m0 * N);
    }
  }
}

// ------------------------------------------------------------ dispatch ------

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
        "pad_skinny_matmul: shapes do not match, or more than "
        PAD_KERNELS_STR(PAD_KERNELS_MAX_ROWS) " rows");
  }
  const float* xp = x.typed_data();
  const float* wp = w.typed_data();
  float* yp = y->typed_data();
  // Rows of w split among the parts: [N, K] splits N, [K, N] splits K.
  const int64_t split = transpose_w ? N : K;
  const int64_t parts = Parts(pool, split, kMinRowsPerPart);
  // [K, N] parts after the first add into their own partial; the caller sums.
  std::vector<float> partials(transpose_w ? 0 : (parts - 1) * rows * N);
  float* const scratch = partials.data();
  ParallelParts(pool, parts, [=](int64_t i) {
    const int64_t lo = split * i / parts, hi = split * (i + 1) / parts;
    if (transpose_w) {
      PartNK(rows, xp, K, wp, N, lo, hi, yp);
    } else {
      PartKN(rows, xp, K, wp, N, lo, hi, i == 0 ? yp : scratch + (i - 1) * rows * N);
    }
  });
  for (int64_t i = 1; i < parts && !transpose_w; ++i) {
    const float* p = scratch + (i - 1) * rows * N;
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
