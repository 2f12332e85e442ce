#include "random.hpp"

#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>

namespace ws6455::detail {

void random_bytes(std::span<std::byte> out) noexcept {
  // One RAND_bytes call per 4 KiB instead of per 4-byte key. The pool is per thread:
  // connections are not shared between threads without the caller's own locking.
  thread_local unsigned char pool[4096];
  thread_local std::size_t left = 0;
  std::size_t done = 0;
  while (done < out.size()) {
    if (left == 0) {
      // A CSPRNG failure cannot be answered with predictable keys (§10.3): stop.
      if (RAND_bytes(pool, sizeof pool) != 1) std::abort();
      left = sizeof pool;
    }
    const std::size_t take = std::min(left, out.size() - done);
    std::memcpy(out.data() + done, pool + (sizeof pool - left), take);
    std::memset(pool + (sizeof pool - left), 0, take);  // a used key is not handed out twice
    left -= take;
    done += take;
  }
}

}  // namespace ws6455::detail
