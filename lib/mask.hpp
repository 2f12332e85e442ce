// Masking (RFC 6455 §5.3): payload XOR a 4-byte key, repeating from key byte `phase`.
#pragma once

#include <cstddef>
#include <bit>
#include <cstdint>
#include <cstring>

namespace ws6455::detail {

// XORs `n` bytes in place, starting at key byte `phase` (0..3); returns the phase after them,
// so a frame's payload may be unmasked in pieces of any length (chunked input).
std::size_t mask_in_place(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
// dst[i] = src[i] ^ key[i % 4]; the ranges do not overlap.
void mask_copy(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;

// The byte-at-a-time reference, for tests and benchmarks.
std::size_t mask_in_place_scalar(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;

// The implementations behind mask_in_place / mask_copy, which pick one once by CPU
// features (cpu_features.hpp). Exposed for tests and benchmarks: call the SSE2, AVX2
// and AVX-512 ones only when simd_level_supported() says so (on other architectures they
// forward to the portable one). All are exact for any length, alignment and phase,
// and never touch a byte outside [data, data + n).
std::size_t mask_in_place_portable(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
std::size_t mask_in_place_sse2(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
std::size_t mask_in_place_avx2(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
std::size_t mask_in_place_avx512(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
void mask_copy_portable(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;
void mask_copy_sse2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;
void mask_copy_avx2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;
void mask_copy_avx512(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;

// Small pieces, inline (the frame layer's fast path calls this for tiny frames).
namespace mask_detail {
// The key as a native 32-bit word whose first byte in memory is key[phase & 3].
inline std::uint32_t key32(const std::byte key[4], std::size_t phase) noexcept {
  std::uint32_t k;
  std::memcpy(&k, key, 4);
  const int r = static_cast<int>(8 * (phase & 3));
  if constexpr (std::endian::native == std::endian::little) return std::rotr(k, r);
  else return std::rotl(k, r);
}
inline std::uint64_t key64(const std::byte key[4], std::size_t phase) noexcept {
  const std::uint64_t k = key32(key, phase);
  return k | (k << 32);
}

template <class T>
inline T load(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
inline void store(std::byte* p, T v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

// n <= 16, inline so that tiny frames cost no call: overlapping first and last
// words, both loaded before either is stored.
inline void mask_small(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4],
                       std::size_t phase) noexcept {
  if (n >= 8) {
    const auto a = load<std::uint64_t>(src), b = load<std::uint64_t>(src + n - 8);
    store(dst, a ^ key64(key, phase));
    store(dst + n - 8, b ^ key64(key, phase + n - 8));
  } else if (n >= 4) {
    const auto a = load<std::uint32_t>(src), b = load<std::uint32_t>(src + n - 4);
    store(dst, a ^ key32(key, phase));
    store(dst + n - 4, b ^ key32(key, phase + n - 4));
  } else {
    for (std::size_t i = 0; i < n; ++i) dst[i] = src[i] ^ key[(phase + i) & 3];
  }
}

}  // namespace mask_detail
using mask_detail::key32;
using mask_detail::key64;
using mask_detail::mask_small;

}  // namespace ws6455::detail
