// Connection slots in chunks: stable addresses (a slot never moves while the
// backend or a callback holds it) without one allocation, and its header, per
// connection.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace ws6455::io::detail {

template <class T, std::size_t ChunkSize = 256>
class slab {
 public:
  std::size_t size() const noexcept { return size_; }
  T& operator[](std::size_t i) noexcept { return chunks_[i / ChunkSize][i % ChunkSize]; }
  const T& operator[](std::size_t i) const noexcept { return chunks_[i / ChunkSize][i % ChunkSize]; }
  // A new default-constructed slot at the end.
  T& grow() {
    if (size_ % ChunkSize == 0) chunks_.push_back(std::make_unique<T[]>(ChunkSize));
    return (*this)[size_++];
  }

 private:
  std::vector<std::unique_ptr<T[]>> chunks_;
  std::size_t size_ = 0;
};

}  // namespace ws6455::io::detail
