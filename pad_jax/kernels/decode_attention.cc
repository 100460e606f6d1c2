// Decoding attention on CPU: a few query rows per (batch, head) against a
// key/value cache, reading only the cache positions the bias does not mask.
//
//   q     [B, R, H, D]   R query rows per batch entry (samples x positions)
//   k, v  [B, H, L, D]   the heads-major decode cache (pad_jax.network)
//   bias  [B, H, R, L]   additive; <= kMasked marks a masked position
//   out   [B, R, H, D]   softmax(q.k + bias) . v, in float32
//
// The values of `network.cached_attention` (an einsum, a softmax, an einsum)
// up to the order of the float32 sums: a masked position's logit is
// q.k - 1e10, whose exp underflows to exactly 0 next to any unmasked one, so
// skipping it changes nothing. A row with every position masked gets what
// the reference gives it: equal weights over all L positions.
//
// Self-attention's cache is filled up to the current step, so a decoding
// call reads about half of it on average instead of all of it every step.
// (b, h) pairs are split among XLA's intra-op threads as in skinny_matmul.cc.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr float kMasked = -1e9f;

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef float Vec __attribute__((vector_size(kLanes * 4), aligned(4)));
typedef int32_t IVec __attribute__((vector_size(kLanes * 4), aligned(4)));

inline Vec Load(const float* p) { Vec x; std::memcpy(&x, p, sizeof(Vec)); return x; }
inline void Store(float* p, Vec x) { std::memcpy(p, &x, sizeof(Vec)); }

inline float Sum(Vec x) {
  float t = 0.f;
  for (int i = 0; i < kLanes; ++i) t += x[i];
  return t;
}

// exp(x) for x <= 0 (Cephes' expf polynomial, ~1 ulp); 0 below -87.
inline Vec Exp(Vec x) {
  const Vec lo = Vec{} - 87.f;
  const IVec under = x < lo;
  x = x < lo ? lo : x;
  const Vec fn = __builtin_convertvector(
      __builtin_convertvector(x * 1.44269504088896341f + (x < 0 ? -0.5f : 0.5f), IVec), Vec);
  const Vec r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
  Vec p = Vec{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const IVec bits = (__builtin_convertvector(fn, IVec) + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof(Vec));
  const Vec y = p * scale;
  return under ? Vec{} : y;
}

// One (b, h) pair, all R rows; `s` and `keep` hold L entries.
void AttendPair(const float* q, const float* k, const float* v,
                const float* bias, float* out, int64_t R, int64_t H,
                int64_t L, int64_t D, float* s, int32_t* keep) {
  const bool vectors = D % kLanes == 0;
  for (int64_t r = 0; r < R; ++r) {
    const float* qr = q + r * H * D;
    const float* br = bias + r * L;
    float* o = out + r * H * D;
    int64_t n = 0;
    for (int64_t l = 0; l < L; ++l) {
      if (br[l] > kMasked) keep[n++] = static_cast<int32_t>(l);
    }
    if (n == 0) {  // All masked: the reference's softmax is uniform.
      for (int64_t l = 0; l < L; ++l) keep[l] = static_cast<int32_t>(l);
      n = L;
    }
    float top = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      const float* kl = k + keep[i] * D;
      float dot = 0.f;
      if (vectors) {
        Vec acc{};
        for (int64_t d = 0; d < D; d += kLanes) acc += Load(qr + d) * Load(kl + d);
        dot = Sum(acc);
      } else {
        for (int64_t d = 0; d < D; ++d) dot += qr[d] * kl[d];
      }
      s[i] = dot + br[keep[i]];
      top = std::max(top, s[i]);
    }
    float total = 0.f;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      const Vec e = Exp(Load(s + i) - top);
      Store(s + i, e);
      total += Sum(e);
    }
    for (; i < n; ++i) {
      s[i] = std::exp(s[i] - top);
      total += s[i];
    }
    for (int64_t d = 0; d < D; ++d) o[d] = 0.f;
    for (int64_t j = 0; j < n; ++j) {
      const float* vl = v + keep[j] * D;
      const float p = s[j];
      for (int64_t d = 0; d < D; ++d) o[d] += p * vl[d];
    }
    const float inv = 1.f / total;
    for (int64_t d = 0; d < D; ++d) o[d] *= inv;
  }
}

struct Call {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

ffi::Error DecodeAttention(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q,
                           ffi::Buffer<ffi::F32> k, ffi::Buffer<ffi::F32> v,
                           ffi::Buffer<ffi::F32> bias,
                           ffi::ResultBuffer<ffi::F32> out) {
  const auto qd = q.dimensions(), kd = k.dimensions(), bd = bias.dimensions();
  if (qd.size() != 4 || kd.size() != 4 || bd.size() != 4) {
    return ffi::Error::InvalidArgument("pad_decode_attention: 4-D operands");
  }
  const int64_t B = qd[0], R = qd[1], H = qd[2], D = qd[3], L = kd[2];
  if (kd[0] != B || kd[1] != H || kd[3] != D || bd[0] != B || bd[1] != H ||
      bd[2] != R || bd[3] != L) {
    return ffi::Error::InvalidArgument("pad_decode_attention: shapes differ");
  }
  const float* qp = q.typed_data();
  const float* kp = k.typed_data();
  const float* vp = v.typed_data();
  const float* bp = bias.typed_data();
  float* op = out->typed_data();
  const int64_t pairs = B * H;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t parts = std::max<int64_t>(1, std::min(threads, pairs));
  auto call = std::make_shared<Call>();
  auto run = [=]() {
    std::vector<float> s(L);
    std::vector<int32_t> keep(L);
    for (int64_t i; (i = call->next.fetch_add(1)) < parts;) {
      for (int64_t pair = pairs * i / parts; pair < pairs * (i + 1) / parts; ++pair) {
        const int64_t b = pair / H, h = pair % H;
        AttendPair(qp + (b * R * H + h) * D, kp + pair * L * D, vp + pair * L * D,
                   bp + pair * R * L, op + (b * R * H + h) * D, R, H, L, D,
                   s.data(), keep.data());
      }
      call->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t i = 1; i < parts; ++i) pool.Schedule([run]() { run(); });
  run();
  while (call->done.load(std::memory_order_acquire) < parts) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(PadDecodeAttentionF32, DecodeAttention,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
