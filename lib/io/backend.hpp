// The part of a loop that moves bytes: epoll (readiness + recv/sendmsg) or
// io_uring (completions). Everything else (handshake, frame layer, timers,
// backpressure, broadcast, stop) is the driver's, in loop.cpp, written once.
//
// The driver tells a backend what it wants (accept on these sockets, read this
// connection or not, write these bytes, close it); the backend reports back by
// calling the loop's on_* functions from inside wait().
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ws6455/expected.hpp"
#include "ws6455/io/common.hpp"

namespace ws6455::io::detail {

class loop;
struct conn;

// write() results besides a byte count.
constexpr ssize_t write_blocked = -EAGAIN;       // the socket is full: on_write_done when writable
constexpr ssize_t write_submitted = -EINPROGRESS;  // asynchronous: on_write_done on completion

class backend_base {
 public:
  virtual ~backend_base() = default;
  virtual io::backend kind() const noexcept = 0;

  // Accept on a listening socket until pause_accepting(true).
  virtual void add_listener(int fd) = 0;
  virtual void pause_accepting(bool paused) = 0;
  // The loop's wake-up eventfd: readable means on_wake().
  virtual void add_wakeup(int fd) = 0;
  // The loop's epoll set of application descriptors (endpoint::watch): readable
  // means on_app_ready().
  virtual void add_app_fd(int fd) = 0;

  // A new connected socket (accepted, or connected by start_connect): watch it.
  virtual void attach(conn& c) = 0;
  // Starts a non-blocking connect of c.fd; on_connected(slot, 0 or errno) follows.
  virtual void start_connect(conn& c, const sockaddr* addr, socklen_t len) = 0;
  // Whether c is to be read. Bytes may still arrive after `false` (they were on
  // their way); the driver keeps them.
  virtual void set_reading(conn& c, bool on) = 0;
  // Writes iov (the HTTP answer and/or frames): bytes written now, write_blocked,
  // write_submitted (the memory stays untouched until on_write_done), or -errno.
  virtual ssize_t write(conn& c, const iovec* iov, int n) = 0;
  // Closes c's socket. Returns false while an operation still references the
  // connection's memory: the driver keeps it until on_released(slot).
  virtual bool release(conn& c) = 0;

  // Waits for events until `deadline` (monotonic ms; no_deadline: no limit) and
  // reports them. Returns false if the wait itself failed.
  virtual bool wait(std::int64_t deadline, std::int64_t now) = 0;
};

// The backends. make_uring_backend fails (with the kernel's reason) where io_uring
// is unavailable: not built in, io_uring_setup refused, kernel.io_uring_disabled.
expected<std::unique_ptr<backend_base>, std::string> make_epoll_backend(loop& l);
expected<std::unique_ptr<backend_base>, std::string> make_uring_backend(loop& l);
// Whether make_uring_backend would work here (a ring is set up and torn down).
std::string probe_uring();

}  // namespace ws6455::io::detail
