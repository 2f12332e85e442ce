// A thin WebSocket client over real sockets (epoll or io_uring), many connections
// on one loop: resolve, connect (bounded by connect_timeout), the opening
// handshake (subprotocols, extra headers, permessage-deflate offer), then the
// same frame layer, timers and backpressure as the server (server.hpp).
//
// One thread: connect(), the endpoint calls and run() are made from the thread
// that created the client (io_uring rings belong to their thread). post() and
// request_stop() may be called from anywhere.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "ws6455/config.hpp"
#include "ws6455/expected.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/http_head.hpp"
#include "ws6455/io/common.hpp"
#include "ws6455/permessage_deflate.hpp"

namespace ws6455::io {

struct client_options {
  io::backend backend = io::backend::automatic;
  config ws;                        // frame-layer limits (deflate is set by the negotiation)
  bool deflate = false;             // offer permessage-deflate
  permessage_deflate::client_options deflate_options;
  std::chrono::milliseconds connect_timeout{10'000};   // TCP connect, every address tried
  std::chrono::milliseconds handshake_timeout{10'000};  // request written to 101 read
  std::chrono::milliseconds idle_timeout{0};            // 0: never
  std::chrono::milliseconds ping_interval{0};           // 0: no keepalive pings
  std::chrono::milliseconds close_timeout{5'000};
  std::size_t read_buffer_size = 256u << 10;
  std::size_t high_water = 512u << 10;
  std::size_t low_water = 128u << 10;
  // run() returns once no connection is left (a tool's single connection closed).
  // false: it runs until request_stop().
  bool exit_when_idle = true;
  // wss://: the certificate is verified against the system CA store (or ca_file, PEM)
  // and the URL's host name (RFC 6125). insecure skips both: for tests only.
  std::string ca_file;
  bool insecure = false;
};

class client_handler {
 public:
  virtual ~client_handler() = default;
  // The server accepted (101). Sends made here go out at once.
  virtual void on_open(conn_id, const http_response&) {}
  virtual void on_message(conn_id, const event&) {}
  // Everything else the frame layer reports: ping (already answered), pong, the
  // peer's close (before the reply goes out) and fail (what we closed with).
  virtual void on_event(conn_id, const event&) {}
  // The connection is gone: the server's close code (1005: none), the code we
  // failed it with, or 1006 (no close handshake). Also when it never opened:
  // code 1006 and a reason naming what failed (resolve, connect, handshake status).
  virtual void on_close(conn_id, std::uint16_t /*code*/, std::string_view /*reason*/) {}
};

class client : public endpoint {
 public:
  client(client_options options, client_handler& h);
  ~client();

  // Starts a connection to a ws:// or wss:// URL (names are resolved with getaddrinfo, which
  // blocks). A bad URL, an unresolvable name or an unreadable ca_file is an error
  // here; everything later (refused, timed out, TLS failures such as "certificate
  // verify failed: Hostname mismatch", non-101) reaches on_close.
  expected<conn_id, std::string> connect(std::string_view url, const ws6455::client_options& handshake = {});

  // Runs the loop: until request_stop() completed a graceful stop (1000 to every
  // open connection), or, with exit_when_idle, until no connection is left.
  // Returns 0, or -1 if the loop could not run (the reason on stderr).
  int run();
  void request_stop() noexcept;
  // Runs `task` on the loop thread soon (thread-safe; FIFO).
  void post(std::function<void()> task);
  using endpoint::post;
};

}  // namespace ws6455::io
