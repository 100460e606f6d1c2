// Decoding attention on CPU: a few query rows per (batch, head) against a
// key/value cache, reading only the cache positions the bias does not mask.
//
//   q     [B, R, H, D]   R query rows per batch entry (samples x positions)
//   k, v  [B, H, L, D]   the heads-major decode cache (pad_jax.student)
//   bias  [B, H, R, L]   additive; <= kMasked marks a masked position
//   out   [B, R, H, D]   softmax(q.k + bias) . v, in float32
//
// The values of `kernels.attention_reference` (an einsum, a softmax, an einsum)
// up to the order of the float32 sums: a masked position's logit is
// q.k - 1e10, whose exp underflows to exactly 0 next to any unmasked one, so
// skipping it changes nothing. A row with every position masked gets what
// the reference gives it: equal weights over all L positions.
//
// Self-attention's cache is filled up to the current step, so a decoding
// call reads about half of it on average instead of all of it every step.
// (b, h) pairs are split among XLA's intra-op threads (common.h).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using namespace pad_kernels;  // NOLINT: the kernels' shared vocabulary.

namespace {

typedef int32_t IVec __attribute__((vector_size(kLanes * 4), aligned(4)));


// The sum of x's lanes, halving the vector log2(kLanes) times.
inline float Sum(Vec x) {
#if defined(__AVX512F__)
  typedef int32_t Idx __attribute__((vector_size(64)));
  x += __builtin_shuffle(x, Idx{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
  x += __builtin_shuffle(x, Idx{4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3});
  x += __builtin_shuffle(x, Idx{2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1});
  x += __builtin_shuffle(x, Idx{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0});
  return x[0];
#else
  float t = 0.f;
  for (int i = 0; i < kLanes; ++i) t += x[i];
  return t;
#endif
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

inline float Dot(const float* a, const float* b, int64_t D) {
  if (D % kLanes == 0) {
    Vec acc{};
    for (int64_t d = 0; d < D; d += kLanes) acc += Load(a + d) * Load(b + d);
    return Sum(acc);
  }
  float t = 0.f;
  for (int64_t d = 0; d < D; ++d) t += a[d] * b[d];
  return t;
}

// o += p * v over D floats.
inline void Axpy(float p, const float* v, float* o, int64_t D) {
  for (int64_t d = 0; d < D; ++d) o[d] += p * v[d];
}

// One (b, h) pair, all R rows. The positions some row leaves unmasked are
// read once each, for every row (a row's masked positions get weight 0);
// Scratch of the calling part: `s` holds R x L floats, `totals` R, `keep` L
// ints.
void AttendPair(const float* q, const float* k, const float* v,
                const float* bias, float* out, int64_t R, int64_t H,
                int64_t L, int64_t D, float* s, float* totals, int32_t* keep) {
  int64_t n = 0;
  for (int64_t l = 0; l < L; ++l) {
    bool any = false;
    for (int64_t r = 0; r < R && !any; ++r) any = bias[r * L + l] > kMasked;
    if (any) keep[n++] = static_cast<int32_t>(l);
  }
  for (int64_t i = 0; i < n; ++i) {  // Logits.
    const float* kl = k + keep[i] * D;
    for (int64_t r = 0; r < R; ++r) {
      const float b = bias[r * L + keep[i]];
      s[r * L + i] = b > kMasked ? Dot(q + r * H * D, kl, D) + b : -INFINITY;
    }
  }
  for (int64_t r = 0; r < R; ++r) {  // Softmax numerators, in place.
    float* sr = s + r * L;
    float top = -INFINITY;
    for (int64_t i = 0; i < n; ++i) top = std::max(top, sr[i]);
    float total = 0.f;
    if (top == -INFINITY) {  // Every position masked: see below.
      totals[r] = 0.f;
      continue;
    }
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      const Vec e = Exp(Load(sr + i) - top);
      Store(sr + i, e);
      total += Sum(e);
    }
    for (; i < n; ++i) {
      sr[i] = std::exp(sr[i] - top);
      total += sr[i];
    }
    totals[r] = total;
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t d = 0; d < D; ++d) out[r * H * D + d] = 0.f;
  for (int64_t i = 0; i < n; ++i) {  // Weighted values.
    const float* vl = v + keep[i] * D;
    for (int64_t r = 0; r < R; ++r) {
      const float p = s[r * L + i];  // 0 where masked for this row.
      if (p != 0.f) Axpy(p, vl, out + r * H * D, D);
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    float* o = out + r * H * D;
    if (totals[r] > 0.f) {
      const float inv = 1.f / totals[r];
      for (int64_t d = 0; d < D; ++d) o[d] *= inv;
    } else {  // All masked: the reference's softmax is uniform over L.
      for (int64_t l = 0; l < L; ++l) Axpy(1.f, v + l * D, o, D);
      for (int64_t d = 0; d < D; ++d) o[d] /= static_cast<float>(L);
    }
  }
}

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
  const int64_t parts = Parts(pool, pairs, 1);
  ParallelParts(pool, parts, [=](int64_t i) {
    std::vector<float> s(R * L), totals(R);
    std::vector<int32_t> keep(L);
    for (int64_t pair = pairs * i / parts; pair < pairs * (i + 1) / parts; ++pair) {
      const int64_t b = pair / H, h = pair % H;
      AttendPair(qp + (b * R * H + h) * D, kp + pair * L * D, vp + pair * L * D,
                 bp + pair * R * L, op + (b * R * H + h) * D, R, H, L, D,
                 s.data(), totals.data(), keep.data());
    }
  });
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
