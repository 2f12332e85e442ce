// See native_ref.hpp. Built with -march=native: GCC vectorizes both loops with the
// widest vectors this CPU has (AVX-512 on the bench machine).
#include "native_ref.hpp"

#include <cstdint>
#include <cstring>

namespace bench::native_ref {

std::size_t unmask_bytes(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  for (std::size_t i = 0; i < n; ++i) data[i] ^= key[(phase + i) & 3];
  return (phase + n) & 3;
}

std::size_t unmask_words(std::byte* data, std::size_t n, const std::byte key[4], std::size_t phase) noexcept {
  unsigned char k8[8];
  for (std::size_t i = 0; i < 8; ++i) k8[i] = static_cast<unsigned char>(key[(phase + i) & 3]);
  std::uint64_t k;
  std::memcpy(&k, k8, 8);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, data + i, 8);
    w ^= k;
    std::memcpy(data + i, &w, 8);
  }
  for (; i < n; ++i) data[i] ^= key[(phase + i) & 3];
  return (phase + n) & 3;
}

}  // namespace bench::native_ref
