// Runtime CPU feature detection for the SIMD kernels (masking, UTF-8).
//
// The library is built for the baseline ISA (x86-64 means SSE2); the SSSE3, AVX2
// and AVX-512 kernels are compiled with __attribute__((target(...))) (never
// -march=native) and picked once at run time. Other architectures use the
// portable word-at-a-time code.
#pragma once

#include <cstdint>

namespace ws6455::detail {

enum class simd_level : std::uint8_t {
  portable = 0,  // 8-byte words through memcpy; any architecture
  sse2 = 1,      // x86-64 baseline
  ssse3 = 2,     // pshufb: enables the lookup-table UTF-8 validator on 16-byte blocks
  avx2 = 3,      // 32-byte blocks
  avx512 = 4,    // AVX-512F + BW, with the OS saving ZMM/opmask state: 64-byte blocks, masked tails
};

// The best level this CPU supports (x86-64: by cpuid; elsewhere: portable).
// WS6455_SIMD=portable|sse2|ssse3|avx2|avx512 in the environment caps it (benchmarks, bisecting).
simd_level detected_simd_level() noexcept;

inline const char* to_string(simd_level l) noexcept {
  switch (l) {
    case simd_level::portable: return "portable";
    case simd_level::sse2: return "sse2";
    case simd_level::ssse3: return "ssse3";
    case simd_level::avx2: return "avx2";
    case simd_level::avx512: return "avx512";
  }
  return "?";
}

inline bool simd_level_supported(simd_level l) noexcept { return l <= detected_simd_level(); }

}  // namespace ws6455::detail
