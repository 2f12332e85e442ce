// Masking (RFC 6455 §5.3) with SSE2 / AVX2 / AVX-512 kernels picked once at run time.
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
//
// The AVX-512 kernel has the same shape with 64-byte vectors; below 32 bytes it
// uses a byte-masked load and store (AVX-512BW), which neither fault on nor write
// the bytes masked off.
#include "mask.hpp"

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "cpu_features.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define WS6455_TARGET_AVX2 __attribute__((target("avx2")))
#define WS6455_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline
// Function-level targets, not -march: the library stays runnable on any x86-64.
#define WS6455_TARGET_AVX512 __attribute__((target("avx512f,avx512bw")))
#define WS6455_AVX512_INLINE __attribute__((target("avx512f,avx512bw"), always_inline)) inline
#endif

namespace ws6455::detail {

#if defined(__x86_64__)
namespace {
// The register state the OS saves on a context switch (XCR0), per Intel SDM vol. 1
// §13.3: a CPU may have AVX-512 while the kernel does not enable ZMM state, and
// then the instructions fault. Bits 1-2: XMM/YMM; 5-7: opmask, ZMM0-15 upper halves, ZMM16-31.
bool os_saves(std::uint32_t xcr0_bits) noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return false;
  std::uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));  // no -mxsave needed for the intrinsic
  return (lo & xcr0_bits) == xcr0_bits;
}
bool cpu_has_avx512bw() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return (b & bit_AVX512F) && (b & bit_AVX512BW) && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && os_saves(0xE6);
}
}  // namespace
#endif

simd_level detected_simd_level() noexcept {
  static const simd_level level = [] {
    simd_level l = simd_level::portable;
#if defined(__x86_64__)
    __builtin_cpu_init();
    l = simd_level::sse2;
    if (__builtin_cpu_supports("ssse3")) l = simd_level::ssse3;
    if (__builtin_cpu_supports("avx2") && os_saves(0x6)) l = simd_level::avx2;
    if (l == simd_level::avx2 && cpu_has_avx512bw()) l = simd_level::avx512;
#endif
    if (const char* cap = std::getenv("WS6455_SIMD")) {
      const std::string_view c(cap);
      simd_level want = l;
      if (c == "portable") want = simd_level::portable;
      else if (c == "sse2") want = simd_level::sse2;
      else if (c == "ssse3") want = simd_level::ssse3;
      else if (c == "avx2") want = simd_level::avx2;
      else if (c == "avx512") want = simd_level::avx512;
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

// AVX-512: 64-byte vectors, aligned on dst, 256 bytes per iteration, with the same
// edge-vector shape as SSE2/AVX2 (the edges are full unaligned vectors, not masked
// stores: on the Zen 5 bench machine a byte-masked 64-byte store costs ~4 ns, half
// of a whole 1 KiB unmask). Below 32 bytes (reached only by direct calls: the
// dispatcher keeps those inline) one zero-filling masked load and masked store.
WS6455_AVX512_INLINE __mmask64 first_bytes(std::size_t n) noexcept {  // lanes [0, n), n <= 64
  return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
}
WS6455_AVX512_INLINE void mask_avx512(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4],
                                      std::size_t phase) noexcept {
  if (n < 64) {
    if (n < 32) {
      const __mmask64 m = first_bytes(n);
      const __m512i k0 = _mm512_set1_epi32(static_cast<int>(key32(key, phase)));
      _mm512_mask_storeu_epi8(dst, m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, src), k0));
      return;
    }
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + n - 32));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                        _mm256_xor_si256(a, _mm256_set1_epi32(static_cast<int>(key32(key, phase)))));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + n - 32),
                        _mm256_xor_si256(b, _mm256_set1_epi32(static_cast<int>(key32(key, phase + n - 32)))));
    return;
  }
  // Aligned stores from the destination's first 64-byte boundary: they never split a
  // cache line, which is what limits an unaligned in-place loop once data is in L1/L2.
  const std::size_t off = (64 - (reinterpret_cast<std::uintptr_t>(dst) & 63)) & 63;
  const __m512i head = _mm512_loadu_si512(src);
  const __m512i tail = _mm512_loadu_si512(src + n - 64);
  const __m512i k = _mm512_set1_epi32(static_cast<int>(key32(key, phase + off)));
  std::size_t i = off;
  for (; i + 256 <= n; i += 256) {
    const __m512i a = _mm512_loadu_si512(src + i);
    const __m512i b = _mm512_loadu_si512(src + i + 64);
    const __m512i c = _mm512_loadu_si512(src + i + 128);
    const __m512i d = _mm512_loadu_si512(src + i + 192);
    _mm512_store_si512(dst + i, _mm512_xor_si512(a, k));
    _mm512_store_si512(dst + i + 64, _mm512_xor_si512(b, k));
    _mm512_store_si512(dst + i + 128, _mm512_xor_si512(c, k));
    _mm512_store_si512(dst + i + 192, _mm512_xor_si512(d, k));
  }
  for (; i + 64 <= n; i += 64) _mm512_store_si512(dst + i, _mm512_xor_si512(_mm512_loadu_si512(src + i), k));
  _mm512_storeu_si512(dst, _mm512_xor_si512(head, _mm512_set1_epi32(static_cast<int>(key32(key, phase)))));
  _mm512_storeu_si512(dst + n - 64,
                      _mm512_xor_si512(tail, _mm512_set1_epi32(static_cast<int>(key32(key, phase + n - 64)))));
}
#endif

// Resolved once, on first use: the pointer starts at a resolver that stores the pick.
using in_place_fn = std::size_t (*)(std::byte*, std::size_t, const std::byte*, std::size_t) noexcept;
using copy_fn = void (*)(std::byte*, const std::byte*, std::size_t, const std::byte*) noexcept;

in_place_fn pick_in_place() noexcept {
  switch (detected_simd_level()) {
    case simd_level::avx512: return &mask_in_place_avx512;
    case simd_level::avx2: return &mask_in_place_avx2;
    case simd_level::ssse3:
    case simd_level::sse2: return &mask_in_place_sse2;
    case simd_level::portable: break;
  }
  return &mask_in_place_portable;
}
copy_fn pick_copy() noexcept {
  switch (detected_simd_level()) {
    case simd_level::avx512: return &mask_copy_avx512;
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
WS6455_TARGET_AVX512 std::size_t mask_in_place_avx512(std::byte* data, std::size_t n, const std::byte key[4],
                                                       std::size_t phase) noexcept {
  mask_avx512(data, data, n, key, phase);
  return (phase + n) & 3;
}
WS6455_TARGET_AVX512 void mask_copy_avx512(std::byte* dst, const std::byte* src, std::size_t n,
                                           const std::byte key[4]) noexcept {
  mask_avx512(dst, src, n, key, 0);
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
std::size_t mask_in_place_avx512(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  return mask_in_place_portable(data, n, key, phase);
}
void mask_copy_avx512(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept {
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
