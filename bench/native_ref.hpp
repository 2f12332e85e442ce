// Reference unmask loops compiled with -march=native (bench/meson.build builds
// native_ref.cpp alone with that flag). They are not ws6455's kernels: they show
// what the compiler's auto-vectorizer reaches on plain loops for this very CPU, the
// yardstick for the runtime-dispatched kernels built without -march=native.
#pragma once

#include <cstddef>

namespace bench::native_ref {

// data[i] ^= key[(phase + i) % 4], one byte at a time (the scalar reference's loop).
std::size_t unmask_bytes(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;
// 8-byte words XORed with the key repeated twice, then the remaining bytes: the shape
// of the unmask loop in uWebSockets (whose loop also runs up to 7 bytes past the end;
// this one stops at n).
std::size_t unmask_words(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept;

}  // namespace bench::native_ref
