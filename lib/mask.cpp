// Masking (RFC 6455 §5.3) with SSE2 / AVX2 kernels picked once at run time.
//
// Every kernel uses the same shape, exact for any length and alignment:
//   * the first and the last vector of the range are loaded (unaligned) before
//     anything is stored;
//   * the middle runs in aligned vectors (aligned on the destination);
//   * then the first and last vectors are XORed and stored.
// Where the edge vectors overlap the middle, they store the same values the
// middle stored (each was loaded from the original bytes), so no byte is XORed
// twice and none outside [data, data + n) is touched. Below one vector the same
// trick runs with 8- and 4-byte words.
#include "mask.hpp"

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "cpu_features.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define WS6455_TARGET_AVX2 __attribute__((target("avx2")))
#define WS6455_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline
#endif

namespace ws6455::detail {

simd_level detected_simd_level() noexcept {
  static const simd_level level = [] {
    simd_level l = simd_level::portable;
#if defined(__x86_64__)
    __builtin_cpu_init();
    l = simd_level::sse2;
    if (__builtin_cpu_supports("ssse3")) l = simd_level::ssse3;
    if (__builtin_cpu_supports("avx2")) l = simd_level::avx2;
#endif
    if (const char* cap = std::getenv("WS6455_SIMD")) {
      const std::string_view c(cap);
      simd_level want = l;
      if (c == "portable") want = simd_level::portable;
      else if (c == "sse2") want = simd_level::sse2;
      else if (c == "ssse3") want = simd_level::ssse3;
      else if (c == "avx2") want = simd_level::avx2;
      if (want < l) l = want;
    }
    return l;
  }();
  return level;
}

namespace {

using mask_detail::load;
using mask_detail::store;

// The portable kernel (also the middle of nothing: any n). dst == src or disjoint.
inline void mask_words(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4],
                       std::size_t phase) noexcept {
  if (n < 16) return mask_small(dst, src, n, key, phase);
  const std::uint64_t w = key64(key, phase);
  const auto tail = load<std::uint64_t>(src + n - 8);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    std::uint64_t v[4];
    std::memcpy(v, src + i, 32);
    v[0] ^= w; v[1] ^= w; v[2] ^= w; v[3] ^= w;
    std::memcpy(dst + i, v, 32);
  }
  for (; i + 8 <= n; i += 8) store(dst + i, load<std::uint64_t>(src + i) ^ w);
  store(dst + n - 8, tail ^ key64(key, phase + n - 8));
}

#if defined(__x86_64__)
// SSE2: 16-byte vectors, aligned on dst. n >= 16.
inline void mask_sse2_kernel(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4],
                             std::size_t phase) noexcept {
  const std::size_t off = (16 - (reinterpret_cast<std::uintptr_t>(dst) & 15)) & 15;
  const __m128i head = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  const __m128i tail = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + n - 16));
  const __m128i k = _mm_set1_epi32(static_cast<int>(key32(key, phase + off)));
  std::size_t i = off;
  for (; i + 64 <= n; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(a, k));
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + i + 16), _mm_xor_si128(b, k));
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + i + 32), _mm_xor_si128(c, k));
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + i + 48), _mm_xor_si128(d, k));
  }
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(a, k));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                   _mm_xor_si128(head, _mm_set1_epi32(static_cast<int>(key32(key, phase)))));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 16),
                   _mm_xor_si128(tail, _mm_set1_epi32(static_cast<int>(key32(key, phase + n - 16)))));
}

inline void mask_sse2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4],
                      std::size_t phase) noexcept {
  if (n < 16) return mask_small(dst, src, n, key, phase);
  mask_sse2_kernel(dst, src, n, key, phase);
}

// AVX2: 32-byte vectors, aligned on dst, 128 bytes per iteration.
WS6455_AVX2_INLINE void mask_avx2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4],
                                  std::size_t phase) noexcept {
  if (n < 32) {
    if (n < 16) return mask_small(dst, src, n, key, phase);
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + n - 16));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                     _mm_xor_si128(a, _mm_set1_epi32(static_cast<int>(key32(key, phase)))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 16),
                     _mm_xor_si128(b, _mm_set1_epi32(static_cast<int>(key32(key, phase + n - 16)))));
    return;
  }
  const std::size_t off = (32 - (reinterpret_cast<std::uintptr_t>(dst) & 31)) & 31;
  const __m256i head = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
  const __m256i tail = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + n - 32));
  const __m256i k = _mm256_set1_epi32(static_cast<int>(key32(key, phase + off)));
  std::size_t i = off;
  for (; i + 128 <= n; i += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 64));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 96));
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_xor_si256(a, k));
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + i + 32), _mm256_xor_si256(b, k));
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + i + 64), _mm256_xor_si256(c, k));
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + i + 96), _mm256_xor_si256(d, k));
  }
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_xor_si256(a, k));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                      _mm256_xor_si256(head, _mm256_set1_epi32(static_cast<int>(key32(key, phase)))));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + n - 32),
                      _mm256_xor_si256(tail, _mm256_set1_epi32(static_cast<int>(key32(key, phase + n - 32)))));
}
#endif

// Resolved once, on first use: the pointer starts at a resolver that stores the pick.
using in_place_fn = std::size_t (*)(std::byte*, std::size_t, const std::byte*, std::size_t) noexcept;
using copy_fn = void (*)(std::byte*, const std::byte*, std::size_t, const std::byte*) noexcept;

in_place_fn pick_in_place() noexcept {
  switch (detected_simd_level()) {
    case simd_level::avx2: return &mask_in_place_avx2;
    case simd_level::ssse3:
    case simd_level::sse2: return &mask_in_place_sse2;
    case simd_level::portable: break;
  }
  return &mask_in_place_portable;
}
copy_fn pick_copy() noexcept {
  switch (detected_simd_level()) {
    case simd_level::avx2: return &mask_copy_avx2;
    case simd_level::ssse3:
    case simd_level::sse2: return &mask_copy_sse2;
    case simd_level::portable: break;
  }
  return &mask_copy_portable;
}

std::size_t resolve_in_place(std::byte* d, std::size_t n, const std::byte* k, std::size_t ph) noexcept;
void resolve_copy(std::byte* d, const std::byte* s, std::size_t n, const std::byte* k) noexcept;
constinit std::atomic<in_place_fn> g_in_place{&resolve_in_place};
constinit std::atomic<copy_fn> g_copy{&resolve_copy};

std::size_t resolve_in_place(std::byte* d, std::size_t n, const std::byte* k, std::size_t ph) noexcept {
  const in_place_fn f = pick_in_place();
  g_in_place.store(f, std::memory_order_relaxed);
  return f(d, n, k, ph);
}
void resolve_copy(std::byte* d, const std::byte* s, std::size_t n, const std::byte* k) noexcept {
  const copy_fn f = pick_copy();
  g_copy.store(f, std::memory_order_relaxed);
  f(d, s, n, k);
}

}  // namespace

std::size_t mask_in_place_scalar(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  for (std::size_t i = 0; i < n; ++i) data[i] ^= key[(phase + i) & 3];
  return (phase + n) & 3;
}

std::size_t mask_in_place_portable(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  mask_words(data, data, n, key, phase);
  return (phase + n) & 3;
}
void mask_copy_portable(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept {
  mask_words(dst, src, n, key, 0);
}

#if defined(__x86_64__)
std::size_t mask_in_place_sse2(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  mask_sse2(data, data, n, key, phase);
  return (phase + n) & 3;
}
void mask_copy_sse2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept {
  mask_sse2(dst, src, n, key, 0);
}
WS6455_TARGET_AVX2 std::size_t mask_in_place_avx2(std::byte* data, std::size_t n, const std::byte key[4],
                                                   std::size_t phase) noexcept {
  mask_avx2(data, data, n, key, phase);
  return (phase + n) & 3;
}
WS6455_TARGET_AVX2 void mask_copy_avx2(std::byte* dst, const std::byte* src, std::size_t n,
                                       const std::byte key[4]) noexcept {
  mask_avx2(dst, src, n, key, 0);
}
#else
std::size_t mask_in_place_sse2(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  return mask_in_place_portable(data, n, key, phase);
}
void mask_copy_sse2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept {
  mask_copy_portable(dst, src, n, key);
}
std::size_t mask_in_place_avx2(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  return mask_in_place_portable(data, n, key, phase);
}
void mask_copy_avx2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept {
  mask_copy_portable(dst, src, n, key);
}
#endif

// Below 32 bytes no kernel is faster than the baseline (two overlapping words or
// SSE2 vectors): small frames skip the indirect call.
inline void mask_below_32(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4],
                          std::size_t phase) noexcept {
#if defined(__x86_64__)
  if (n < 16) return mask_small(dst, src, n, key, phase);
  // Two overlapping unaligned vectors, both loaded before either is stored.
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + n - 16));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                   _mm_xor_si128(a, _mm_set1_epi32(static_cast<int>(key32(key, phase)))));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 16),
                   _mm_xor_si128(b, _mm_set1_epi32(static_cast<int>(key32(key, phase + n - 16)))));
#else
  mask_words(dst, src, n, key, phase);
#endif
}

std::size_t mask_in_place(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  if (n < 32) {
    mask_below_32(data, data, n, key, phase);
    return (phase + n) & 3;
  }
  return g_in_place.load(std::memory_order_relaxed)(data, n, key, phase);
}

void mask_copy(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept {
  if (n < 32) return mask_below_32(dst, src, n, key, 0);
  g_copy.load(std::memory_order_relaxed)(dst, src, n, key);
}

}  // namespace ws6455::detail
