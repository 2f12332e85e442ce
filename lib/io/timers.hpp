// What every socket backend shares: the clock and the
// deadline heap. The core reads no clock; the adapter does.
#pragma once

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <limits>
#include <vector>

namespace ws6455::io::detail {

inline constexpr std::int64_t no_deadline = std::numeric_limits<std::int64_t>::max();

// Milliseconds of CLOCK_MONOTONIC: immune to wall-clock jumps (NTP, date -s).
inline std::int64_t monotonic_ms() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// A min-heap of (deadline, slot, stamp). Entries are never removed from the middle:
// a connection that needs an *earlier* wake-up pushes a new entry with a new stamp,
// and the older entry is recognised as stale when it surfaces (its stamp no longer
// matches). A connection whose deadline moves *later* (it received data) does not
// touch the heap at all: its entry fires, the owner recomputes and re-arms. So the
// heap holds about one entry per connection and the steady state costs no push
// per message.
class deadline_heap {
 public:
  struct entry {
    std::int64_t at;
    std::uint32_t slot;
    std::uint32_t stamp;
  };

  void push(entry e) {
    heap_.push_back(e);
    std::push_heap(heap_.begin(), heap_.end(), later);
  }
  bool empty() const noexcept { return heap_.empty(); }
  std::int64_t next() const noexcept { return heap_.empty() ? no_deadline : heap_.front().at; }
  entry pop() {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    const entry e = heap_.back();
    heap_.pop_back();
    return e;
  }
  void reserve(std::size_t n) { heap_.reserve(n); }

 private:
  static bool later(const entry& a, const entry& b) noexcept { return a.at > b.at; }
  std::vector<entry> heap_;
};

// The wait timeout for a deadline: rounded up, so that we never wake a
// millisecond early and spin; -1 (block) without a deadline.
inline int wait_timeout_ms(std::int64_t deadline, std::int64_t now) noexcept {
  if (deadline == no_deadline) return -1;
  if (deadline <= now) return 0;
  const std::int64_t d = deadline - now;
  return d > 3'600'000 ? 3'600'000 : static_cast<int>(d);
}

}  // namespace ws6455::io::detail
