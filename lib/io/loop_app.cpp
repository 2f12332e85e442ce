// Application work on a loop: descriptors to watch and timers, for code that
// shares the loop with the WebSockets (a Redis or database client's asynchronous
// API, the way hiredis' libevent and libuv adapters drive it).
//
// The descriptors go into an epoll set of the loop's own, and that one descriptor
// is what the backend watches (epoll: in its set; io_uring: a multishot poll), so
// both backends serve them with the same code. Level-triggered: a callback that
// reads only part of what is there is called again; a bounded number of rounds per
// wake-up keeps the connections served meanwhile.
#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "io/loop.hpp"

namespace ws6455::io::detail {

namespace {
constexpr int app_rounds = 16;  // epoll_wait rounds per wake-up before yielding to the connections
constexpr int app_timers_per_pass = 1024;

std::uint32_t epoll_events_of(unsigned events) noexcept {
  std::uint32_t e = 0;
  if (events & io::readable) e |= EPOLLIN;
  if (events & io::writable) e |= EPOLLOUT;
  return e;
}
}  // namespace

std::uint64_t loop::add_watch(int fd, unsigned events, std::function<void(unsigned)> on_ready) {
  if (app_epfd_ < 0) {
    app_epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (app_epfd_ < 0) return 0;
    if (be_) be_->add_app_fd(app_epfd_);  // else start_backend adds it
  }
  const std::uint64_t id = (static_cast<std::uint64_t>(index_) << 56) | ++app_seq_;
  if (events != 0) {
    epoll_event ev{};
    ev.events = epoll_events_of(events);
    ev.data.u64 = id;
    if (epoll_ctl(app_epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) return 0;
  }
  watches_.emplace(id, app_watch{fd, events, std::move(on_ready)});
  return id;
}

bool loop::set_watch(std::uint64_t id, unsigned events) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return false;
  app_watch& w = it->second;
  if (events == w.events) return true;
  epoll_event ev{};
  ev.events = epoll_events_of(events);
  ev.data.u64 = id;
  int r = 0;
  // Without interest the descriptor leaves the set: epoll reports a hang-up even to
  // an empty interest set, and level-triggered that would never stop.
  if (events == 0) r = epoll_ctl(app_epfd_, EPOLL_CTL_DEL, w.fd, nullptr);
  else if (w.events == 0) r = epoll_ctl(app_epfd_, EPOLL_CTL_ADD, w.fd, &ev);
  else r = epoll_ctl(app_epfd_, EPOLL_CTL_MOD, w.fd, &ev);
  if (r != 0) return false;
  w.events = events;
  return true;
}

void loop::remove_watch(std::uint64_t id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  // EBADF when the owner closed the descriptor first (then the kernel removed it).
  if (it->second.events != 0) epoll_ctl(app_epfd_, EPOLL_CTL_DEL, it->second.fd, nullptr);
  watches_.erase(it);
}

void loop::on_app_ready() {
  app_again_ = false;
  if (app_epfd_ < 0) return;
  std::array<epoll_event, 64> ready{};
  for (int round = 0; round < app_rounds; ++round) {
    const int n = epoll_wait(app_epfd_, ready.data(), static_cast<int>(ready.size()), 0);
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) {
      const std::uint64_t id = ready[i].data.u64;  // a copy: epoll_event is packed
      auto it = watches_.find(id);
      if (it == watches_.end()) continue;  // removed by an earlier callback of this round
      const std::uint32_t e = ready[i].events;
      unsigned what = 0;
      if (e & EPOLLIN) what |= io::readable;
      if (e & EPOLLOUT) what |= io::writable;
      // An error or a hang-up: the owner's own read or write will find out which.
      if (e & (EPOLLERR | EPOLLHUP)) what |= it->second.events;
      what &= it->second.events;
      if (what == 0) continue;
      auto on_ready = it->second.on_ready;  // a copy: the callback may remove its watch
      on_ready(what);
    }
  }
  app_again_ = true;  // still ready: the loop comes back without blocking
}

std::uint64_t loop::add_app_timer(std::int64_t delay_ms, std::function<void()> fn) {
  const std::uint64_t id = (static_cast<std::uint64_t>(index_) << 56) | ++app_seq_;
  const std::int64_t at = monotonic_ms() + std::max<std::int64_t>(delay_ms, 0);
  app_timers_.emplace(std::make_pair(at, id), std::move(fn));
  app_timer_at_.emplace(id, at);
  return id;
}

void loop::cancel_app_timer(std::uint64_t id) {
  auto it = app_timer_at_.find(id);
  if (it == app_timer_at_.end()) return;
  app_timers_.erase({it->second, id});
  app_timer_at_.erase(it);
}

std::int64_t loop::next_app_deadline() const noexcept {
  if (app_again_) return now_;
  return app_timers_.empty() ? no_deadline : app_timers_.begin()->first.first;
}

void loop::run_app_timers() {
  if (app_again_) on_app_ready();
  // Bounded: a timer that re-arms itself with no delay cannot hold the loop.
  for (int n = 0; n < app_timers_per_pass && !app_timers_.empty(); ++n) {
    auto first = app_timers_.begin();
    if (first->first.first > now_) break;
    std::function<void()> fn = std::move(first->second);
    app_timer_at_.erase(first->first.second);
    app_timers_.erase(first);
    fn();
  }
}

}  // namespace ws6455::io::detail
