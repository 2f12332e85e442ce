// Incremental, fail-fast UTF-8 validation (RFC 3629 §4, as RFC 6455 §8.1 requires).
//
// The state carries a code point split across chunks, frames or feeds. Validation
// fails at the first byte that cannot continue a valid sequence: 0xF4 0x90 fails
// at 0x90, not at the end of the code point or the message.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ws6455::detail {

// 0 means "between code points". Other values encode how many continuation
// bytes are still expected and the range allowed for the next one.
using utf8_state = std::uint32_t;

// Validates `n` more bytes. Returns false at the first invalid byte (the state is then
// meaningless). A message is valid when every piece passed and the final state is 0.
bool utf8_validate(utf8_state& state, const std::byte* p, std::size_t n) noexcept;
inline bool utf8_complete(utf8_state state) noexcept { return state == 0; }

// The byte-at-a-time reference, for tests and benchmarks.
bool utf8_validate_scalar(utf8_state& state, const std::byte* p, std::size_t n) noexcept;

// The implementations behind utf8_validate, which picks one once by CPU features
// (cpu_features.hpp). Exposed for tests and benchmarks; each has utf8_validate's
// exact contract (same verdict, same end state as the scalar reference for every
// input and every split). Call the SSSE3, AVX2 and AVX-512 ones only when
// simd_level_supported() says so; elsewhere they forward to the portable one.
//   portable: 8-byte-word ASCII fast path, scalar DFA otherwise;
//   ssse3 / avx2 / avx512: the lookup-table validator (Keiser & Lemire 2021) on
//     16 / 32 / 64-byte blocks with an ASCII fast path (avx512: AVX-512F + BW, masked
//     loads for the tail); the scalar DFA finishes a code point carried
//     in from the previous call and settles the state of an incomplete or invalid tail.
bool utf8_validate_portable(utf8_state& state, const std::byte* p, std::size_t n) noexcept;
bool utf8_validate_ssse3(utf8_state& state, const std::byte* p, std::size_t n) noexcept;
bool utf8_validate_avx2(utf8_state& state, const std::byte* p, std::size_t n) noexcept;
bool utf8_validate_avx512(utf8_state& state, const std::byte* p, std::size_t n) noexcept;

}  // namespace ws6455::detail
