// The epoll backend: readiness, then recv/sendmsg.
//
// Level-triggered: a readable connection is read once per wake-up (one recv into
// the loop's shared buffer), which keeps the loop fair between connections without
// an edge-triggered "read until EAGAIN" loop. EPOLLIN is in the interest set only
// while the driver wants to read; EPOLLOUT only while a write is blocked (or a
// connect is in progress).
#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "io/loop.hpp"

namespace ws6455::io::detail {

namespace {

constexpr int max_events = 256;
// Accepts per listening-socket wake-up: enough that a loop busy with traffic still
// empties a connect storm's backlog (each loop iteration may take milliseconds), few
// enough that it cannot starve the connections already open.
constexpr int accepts_per_wake = 512;
// Tags in epoll data for what is not a connection (connections carry their slot).
constexpr std::uint64_t wake_tag = ~std::uint64_t{0};
constexpr std::uint64_t app_tag = ~std::uint64_t{0} - 1;
constexpr std::uint64_t listen_tag_base = ~std::uint64_t{0} - 1024;  // + index of the listener

constexpr std::uint8_t registered = 1;  // in the epoll set
constexpr std::uint8_t connecting = 2;  // EPOLLOUT means the connect finished

class epoll_backend final : public backend_base {
 public:
  explicit epoll_backend(loop& l, int epfd) : loop_(l), epfd_(epfd) {}
  ~epoll_backend() override { ::close(epfd_); }

  io::backend kind() const noexcept override { return io::backend::epoll; }

  void add_listener(int fd) override {
    listeners_.push_back(fd);
    if (!accept_paused_) watch_listener(listeners_.size() - 1, EPOLL_CTL_ADD);
  }

  void pause_accepting(bool paused) override {
    if (paused == accept_paused_) return;
    accept_paused_ = paused;
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      if (paused) epoll_ctl(epfd_, EPOLL_CTL_DEL, listeners_[i], nullptr);
      else watch_listener(i, EPOLL_CTL_ADD);
    }
  }

  void add_wakeup(int fd) override {
    wake_fd_ = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = wake_tag;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void add_app_fd(int fd) override {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = app_tag;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void attach(conn& c) override {
    c.bflags &= static_cast<std::uint8_t>(~connecting);
    update(c);
  }

  void start_connect(conn& c, const sockaddr* addr, socklen_t len) override {
    c.bflags = 0;
    c.bdata = 0;
    if (::connect(c.fd, addr, len) != 0 && errno != EINPROGRESS) return loop_.on_connected(c, errno);
    c.bflags |= connecting;
    update(c);
  }

  void set_reading(conn& c, bool) override { update(c); }

  ssize_t write(conn& c, const iovec* iov, int n) override {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<std::size_t>(n);
    for (;;) {
      const ssize_t w = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL);  // no SIGPIPE on a closed peer
      if (w >= 0) return w;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
      // Blocked: the driver sets c.writing; wait for EPOLLOUT.
      c.writing = true;
      update(c);
      return write_blocked;
    }
  }

  bool release(conn& c) override {
    if (c.fd >= 0) ::close(c.fd);  // also removes it from the epoll set
    c.bflags = 0;
    c.bdata = 0;
    return true;
  }

  bool wait(std::int64_t deadline, std::int64_t now) override {
    const int n = epoll_wait(epfd_, events_.data(), max_events, wait_timeout_ms(deadline, now));
    if (n < 0) return errno == EINTR;
    loop_.set_now(monotonic_ms());
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = events_[i].data.u64;
      if (tag == wake_tag) {
        loop_.on_wake();
      } else if (tag == app_tag) {
        loop_.on_app_ready();
      } else if (tag >= listen_tag_base) {
        on_acceptable(listeners_[tag - listen_tag_base]);
      } else {
        on_ready(tag, events_[i].events);
      }
    }
    return true;
  }

 private:
  void watch_listener(std::size_t i, int op) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = listen_tag_base + i;
    epoll_ctl(epfd_, op, listeners_[i], &ev);
  }

  // The interest set follows what the driver wants.
  void update(conn& c) {
    std::uint32_t want = 0;
    if (c.bflags & connecting) want = EPOLLOUT;
    else {
      if (c.reading) want |= EPOLLIN;
      if (c.writing) want |= EPOLLOUT;
    }
    if ((c.bflags & registered) && want == c.bdata) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = (static_cast<std::uint64_t>(c.gen) << 32) | c.slot;
    const int op = (c.bflags & registered) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epfd_, op, c.fd, &ev) == 0) {
      c.bflags |= registered;
      c.bdata = want;
    }
  }

  void on_acceptable(int listen_fd) {
    for (int i = 0; i < accepts_per_wake && !accept_paused_; ++i) {
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
          loop_.on_accept_error(errno);  // EMFILE ...: level-triggered, so pause, or we spin
        return;
      }
      loop_.on_accept(fd);
    }
  }

  void on_ready(std::uint64_t tag, std::uint32_t ev) {
    conn* cp = loop_.slot_conn(static_cast<std::uint32_t>(tag), static_cast<std::uint32_t>(tag >> 32));
    if (!cp || cp->ph == phase::draining) return;  // destroyed earlier in this batch
    conn& c = *cp;
    if (c.bflags & connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      c.bflags &= static_cast<std::uint8_t>(~connecting);
      return loop_.on_connected(c, err);
    }
    if ((ev & EPOLLOUT) && c.writing) {
      c.writing = false;
      update(c);
      loop_.on_write_done(c, 0);  // writable again: the driver writes the rest
      if (c.ph == phase::free) return;
    }
    if (ev & EPOLLERR) return loop_.on_transport_error(c);
    // No EPOLLRDHUP: it is level-triggered too and would spin while we do not read.
    // A half-close is seen as recv() == 0 once we read again.
    if (ev & (EPOLLIN | EPOLLHUP)) {
      if (c.reading) {
        const auto buf = loop_.read_buffer();
        const ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
          return loop_.on_transport_error(c);  // ECONNRESET ...
        }
        if (n == 0) return loop_.on_eof(c);
        loop_.on_bytes(c, buf.first(static_cast<std::size_t>(n)));
      } else if (ev & EPOLLHUP) {
        loop_.on_transport_error(c);  // both directions gone and we are not reading
      }
    }
  }

  loop& loop_;
  int epfd_;
  int wake_fd_ = -1;
  bool accept_paused_ = false;
  std::vector<int> listeners_;
  std::array<epoll_event, max_events> events_{};
};

}  // namespace

expected<std::unique_ptr<backend_base>, std::string> make_epoll_backend(loop& l) {
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return unexpected<std::string>{std::strerror(errno)};
  return std::unique_ptr<backend_base>(std::make_unique<epoll_backend>(l, epfd));
}

}  // namespace ws6455::io::detail
