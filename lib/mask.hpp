// Masking (RFC 6455 §5.3): payload XOR a 4-byte key, repeating from key byte `phase`.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ws6455::detail {

// XORs `n` bytes in place, starting at key byte `phase` (0..3); returns the phase after them,
// so a frame's payload may be unmasked in pieces of any length (chunked input).
std::size_t mask_in_place(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
// dst[i] = src[i] ^ key[i % 4]; the ranges do not overlap.
void mask_copy(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;

// The byte-at-a-time reference, for tests and benchmarks.
std::size_t mask_in_place_scalar(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;

// The implementations behind mask_in_place / mask_copy, which pick one once by CPU
// features (cpu_features.hpp). Exposed for tests and benchmarks: call the SSE2 and
// AVX2 ones only when simd_level_supported() says so (on other architectures they
// forward to the portable one). All are exact for any length, alignment and phase,
// and never touch a byte outside [data, data + n).
std::size_t mask_in_place_portable(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
std::size_t mask_in_place_sse2(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
std::size_t mask_in_place_avx2(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
void mask_copy_portable(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;
void mask_copy_sse2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;
void mask_copy_avx2(std::byte* dst, const std::byte* src, std::size_t n, const std::byte key[4]) noexcept;

}  // namespace ws6455::detail
