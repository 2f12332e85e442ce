// The io_uring backend: completions instead of readiness.
//
//   accept   multishot, one per listening socket
//   recv     multishot into a provided buffer ring: a buffer is picked when data
//            arrives, so an idle connection holds none
//   send     sendmsg of the HTTP answer and the frames (vectored), from the
//            connection's own output (pinned until the completion)
//   connect  IORING_OP_CONNECT (client)
//   wake-up  multishot poll on the loop's eventfd (stop, posted tasks, other loops)
//   app fds  multishot poll on the loop's epoll set of application descriptors
//   timers   the driver's heap gives the wait timeout (submit_and_wait_timeout)
//
// Every operation carries (op, generation, slot) in user_data. A connection is
// freed only when none of its operations is in flight (ops == 0): closing cancels
// them and the driver keeps the slot draining until the last completion.
#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "io/loop.hpp"

namespace ws6455::io::detail {

namespace {

enum class op : std::uint8_t { accept = 1, recv, send, connect, wake, cancel, app };

constexpr unsigned sq_entries = 2048;
constexpr unsigned cq_entries = 16384;
// The provided buffers: 256 of 32 KiB (8 MiB of address space per loop, touched
// only as used). A connection holds one only while its completion is handled.
constexpr unsigned buffer_count = 256;
constexpr unsigned buffer_size = 32u << 10;
constexpr int buffer_group = 0;

// bflags
constexpr std::uint8_t recv_armed = 1;
constexpr std::uint8_t recv_cancelling = 2;
constexpr std::uint8_t send_inflight = 4;
constexpr std::uint8_t connect_inflight = 8;

std::uint64_t tag(op o, std::uint32_t gen, std::uint32_t slot) noexcept {
  return (static_cast<std::uint64_t>(o) << 56) | (static_cast<std::uint64_t>(gen & 0xffffffu) << 32) | slot;
}
std::uint64_t tag(op o, const conn& c) noexcept { return tag(o, c.gen, c.slot); }

// What a sendmsg in flight reads: kept apart from the connection (which an idle
// connection then does not pay for), in a pool.
struct send_op {
  msghdr msg{};
  iovec iov[16]{};  // the driver gathers at most 16 pieces
};

std::string probe_disabled() {
  const char* off = std::getenv("WS6455_NO_IO_URING");
  return off && *off && *off != '0' ? "disabled by WS6455_NO_IO_URING" : "";
}

class uring_backend final : public backend_base {
 public:
  explicit uring_backend(loop& l) : loop_(l) {}
  ~uring_backend() override {
    if (ring_ok_) io_uring_queue_exit(&ring_);
    if (bufs_) munmap(bufs_, std::size_t{buffer_count} * buffer_size);
    if (br_) munmap(br_, br_bytes_);
  }

  std::string init() {
    if (std::string why = probe_disabled(); !why.empty()) return why;
    io_uring_params p{};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = cq_entries;
    int r = io_uring_queue_init_params(sq_entries, &ring_, &p);
    if (r == -EINVAL) {  // an older kernel: no single issuer / deferred task work
      p = io_uring_params{};
      p.flags = IORING_SETUP_CQSIZE;
      p.cq_entries = cq_entries;
      r = io_uring_queue_init_params(sq_entries, &ring_, &p);
    }
    if (r < 0) return std::string("io_uring_setup: ") + std::strerror(-r);
    ring_ok_ = true;
    // The buffer ring, page-aligned as the kernel wants it.
    br_bytes_ = buffer_count * sizeof(io_uring_buf);
    void* ring_mem = mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    void* buf_mem = mmap(nullptr, std::size_t{buffer_count} * buffer_size, PROT_READ | PROT_WRITE,
                         MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring_mem == MAP_FAILED || buf_mem == MAP_FAILED) return "mmap failed";
    br_ = static_cast<io_uring_buf_ring*>(ring_mem);
    bufs_ = static_cast<std::byte*>(buf_mem);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
    reg.ring_entries = buffer_count;
    reg.bgid = buffer_group;
    if ((r = io_uring_register_buf_ring(&ring_, &reg, 0)) < 0)
      return std::string("provided buffer ring: ") + std::strerror(-r);
    io_uring_buf_ring_init(br_);
    for (unsigned i = 0; i < buffer_count; ++i)
      io_uring_buf_ring_add(br_, bufs_ + std::size_t{i} * buffer_size, buffer_size, static_cast<unsigned short>(i),
                            io_uring_buf_ring_mask(buffer_count), static_cast<int>(i));
    io_uring_buf_ring_advance(br_, buffer_count);
    return {};
  }

  io::backend kind() const noexcept override { return io::backend::io_uring; }

  void add_listener(int fd) override {
    listeners_.push_back({fd, false});
    if (!accept_paused_) arm_accept(listeners_.size() - 1);
  }

  void pause_accepting(bool paused) override {
    if (paused == accept_paused_) return;
    accept_paused_ = paused;
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      if (paused) {
        if (listeners_[i].armed) submit_cancel(tag(op::accept, 0, static_cast<std::uint32_t>(i)));
      } else if (!listeners_[i].armed) {
        arm_accept(i);
      }
    }
  }

  void add_wakeup(int fd) override {
    wake_fd_ = fd;
    arm_poll(wake_fd_, op::wake);
  }

  void add_app_fd(int fd) override {
    app_fd_ = fd;
    arm_poll(app_fd_, op::app);
  }

  void attach(conn& c) override { (void)c; }  // nothing to register: reads are armed by set_reading

  void start_connect(conn& c, const sockaddr* addr, socklen_t len) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_connect(sqe, c.fd, addr, len);
    io_uring_sqe_set_data64(sqe, tag(op::connect, c));
    c.bflags |= connect_inflight;
    ++c.ops;
  }

  void set_reading(conn& c, bool on) override {
    if (on) {
      if (!(c.bflags & recv_armed)) arm_recv(c);
    } else if ((c.bflags & recv_armed) && !(c.bflags & recv_cancelling)) {
      // Backpressure: stop the multishot now, not at the next wait, so that little
      // arrives after the pause (what does is kept by the driver).
      submit_cancel(tag(op::recv, c));
      c.bflags |= recv_cancelling;
      io_uring_submit(&ring_);
    }
  }

  ssize_t write(conn& c, const iovec* iov, int n) override {
    std::uint32_t idx;
    if (!free_sends_.empty()) {
      idx = free_sends_.back();
      free_sends_.pop_back();
    } else {
      idx = static_cast<std::uint32_t>(sends_.size());
      sends_.push_back(std::make_unique<send_op>());
    }
    send_op& s = *sends_[idx];
    n = std::min(n, 16);
    for (int i = 0; i < n; ++i) s.iov[i] = iov[i];
    s.msg = msghdr{};
    s.msg.msg_iov = s.iov;
    s.msg.msg_iovlen = static_cast<std::size_t>(n);
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_sendmsg(sqe, c.fd, &s.msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(op::send, c));
    c.bdata = idx;
    c.bflags |= send_inflight;
    ++c.ops;
    return write_submitted;
  }

  bool release(conn& c) override {
    if (c.bflags & recv_armed) {
      if (!(c.bflags & recv_cancelling)) submit_cancel(tag(op::recv, c));
      c.bflags |= recv_cancelling;
    }
    if (c.bflags & send_inflight) submit_cancel(tag(op::send, c));
    if (c.bflags & connect_inflight) {
      submit_cancel(tag(op::connect, c));
      // Abandoned (a timeout, the next address, a stop): its completion is stale
      // whatever it says. Counted once: the flag goes now, the operation (ops) stays.
      ++stale_connects_[c.slot];
      c.bflags &= static_cast<std::uint8_t>(~connect_inflight);
    }
    // The operations hold their own reference to the socket; closing is safe now
    // and the cancellations (by user_data) do not need the descriptor.
    if (c.fd >= 0) ::close(c.fd);
    return c.ops == 0;
  }

  bool wait(std::int64_t deadline, std::int64_t now) override {
    io_uring_cqe* cqe = nullptr;
    int r;
    if (deadline == no_deadline) {
      r = io_uring_submit_and_wait(&ring_, 1);
    } else {
      const std::int64_t ms = deadline <= now ? 0 : deadline - now;
      __kernel_timespec ts{};
      ts.tv_sec = ms / 1000;
      ts.tv_nsec = (ms % 1000) * 1'000'000;
      r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    }
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      errno = -r;
      return false;
    }
    loop_.set_now(monotonic_ms());
    // Handle completions one at a time, each marked seen first: a handler may
    // queue new operations (and, with a full submission queue, submit).
    for (int budget = 4 * static_cast<int>(cq_entries); budget > 0; --budget) {
      if (io_uring_peek_cqe(&ring_, &cqe) != 0) break;
      const std::uint64_t ud = io_uring_cqe_get_data64(cqe);
      const int res = cqe->res;
      const unsigned flags = cqe->flags;
      io_uring_cqe_seen(&ring_, cqe);
      on_completion(ud, res, flags);
    }
    // Connections whose receive stopped for want of buffers: the buffers handled
    // above are back in the ring; receive again.
    if (!nobufs_.empty()) {
      std::vector<std::uint64_t> again;
      again.swap(nobufs_);
      for (const std::uint64_t t : again) {
        conn* c = loop_.slot_conn(static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(t >> 32));
        if (c && c->reading && !(c->bflags & recv_armed) && c->ph != phase::draining) arm_recv(*c);
      }
    }
    return true;
  }

 private:
  struct listener {
    int fd;
    bool armed;
  };

  // A submission slot; when the queue is full, what is queued goes to the kernel first.
  io_uring_sqe* get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (!sqe) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void submit_cancel(std::uint64_t target) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, tag(op::cancel, 0, 0));
  }

  void arm_accept(std::size_t i) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, listeners_[i].fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(op::accept, 0, static_cast<std::uint32_t>(i)));
    listeners_[i].armed = true;
  }

  void arm_poll(int fd, op o) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag(o, 0, 0));
  }

  void arm_recv(conn& c) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, c.fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffer_group;
    io_uring_sqe_set_data64(sqe, tag(op::recv, c));
    c.bflags |= recv_armed;
    c.bflags &= static_cast<std::uint8_t>(~recv_cancelling);
    ++c.ops;
  }

  void give_back(unsigned flags) {
    if (!(flags & IORING_CQE_F_BUFFER)) return;
    const auto bid = static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
    io_uring_buf_ring_add(br_, bufs_ + std::size_t{bid} * buffer_size, buffer_size, bid,
                          io_uring_buf_ring_mask(buffer_count), 0);
    io_uring_buf_ring_advance(br_, 1);
  }

  void on_completion(std::uint64_t ud, int res, unsigned flags) {
    const auto o = static_cast<op>(ud >> 56);
    const auto slot = static_cast<std::uint32_t>(ud);
    const auto gen = static_cast<std::uint32_t>(ud >> 32) & 0xffffffu;
    switch (o) {
      case op::cancel:
        return;  // -ENOENT (already done) or -EALREADY: the target's own completion tells
      case op::wake:
        loop_.on_wake();
        if (!(flags & IORING_CQE_F_MORE)) arm_poll(wake_fd_, op::wake);
        return;
      case op::app:
        loop_.on_app_ready();
        if (!(flags & IORING_CQE_F_MORE)) arm_poll(app_fd_, op::app);
        return;
      case op::accept:
        return on_accept(slot, res, flags);
      case op::recv:
      case op::send:
      case op::connect:
        break;
    }
    conn* cp = loop_.slot_conn(slot, gen);
    if (!cp) {  // cannot happen (a slot is freed only without operations); be safe
      give_back(flags);
      return;
    }
    conn& c = *cp;
    switch (o) {
      case op::recv:
        on_recv(c, res, flags);
        break;
      case op::send:
        --c.ops;
        c.bflags &= static_cast<std::uint8_t>(~send_inflight);
        free_sends_.push_back(c.bdata);
        // Short sends: the driver consumes what went out and sends the rest. An
        // error (EPIPE, ECONNRESET) ends the connection; -ECANCELED only happens
        // to a connection already closed (draining).
        loop_.on_write_done(c, res);
        break;
      case op::connect:
        --c.ops;
        c.bflags &= static_cast<std::uint8_t>(~connect_inflight);
        if (auto it = stale_connects_.find(c.slot); it != stale_connects_.end()) {
          if (--it->second == 0) stale_connects_.erase(it);  // an abandoned attempt's completion
        } else if (c.ph == phase::connecting) {
          loop_.on_connected(c, res < 0 ? -res : 0);
        }
        break;
      default:
        break;
    }
    if (c.ph == phase::draining && c.ops == 0) loop_.on_released(c);
  }

  void on_recv(conn& c, int res, unsigned flags) {
    const bool more = flags & IORING_CQE_F_MORE;
    if (!more) {
      --c.ops;
      c.bflags &= static_cast<std::uint8_t>(~(recv_armed | recv_cancelling));
    }
    if (res > 0) {
      const auto bid = static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
      if (c.ph != phase::draining)
        loop_.on_bytes(c, {bufs_ + std::size_t{bid} * buffer_size, static_cast<std::size_t>(res)});
      give_back(flags);  // the driver kept what it still needs (paused input)
    } else if (res == -ENOBUFS) {
      nobufs_.push_back(tag(op::recv, c));  // re-armed once buffers are back
      return;
    } else if (res == 0) {
      if (c.ph != phase::draining) loop_.on_eof(c);
      return;
    } else if (res != -ECANCELED) {
      if (c.ph != phase::draining) loop_.on_transport_error(c);  // ECONNRESET ...
      return;
    }
    // The multishot ended (the kernel may end it at any time): receive again if wanted.
    if (!more && c.ph != phase::free && c.ph != phase::draining && c.reading && !(c.bflags & recv_armed))
      arm_recv(c);
  }

  void on_accept(std::uint32_t i, int res, unsigned flags) {
    if (i >= listeners_.size()) return;
    if (!(flags & IORING_CQE_F_MORE)) listeners_[i].armed = false;
    if (res >= 0) loop_.on_accept(res);
    else if (res != -ECANCELED) loop_.on_accept_error(-res);  // EMFILE ...: the loop pauses a while
    if (!listeners_[i].armed && !accept_paused_) arm_accept(i);
  }

  loop& loop_;
  io_uring ring_{};
  bool ring_ok_ = false;
  io_uring_buf_ring* br_ = nullptr;
  std::size_t br_bytes_ = 0;
  std::byte* bufs_ = nullptr;
  int wake_fd_ = -1;
  int app_fd_ = -1;
  bool accept_paused_ = false;
  std::vector<listener> listeners_;
  std::vector<std::unique_ptr<send_op>> sends_;
  std::vector<std::uint32_t> free_sends_;
  std::vector<std::uint64_t> nobufs_;
  std::unordered_map<std::uint32_t, unsigned> stale_connects_;
};

}  // namespace

expected<std::unique_ptr<backend_base>, std::string> make_uring_backend(loop& l) {
  auto b = std::make_unique<uring_backend>(l);
  if (auto r = b->init(); !r.empty()) return unexpected<std::string>{r};
  return std::unique_ptr<backend_base>(std::move(b));
}

std::string probe_uring() {
  // For tests of the fallback, and for users who must avoid io_uring at run time
  // (a seccomp policy that kills instead of refusing).
  if (std::string why = probe_disabled(); !why.empty()) return why;
  io_uring ring{};
  const int r = io_uring_queue_init(8, &ring, 0);
  if (r < 0) return std::string("io_uring_setup: ") + std::strerror(-r);
  io_uring_queue_exit(&ring);
  return {};
}

}  // namespace ws6455::io::detail
