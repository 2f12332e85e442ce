#include "random.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ws6455::detail {

namespace {

// One RAND_bytes call per 4 KiB instead of one per 4-byte key (RAND_bytes costs
// ~100x more per call than a copy from the pool).
//
// The pool must not survive fork(): a child that inherits it hands out the same
// Sec-WebSocket-Key values and masking keys as its parent, and RFC 6455 §10.3
// requires masks the peer cannot predict. The pool lives in a page marked
// MADV_WIPEONFORK (Linux 4.14+): the kernel gives a child zeroes there, so `left`
// reads 0 in the child and it refills from RAND_bytes, which OpenSSL reseeds after
// a fork. This holds for every kind of fork (fork, _Fork, clone without CLONE_VM),
// unlike pthread_atfork, and costs nothing per key, unlike a getpid() check.
// Where the page cannot be had, every call goes to RAND_bytes directly.
struct pool {
  std::size_t left;  // unused bytes, at the end of `bytes`
  unsigned char bytes[4096 - sizeof(std::size_t)];
};

// Per thread: connections are not shared between threads without the caller's own
// locking. A trivial thread_local, so the hot path has no TLS-init guard.
thread_local pool* tl_pool = nullptr;
thread_local bool tl_pool_tried = false;

[[noreturn]] void csprng_failure() noexcept {
  // A CSPRNG failure cannot be answered with predictable keys (§10.3): stop.
  std::abort();
}

pool* make_pool() noexcept {
#if defined(__linux__) && defined(MADV_WIPEONFORK)
  void* p = ::mmap(nullptr, sizeof(pool), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (::madvise(p, sizeof(pool), MADV_WIPEONFORK) != 0) {  // EINVAL before Linux 4.14
    ::munmap(p, sizeof(pool));
    return nullptr;
  }
  return static_cast<pool*>(p);  // zero-filled: left == 0
#else
  return nullptr;
#endif
}

void free_pool(pool* p) noexcept {
#if defined(__linux__) && defined(MADV_WIPEONFORK)
  ::munmap(p, sizeof(pool));
#else
  (void)p;
#endif
}

// Unmaps the thread's pool when the thread ends.
struct pool_owner {
  pool_owner() = default;
  pool_owner(const pool_owner&) = delete;
  pool_owner& operator=(const pool_owner&) = delete;
  ~pool_owner() {
    if (tl_pool) free_pool(tl_pool);
    tl_pool = nullptr;  // a later call (another thread_local's destructor) goes direct
  }
};

void random_bytes_slow(std::span<std::byte> out) noexcept {
  if (!tl_pool && !tl_pool_tried) {
    tl_pool_tried = true;
    tl_pool = make_pool();
    if (tl_pool) {
      thread_local pool_owner owner;  // registered only by the thread's first call
      (void)owner;
    }
  }
  pool* p = tl_pool;
  if (!p) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size())) != 1)
      csprng_failure();
    return;
  }
  std::size_t done = 0;
  while (done < out.size()) {
    if (p->left == 0) {
      if (RAND_bytes(p->bytes, sizeof p->bytes) != 1) csprng_failure();
      p->left = sizeof p->bytes;
    }
    const std::size_t take = std::min(p->left, out.size() - done);
    unsigned char* from = p->bytes + (sizeof p->bytes - p->left);
    std::memcpy(out.data() + done, from, take);
    std::memset(from, 0, take);  // a used key is not handed out twice, nor left in memory
    p->left -= take;
    done += take;
  }
}

}  // namespace

void random_bytes(std::span<std::byte> out) noexcept {
  // The common case, a masking key from a pool that has enough: one copy.
  pool* p = tl_pool;
  if (p && out.size() <= p->left) {
    unsigned char* from = p->bytes + (sizeof p->bytes - p->left);
    std::memcpy(out.data(), from, out.size());
    std::memset(from, 0, out.size());
    p->left -= out.size();
    return;
  }
  random_bytes_slow(out);
}

}  // namespace ws6455::detail
