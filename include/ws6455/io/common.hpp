// What the socket adapters (server and client) share: connection handles, the
// choice of backend, the callbacks both sides get, and the calls that act on one
// connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "ws6455/connection.hpp"
#include "ws6455/error.hpp"
#include "ws6455/event.hpp"

namespace ws6455::io {

// A connection handle: which loop, a generation and a slot, so a stale handle (the
// connection ended, the slot was reused) is recognised and refused. Never 0.
using conn_id = std::uint64_t;

// The loop a handle belongs to (0 .. threads-1).
constexpr unsigned loop_of(conn_id id) noexcept { return static_cast<unsigned>(id >> 56); }

// How sockets are driven. Both give the same behaviour; io_uring makes fewer
// system calls. automatic: io_uring where the kernel allows it, else epoll (and
// one line on stderr saying why).
enum class backend : std::uint8_t { automatic, epoll, io_uring };
std::string_view to_string(backend b) noexcept;

// What an application descriptor is watched for (endpoint::watch), and what it is
// ready for.
inline constexpr unsigned readable = 1;
inline constexpr unsigned writable = 2;

// Counters of one endpoint (summed over its loops). Safe to read from any thread.
struct io_stats {
  std::size_t connections = 0;      // open sockets, in any phase
  std::uint64_t accepted = 0;       // TCP connections accepted (server)
  std::uint64_t connected = 0;      // TCP connections established (client)
  std::uint64_t upgraded = 0;       // WebSocket connections opened
  std::uint64_t broadcast_dropped = 0;  // broadcast copies skipped for slow consumers
  std::uint64_t paused_reads = 0;   // times a connection stopped being read (backpressure)
  // wss://: OpenSSL over memory buffers; after the handshake the kernel encrypts
  // what is sent (kernel TLS, AES-GCM) where it can (TCP_ULP "tls"), else user space.
  // WS6455_NO_KTLS=1 in the environment keeps every connection in user space.
  std::size_t tls = 0;              // open TLS connections
  std::uint64_t tls_handshakes = 0;  // TLS handshakes completed
  std::uint64_t tls_failures = 0;    // TLS connections that failed (alerts, bad records, verification)
  std::size_t ktls = 0;             // open TLS connections whose records the kernel encrypts
  std::uint64_t ktls_switched = 0;  // TLS connections handed to kernel TLS, in all
};

// Sending to one connection, from the thread of the loop that owns it (inside a
// callback, or before run()). send_result::closed also for a stale or unknown id.
// Frames are written after the current callback returns, batched per loop pass.
class endpoint {
 public:
  send_result send_text(conn_id id, std::string_view text, bool trusted_utf8 = false);
  send_result send_binary(conn_id id, std::span<const std::byte> data);
  send_result send_ping(conn_id id, std::span<const std::byte> data = {});
  send_result close(conn_id id, std::uint16_t code = 1000, std::string_view reason = {});
  // The same prepared frame to each open connection of `ids` that lives on the
  // calling loop. Connections above high_water are skipped (counted in
  // broadcast_dropped). Returns how many got it.
  std::size_t broadcast(std::span<const conn_id> ids, const prepared_message& m);

  // The connection's frame layer for anything else (nullptr when not open).
  // Do not keep the pointer beyond the current callback.
  connection* find(conn_id id) noexcept;
  // Pending output of a connection (bytes), 0 when unknown.
  std::size_t buffered_amount(conn_id id) const noexcept;
  // An application pointer per connection, nullptr by default.
  void set_user_data(conn_id id, void* p) noexcept;
  void* user_data(conn_id id) const noexcept;

  io_stats stats() const noexcept;
  // The backend in use (never automatic once listen()/connect() ran).
  backend active_backend() const noexcept;
  // How the connection's bytes are carried: "tcp", "user-space TLS", or "" when unknown.
  std::string_view transport(conn_id id) const noexcept;

  // Application work on a loop, between its connections' events: descriptors to
  // watch (a Redis or database client's socket, driven the way hiredis' libevent
  // and libuv adapters drive it), timers, and tasks from other threads. `loop` is
  // 0 .. threads-1 (a client has loop 0). watch, rewatch, unwatch, call_after and
  // cancel_timer are made on that loop's thread (a callback, a posted task, a timer)
  // or while the loop is not running (before run(), after it returned).
  using watch_id = std::uint64_t;  // 0: failed (errno says why)
  // Level-triggered: on_ready(readable | writable, as far as asked) is called while
  // the descriptor is ready for what `events` asks. An error or a hang-up reports
  // what was asked, so the owner's own read or write finds it. The descriptor stays
  // the caller's: unwatch before closing it.
  watch_id watch(unsigned loop, int fd, unsigned events, std::function<void(unsigned ready)> on_ready);
  bool rewatch(watch_id w, unsigned events);  // 0: none for now (the watch stays)
  void unwatch(watch_id w);
  using timer_id = std::uint64_t;
  // Once, after `delay` (monotonic clock, millisecond resolution).
  timer_id call_after(unsigned loop, std::chrono::milliseconds delay, std::function<void()> fn);
  void cancel_timer(timer_id t);  // a timer that already ran, or 0: nothing happens
  // Runs `task` on the loop's thread soon. Thread-safe; one loop runs its tasks in
  // the order they were posted.
  void post(unsigned loop, std::function<void()> task);

  struct impl;  // lib/io/endpoint.hpp

 protected:
  endpoint() = default;
  ~endpoint();
  endpoint(const endpoint&) = delete;
  endpoint& operator=(const endpoint&) = delete;
  impl* impl_ = nullptr;
};

}  // namespace ws6455::io
