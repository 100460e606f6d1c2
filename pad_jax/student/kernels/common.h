// What the CPU decoding kernels share: the constants from Python, the vector
// type and the parallel loop.

#ifndef PAD_JAX_KERNELS_COMMON_H_
#define PAD_JAX_KERNELS_COMMON_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "xla/ffi/api/ffi.h"

// Defined once, in pad_jax/student/kernels/__init__.py (MAX_ROWS, MASKED),
// and passed by its build() as -D flags.
#if !defined(PAD_KERNELS_MAX_ROWS) || !defined(PAD_KERNELS_MASKED)
#error "build with pad_jax.student.kernels.build(), which defines PAD_KERNELS_*"
#endif
#define PAD_KERNELS_STR(x) PAD_KERNELS_STR2(x)
#define PAD_KERNELS_STR2(x) #x

namespace pad_kernels {

// Rows of x per skinny matmul call.
constexpr int64_t kMaxRows = PAD_KERNELS_MAX_ROWS;
// A bias at or below this marks a masked position (not read).
constexpr float kMasked = PAD_KERNELS_MASKED;

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

// kLanes floats; built with -march=native, so the widest registers there are.
typedef float Vec __attribute__((vector_size(kLanes * 4), aligned(4)));

inline Vec Load(const float* p) { Vec v; std::memcpy(&v, p, sizeof(Vec)); return v; }
inline void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof(Vec)); }
inline Vec Splat(float f) { return Vec{} + f; }

// Runs part(0) .. part(parts - 1) on XLA's intra-op threads (the FFI's
// ThreadPool context) and on the calling thread, and returns when all are
// done. The caller takes parts too and never waits on a part nobody started,
// so a busy pool only makes the call single-threaded; a task that starts
// after the call returned finds no part left and touches only `state`.
template <typename Part>
void ParallelParts(xla::ffi::ThreadPool& pool, int64_t parts, Part part) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto run = [state, parts, part]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < parts;) {
      part(i);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t i = 1; i < parts; ++i) pool.Schedule([run]() { run(); });
  run();
  while (state->done.load(std::memory_order_acquire) < parts) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
}

// Parts for `rows` rows of work, at least `min_rows` each, one per thread.
inline int64_t Parts(xla::ffi::ThreadPool& pool, int64_t rows, int64_t min_rows) {
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  return std::max<int64_t>(1, std::min<int64_t>(threads, rows / min_rows));
}

}  // namespace pad_kernels

#endif  // PAD_JAX_KERNELS_COMMON_H_
