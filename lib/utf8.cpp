// Incremental UTF-8 validation: a scalar DFA (the reference and the state keeper)
// and SIMD kernels (SSSE3, AVX2, AVX-512BW) picked once at run time.
//
// How the SIMD kernels keep the incremental contract:
//   1. A code point left open by the previous call is finished with the scalar DFA
//      (at most 3 bytes), which also fails fast inside it (F4 90 fails at 90).
//   2. From a code-point boundary the blocks run through the lookup-table algorithm
//      of Keiser & Lemire ("Validating UTF-8 In Less Than One Instruction Per Byte",
//      2021): three 16-entry nibble tables classify each (previous byte, byte) pair,
//      and a saturating-subtract test checks the 3rd/4th continuation bytes. All-ASCII
//      blocks skip the tables. Every error it reports is a byte the DFA rejects too,
//      found at or before that byte, so a block with an error is a rejected call.
//   3. The last full block may end inside a code point; that is not an error yet.
//      We step back to the start of that code point (the last lead byte within the
//      final 3 bytes) and treat the rest, under 36 bytes, as the tail: if it is ASCII,
//      or checks clean in a zero-padded block (padding closes nothing, so a clean
//      padded check means it ends on a boundary), the state is 0. Otherwise (invalid,
//      or an incomplete code point at the end) the scalar DFA runs over the tail and
//      gives the exact verdict and state.
//   The AVX-512 kernel is the same algorithm on 64-byte blocks; its tail is read with
//   zero-filling masked loads instead of a copy into a padded buffer.
#include "utf8.hpp"

#include <atomic>
#include <cstring>

#include "cpu_features.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define WS6455_TARGET_AVX2 __attribute__((target("avx2")))
#define WS6455_TARGET_SSSE3 __attribute__((target("ssse3")))
// Function-level target, not -march: the library stays runnable on any x86-64.
#define WS6455_TARGET_AVX512 __attribute__((target("avx512f,avx512bw")))
#endif

namespace ws6455::detail {

// State layout: bits 0-1 continuation bytes still expected, bits 8-15 the lowest
// and bits 16-23 the highest value allowed for the next byte. The ranges are
// RFC 3629's table: they exclude overlongs (E0 80..9F, F0 80..8F), surrogates
// (ED A0..BF) and code points past U+10FFFF (F4 90..BF), at the second byte.
namespace {
constexpr utf8_state pack(unsigned need, unsigned lo, unsigned hi) { return need | (lo << 8) | (hi << 16); }

inline bool step(utf8_state& s, unsigned b) noexcept {
  if (s == 0) {
    if (b < 0x80) return true;
    if (b < 0xC2) return false;  // stray continuation, or overlong C0/C1
    if (b < 0xE0) { s = pack(1, 0x80, 0xBF); return true; }
    if (b == 0xE0) { s = pack(2, 0xA0, 0xBF); return true; }
    if (b == 0xED) { s = pack(2, 0x80, 0x9F); return true; }
    if (b < 0xF0) { s = pack(2, 0x80, 0xBF); return true; }
    if (b == 0xF0) { s = pack(3, 0x90, 0xBF); return true; }
    if (b < 0xF4) { s = pack(3, 0x80, 0xBF); return true; }
    if (b == 0xF4) { s = pack(3, 0x80, 0x8F); return true; }
    return false;  // F5..FF
  }
  const unsigned lo = (s >> 8) & 0xFF, hi = (s >> 16) & 0xFF;
  if (b < lo || b > hi) return false;
  const unsigned need = (s & 3) - 1;
  s = need == 0 ? 0 : pack(need, 0x80, 0xBF);
  return true;
}

inline bool scalar_run(utf8_state& state, const unsigned char* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (!step(state, p[i])) return false;
  return true;
}

inline bool ascii_words(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t acc = 0;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < n; ++i) acc |= p[i];
  return (acc & 0x8080808080808080ull) == 0;
}

// Finishes a code point carried in from the previous call. Returns the bytes used,
// or n + 1 on failure. Afterwards either state == 0 or all n bytes were used.
inline std::size_t finish_pending(utf8_state& state, const unsigned char* p, std::size_t n) noexcept {
  std::size_t i = 0;
  while (state != 0 && i < n) {
    if (!step(state, p[i])) return n + 1;
    ++i;
  }
  return i;
}

// From a boundary (state 0): word-at-a-time ASCII skipping, DFA otherwise.
bool portable_from_boundary(utf8_state& state, const unsigned char* p, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < n) {
    if (state == 0) {
      while (i + 16 <= n) {
        std::uint64_t a, b;
        std::memcpy(&a, p + i, 8);
        std::memcpy(&b, p + i + 8, 8);
        if ((a | b) & 0x8080808080808080ull) break;
        i += 16;
      }
      if (i == n) break;
    }
    if (!step(state, p[i])) return false;
    ++i;
  }
  return true;
}

// The last boundary at or before `end` (p[0..end) was checked by the block kernel,
// which accepts a code point cut by `end`): steps back over an incomplete one.
inline std::size_t last_boundary(const unsigned char* p, std::size_t end) noexcept {
  for (std::size_t back = 1; back <= 3 && back <= end; ++back) {
    const unsigned b = p[end - back];
    if (b < 0x80) return end;                // ASCII: a boundary follows it
    if (b >= 0xC0) {                         // a lead byte: its length decides
      const std::size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
      return len > back ? end - back : end;  // cut by `end`, or complete
    }
  }
  return end;  // three continuation bytes: the 4-byte sequence before them is complete
}

// Nibble tables of the lookup algorithm. Each bit is one kind of error; a pair of
// bytes is wrong when the three lookups (high and low nibble of the previous byte,
// high nibble of this one) share a bit.
constexpr unsigned char kTooShort = 1 << 0;   // a lead byte, then no continuation
constexpr unsigned char kTooLong = 1 << 1;    // ASCII, then a continuation
constexpr unsigned char kOverlong3 = 1 << 2;  // E0 80..9F
constexpr unsigned char kTooLarge = 1 << 3;   // F4 90..BF, F5..FF 90..BF
constexpr unsigned char kSurrogate = 1 << 4;  // ED A0..BF
constexpr unsigned char kOverlong2 = 1 << 5;  // C0/C1, then a continuation
constexpr unsigned char kTooLarge1000 = 1 << 6;  // F5..FF 80..8F
constexpr unsigned char kOverlong4 = 1 << 6;     // F0 80..8F (shares the bit: low nibble 0 vs 5..F)
constexpr unsigned char kTwoConts = 1 << 7;      // continuation, then continuation (checked below)
constexpr unsigned char kCarry = kTooShort | kTooLong | kTwoConts;

#define WS6455_PREV_HIGH                                                                     \
  kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong,            \
      kTwoConts, kTwoConts, kTwoConts, kTwoConts, kTooShort | kOverlong2, kTooShort,         \
      kTooShort | kOverlong3 | kSurrogate, kTooShort | kTooLarge | kTooLarge1000 | kOverlong4
#define WS6455_PREV_LOW                                                                           \
  kCarry | kOverlong3 | kOverlong2 | kOverlong4, kCarry | kOverlong2, kCarry, kCarry,             \
      kCarry | kTooLarge, kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000, \
      kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000,                     \
      kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000,                     \
      kCarry | kTooLarge | kTooLarge1000, kCarry | kTooLarge | kTooLarge1000,                     \
      kCarry | kTooLarge | kTooLarge1000 | kSurrogate, kCarry | kTooLarge | kTooLarge1000,        \
      kCarry | kTooLarge | kTooLarge1000
#define WS6455_CUR_HIGH                                                                      \
  kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort,    \
      kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge1000 | kOverlong4,           \
      kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge,                            \
      kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge,                            \
      kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge, kTooShort, kTooShort,      \
      kTooShort, kTooShort

constexpr unsigned char kPrevHigh[16] = {WS6455_PREV_HIGH};
constexpr unsigned char kPrevLow[16] = {WS6455_PREV_LOW};
constexpr unsigned char kCurHigh[16] = {WS6455_CUR_HIGH};

#if defined(__x86_64__)
// ---------------------------------------------------------------- SSSE3, 16-byte blocks
struct ssse3_tables {
  __m128i prev_high, prev_low, cur_high, nibble, third, fourth, high_bit;
};

WS6455_TARGET_SSSE3 inline ssse3_tables make_ssse3_tables() noexcept {
  ssse3_tables t;
  t.prev_high = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kPrevHigh));
  t.prev_low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kPrevLow));
  t.cur_high = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kCurHigh));
  t.nibble = _mm_set1_epi8(0x0F);
  t.third = _mm_set1_epi8(static_cast<char>(0xE0 - 0x80));
  t.fourth = _mm_set1_epi8(static_cast<char>(0xF0 - 0x80));
  t.high_bit = _mm_set1_epi8(static_cast<char>(0x80));
  return t;
}

// The error bits of block `in`, whose previous block was `prev`.
WS6455_TARGET_SSSE3 inline __m128i ssse3_block(const ssse3_tables& t, __m128i in, __m128i prev) noexcept {
  const __m128i prev1 = _mm_alignr_epi8(in, prev, 15);
  const __m128i p1_hi = _mm_shuffle_epi8(t.prev_high, _mm_and_si128(_mm_srli_epi16(prev1, 4), t.nibble));
  const __m128i p1_lo = _mm_shuffle_epi8(t.prev_low, _mm_and_si128(prev1, t.nibble));
  const __m128i c_hi = _mm_shuffle_epi8(t.cur_high, _mm_and_si128(_mm_srli_epi16(in, 4), t.nibble));
  const __m128i special = _mm_and_si128(_mm_and_si128(p1_hi, p1_lo), c_hi);
  // Bytes that must be the 3rd or 4th of a sequence (E0+ two back, F0+ three back)
  // must be continuation-after-continuation, the kTwoConts bit, and vice versa.
  const __m128i prev2 = _mm_alignr_epi8(in, prev, 14), prev3 = _mm_alignr_epi8(in, prev, 13);
  const __m128i must = _mm_or_si128(_mm_subs_epu8(prev2, t.third), _mm_subs_epu8(prev3, t.fourth));
  return _mm_xor_si128(_mm_and_si128(must, t.high_bit), special);
}

// A lead byte in the last 3 bytes that its block cannot complete.
WS6455_TARGET_SSSE3 inline __m128i ssse3_incomplete(__m128i in) noexcept {
  const __m128i max = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                    static_cast<char>(0xF0 - 1), static_cast<char>(0xE0 - 1),
                                    static_cast<char>(0xC0 - 1));
  return _mm_subs_epu8(in, max);
}

WS6455_TARGET_SSSE3 bool ssse3_from_boundary(utf8_state& state, const unsigned char* p, std::size_t n) noexcept {
  const ssse3_tables t = make_ssse3_tables();
  __m128i error = _mm_setzero_si128(), prev = _mm_setzero_si128(), prev_incomplete = _mm_setzero_si128();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 48));
    if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) == 0) {
      error = _mm_or_si128(error, prev_incomplete);
    } else {
      error = _mm_or_si128(error, ssse3_block(t, a, prev));
      error = _mm_or_si128(error, ssse3_block(t, b, a));
      error = _mm_or_si128(error, ssse3_block(t, c, b));
      error = _mm_or_si128(error, ssse3_block(t, d, c));
      prev_incomplete = ssse3_incomplete(d);
      prev = d;
    }
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(error, _mm_setzero_si128())) != 0xFFFF) return false;
  }
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    if (_mm_movemask_epi8(a) == 0) {
      error = _mm_or_si128(error, prev_incomplete);
    } else {
      error = _mm_or_si128(error, ssse3_block(t, a, prev));
      prev_incomplete = ssse3_incomplete(a);
      prev = a;
    }
  }
  if (_mm_movemask_epi8(_mm_cmpeq_epi8(error, _mm_setzero_si128())) != 0xFFFF) return false;
  // The tail: under 16 + 3 bytes from the last boundary.
  const std::size_t k = last_boundary(p, i);
  const std::size_t rest = n - k;
  state = 0;
  if (rest == 0 || ascii_words(p + k, rest)) return true;
  alignas(16) unsigned char buf[32] = {};
  std::memcpy(buf, p + k, rest);
  const __m128i a = _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
  const __m128i b = _mm_load_si128(reinterpret_cast<const __m128i*>(buf + 16));
  const __m128i e = _mm_or_si128(ssse3_block(t, a, _mm_setzero_si128()), ssse3_block(t, b, a));
  if (_mm_movemask_epi8(_mm_cmpeq_epi8(e, _mm_setzero_si128())) == 0xFFFF) return true;
  return scalar_run(state, p + k, rest);
}

// ---------------------------------------------------------------- AVX2, 32-byte blocks
struct avx2_tables {
  __m256i prev_high, prev_low, cur_high, nibble, third, fourth, high_bit;
};

WS6455_TARGET_AVX2 inline avx2_tables make_avx2_tables() noexcept {
  avx2_tables t;
  t.prev_high = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kPrevHigh)));
  t.prev_low = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kPrevLow)));
  t.cur_high = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kCurHigh)));
  t.nibble = _mm256_set1_epi8(0x0F);
  t.third = _mm256_set1_epi8(static_cast<char>(0xE0 - 0x80));
  t.fourth = _mm256_set1_epi8(static_cast<char>(0xF0 - 0x80));
  t.high_bit = _mm256_set1_epi8(static_cast<char>(0x80));
  return t;
}

// `in` shifted right by N bytes across the lane boundary, with `prev`'s last N bytes in front.
template <int N>
WS6455_TARGET_AVX2 inline __m256i avx2_prev(__m256i in, __m256i prev) noexcept {
  return _mm256_alignr_epi8(in, _mm256_permute2x128_si256(prev, in, 0x21), 16 - N);
}

WS6455_TARGET_AVX2 inline __m256i avx2_block(const avx2_tables& t, __m256i in, __m256i prev) noexcept {
  const __m256i prev1 = avx2_prev<1>(in, prev);
  const __m256i p1_hi = _mm256_shuffle_epi8(t.prev_high, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), t.nibble));
  const __m256i p1_lo = _mm256_shuffle_epi8(t.prev_low, _mm256_and_si256(prev1, t.nibble));
  const __m256i c_hi = _mm256_shuffle_epi8(t.cur_high, _mm256_and_si256(_mm256_srli_epi16(in, 4), t.nibble));
  const __m256i special = _mm256_and_si256(_mm256_and_si256(p1_hi, p1_lo), c_hi);
  const __m256i prev2 = avx2_prev<2>(in, prev), prev3 = avx2_prev<3>(in, prev);
  const __m256i must = _mm256_or_si256(_mm256_subs_epu8(prev2, t.third), _mm256_subs_epu8(prev3, t.fourth));
  return _mm256_xor_si256(_mm256_and_si256(must, t.high_bit), special);
}

WS6455_TARGET_AVX2 inline __m256i avx2_incomplete(__m256i in) noexcept {
  const __m256i max = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                       -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                       static_cast<char>(0xF0 - 1), static_cast<char>(0xE0 - 1),
                                       static_cast<char>(0xC0 - 1));
  return _mm256_subs_epu8(in, max);
}

WS6455_TARGET_AVX2 bool avx2_from_boundary(utf8_state& state, const unsigned char* p, std::size_t n) noexcept {
  const avx2_tables t = make_avx2_tables();
  __m256i error = _mm256_setzero_si256(), prev = _mm256_setzero_si256(),
          prev_incomplete = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32));
    if (_mm256_movemask_epi8(_mm256_or_si256(a, b)) == 0) {
      error = _mm256_or_si256(error, prev_incomplete);
    } else {
      error = _mm256_or_si256(error, _mm256_or_si256(avx2_block(t, a, prev), avx2_block(t, b, a)));
      prev_incomplete = avx2_incomplete(b);
      prev = b;
    }
    if (!_mm256_testz_si256(error, error)) return false;  // fail fast, per 64 bytes
  }
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    if (_mm256_movemask_epi8(a) == 0) {
      error = _mm256_or_si256(error, prev_incomplete);
    } else {
      error = _mm256_or_si256(error, avx2_block(t, a, prev));
      prev_incomplete = avx2_incomplete(a);
      prev = a;
    }
  }
  if (!_mm256_testz_si256(error, error)) return false;
  // The tail: under 32 + 3 bytes from the last boundary.
  const std::size_t k = last_boundary(p, i);
  const std::size_t rest = n - k;
  state = 0;
  if (rest == 0 || ascii_words(p + k, rest)) return true;
  alignas(32) unsigned char buf[64] = {};
  std::memcpy(buf, p + k, rest);
  const __m256i a = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
  __m256i e = avx2_block(t, a, _mm256_setzero_si256());
  if (rest > 32) {
    const __m256i b = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf + 32));
    e = _mm256_or_si256(e, avx2_block(t, b, a));
  } else {
    // The zero after the data is in the next block: check that its first byte
    // does not follow an open sequence (the 1-3 bytes cut by the block end).
    e = _mm256_or_si256(e, avx2_incomplete(a));
  }
  if (_mm256_testz_si256(e, e)) return true;
  return scalar_run(state, p + k, rest);
}

// ---------------------------------------------------------------- AVX-512BW, 64-byte blocks
struct avx512_tables {
  __m512i prev_high, prev_low, cur_high, nibble, third, fourth, high_bit, incomplete_max;
};

// The largest byte that is not an incomplete lead at each position of a block's end:
// F0+ three bytes before the end, E0+ two before, C0+ at the last byte.
constexpr unsigned char kIncompleteMax[64] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0 - 1, 0xE0 - 1, 0xC0 - 1};

// The nibble tables once per 128-bit lane (vpshufb looks up within each lane). Loaded
// whole rather than by _mm512_broadcast_i32x4 or the unmasked valignq, whose GCC 12
// headers trip -Wuninitialized (_mm512_undefined_epi32, GCC PR 105593).
constexpr unsigned char kPrevHigh4[64] = {WS6455_PREV_HIGH, WS6455_PREV_HIGH, WS6455_PREV_HIGH, WS6455_PREV_HIGH};
constexpr unsigned char kPrevLow4[64] = {WS6455_PREV_LOW, WS6455_PREV_LOW, WS6455_PREV_LOW, WS6455_PREV_LOW};
constexpr unsigned char kCurHigh4[64] = {WS6455_CUR_HIGH, WS6455_CUR_HIGH, WS6455_CUR_HIGH, WS6455_CUR_HIGH};

WS6455_TARGET_AVX512 inline avx512_tables make_avx512_tables() noexcept {
  avx512_tables t;
  t.prev_high = _mm512_loadu_si512(kPrevHigh4);
  t.prev_low = _mm512_loadu_si512(kPrevLow4);
  t.cur_high = _mm512_loadu_si512(kCurHigh4);
  t.nibble = _mm512_set1_epi8(0x0F);
  t.third = _mm512_set1_epi8(static_cast<char>(0xE0 - 0x80));
  t.fourth = _mm512_set1_epi8(static_cast<char>(0xF0 - 0x80));
  t.high_bit = _mm512_set1_epi8(static_cast<char>(0x80));
  t.incomplete_max = _mm512_loadu_si512(kIncompleteMax);
  return t;
}

// `in` shifted right by N bytes across the 128-bit lanes, with `prev`'s last N bytes in
// front. valignq by 6 qwords gives [prev lane 3, in lanes 0-2]; the per-lane palignr
// then takes each lane's last N bytes from the lane before it. (maskz with all lanes
// is plain valignq; see make_avx512_tables for why not _mm512_alignr_epi64.)
template <int N>
WS6455_TARGET_AVX512 inline __m512i avx512_prev(__m512i in, __m512i prev) noexcept {
  return _mm512_alignr_epi8(in, _mm512_maskz_alignr_epi64(static_cast<__mmask8>(0xFF), in, prev, 6), 16 - N);
}

WS6455_TARGET_AVX512 inline __m512i avx512_block(const avx512_tables& t, __m512i in, __m512i prev) noexcept {
  const __m512i prev1 = avx512_prev<1>(in, prev);
  const __m512i p1_hi = _mm512_shuffle_epi8(t.prev_high, _mm512_and_si512(_mm512_srli_epi16(prev1, 4), t.nibble));
  const __m512i p1_lo = _mm512_shuffle_epi8(t.prev_low, _mm512_and_si512(prev1, t.nibble));
  const __m512i c_hi = _mm512_shuffle_epi8(t.cur_high, _mm512_and_si512(_mm512_srli_epi16(in, 4), t.nibble));
  const __m512i special = _mm512_ternarylogic_epi32(p1_hi, p1_lo, c_hi, 0x80);  // a & b & c
  const __m512i prev2 = avx512_prev<2>(in, prev), prev3 = avx512_prev<3>(in, prev);
  const __m512i must = _mm512_or_si512(_mm512_subs_epu8(prev2, t.third), _mm512_subs_epu8(prev3, t.fourth));
  return _mm512_ternarylogic_epi32(must, t.high_bit, special, 0x6A);  // (must & high_bit) ^ special
}

WS6455_TARGET_AVX512 inline __m512i avx512_incomplete(const avx512_tables& t, __m512i in) noexcept {
  return _mm512_subs_epu8(in, t.incomplete_max);
}

WS6455_TARGET_AVX512 inline bool avx512_nonzero(__m512i v) noexcept { return _mm512_test_epi64_mask(v, v) != 0; }
WS6455_TARGET_AVX512 inline __mmask64 avx512_first_bytes(std::size_t n) noexcept {  // lanes [0, n), n <= 64
  return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
}

WS6455_TARGET_AVX512 bool avx512_from_boundary(utf8_state& state, const unsigned char* p, std::size_t n) noexcept {
  const avx512_tables t = make_avx512_tables();
  __m512i error = _mm512_setzero_si512(), prev = _mm512_setzero_si512(), prev_incomplete = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    const __m512i a = _mm512_loadu_si512(p + i);
    const __m512i b = _mm512_loadu_si512(p + i + 64);
    if (_mm512_movepi8_mask(_mm512_or_si512(a, b)) == 0) {  // ASCII: only a carried lead can be wrong
      error = _mm512_or_si512(error, prev_incomplete);
    } else {
      error = _mm512_ternarylogic_epi32(error, avx512_block(t, a, prev), avx512_block(t, b, a), 0xFE);  // a | b | c
      prev_incomplete = avx512_incomplete(t, b);
      prev = b;
    }
    if (avx512_nonzero(error)) return false;  // fail fast, per 128 bytes
  }
  for (; i + 64 <= n; i += 64) {
    const __m512i a = _mm512_loadu_si512(p + i);
    if (_mm512_movepi8_mask(a) == 0) {
      error = _mm512_or_si512(error, prev_incomplete);
    } else {
      error = _mm512_or_si512(error, avx512_block(t, a, prev));
      prev_incomplete = avx512_incomplete(t, a);
      prev = a;
    }
  }
  if (avx512_nonzero(error)) return false;
  // The tail: under 64 + 3 bytes from the last boundary, read by zero-filling masked
  // loads (no byte past p + n is read; the zeros close nothing, as in the padded copy).
  const std::size_t k = last_boundary(p, i);
  const std::size_t rest = n - k;
  state = 0;
  if (rest == 0) return true;
  const __m512i a = _mm512_maskz_loadu_epi8(avx512_first_bytes(rest), p + k);
  const __m512i b = rest > 64 ? _mm512_maskz_loadu_epi8(avx512_first_bytes(rest - 64), p + k + 64)
                              : _mm512_setzero_si512();
  if (_mm512_movepi8_mask(_mm512_or_si512(a, b)) == 0) return true;
  __m512i e = avx512_block(t, a, _mm512_setzero_si512());
  // A full first block has no zero after it inside `a`: its end is checked by `b`
  // (rest > 64) or, when rest == 64, by the incomplete-lead test.
  e = _mm512_or_si512(e, rest > 64 ? avx512_block(t, b, a) : avx512_incomplete(t, a));
  if (!avx512_nonzero(e)) return true;
  return scalar_run(state, p + k, rest);
}
#endif

using kernel_fn = bool (*)(utf8_state&, const unsigned char*, std::size_t) noexcept;

kernel_fn pick_kernel() noexcept {
#if defined(__x86_64__)
  switch (detected_simd_level()) {
    case simd_level::avx512: return &avx512_from_boundary;
    case simd_level::avx2: return &avx2_from_boundary;
    case simd_level::ssse3: return &ssse3_from_boundary;
    case simd_level::sse2:
    case simd_level::portable: break;
  }
#endif
  return &portable_from_boundary;
}

bool resolve_kernel(utf8_state& s, const unsigned char* p, std::size_t n) noexcept;
constinit std::atomic<kernel_fn> g_kernel{&resolve_kernel};

bool resolve_kernel(utf8_state& s, const unsigned char* p, std::size_t n) noexcept {
  const kernel_fn f = pick_kernel();
  g_kernel.store(f, std::memory_order_relaxed);
  return f(s, p, n);
}

inline const unsigned char* bytes(const std::byte* p) noexcept { return reinterpret_cast<const unsigned char*>(p); }

// The contract shared by every implementation: finish a carried code point, then the kernel.
template <kernel_fn Kernel>
inline bool validate_with(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  const unsigned char* s = bytes(p);
  const std::size_t i = state == 0 ? 0 : finish_pending(state, s, n);
  if (i > n) return false;
  if (i == n) return true;
  return Kernel(state, s + i, n - i);
}

}  // namespace

bool utf8_validate_scalar(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  return scalar_run(state, bytes(p), n);
}

bool utf8_validate_portable(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  return validate_with<&portable_from_boundary>(state, p, n);
}

#if defined(__x86_64__)
bool utf8_validate_ssse3(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  return validate_with<&ssse3_from_boundary>(state, p, n);
}
bool utf8_validate_avx2(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  return validate_with<&avx2_from_boundary>(state, p, n);
}
bool utf8_validate_avx512(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  return validate_with<&avx512_from_boundary>(state, p, n);
}
#else
bool utf8_validate_ssse3(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  return utf8_validate_portable(state, p, n);
}
bool utf8_validate_avx2(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  return utf8_validate_portable(state, p, n);
}
bool utf8_validate_avx512(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  return utf8_validate_portable(state, p, n);
}
#endif

bool utf8_validate(utf8_state& state, const std::byte* p, std::size_t n) noexcept {
  const unsigned char* s = bytes(p);
  std::size_t i = 0;
  if (state != 0) {
    i = finish_pending(state, s, n);
    if (i > n) return false;
    if (i == n) return true;
  }
  if (n - i < 16) return portable_from_boundary(state, s + i, n - i);  // short: no indirect call
  return g_kernel.load(std::memory_order_relaxed)(state, s + i, n - i);
}

}  // namespace ws6455::detail
