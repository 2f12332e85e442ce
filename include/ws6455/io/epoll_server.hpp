// A thin, single-threaded socket adapter around the sans-I/O core (Linux epoll).
//
// It does what the core leaves to its caller: sockets, the clock, the timers and
// backpressure. One thread runs run(); every handler callback is called on
// that thread, and the send/close/broadcast calls below are made from it (from
// inside a callback, or between run() calls). Only request_stop() may be called
// from elsewhere (another thread, a signal handler).
//
//   accept -> server_handshake (bounded by handshake_timeout) -> handler::on_open decides
//          -> connection: feed() what recv() read, send() what pending_output() holds
//
// Backpressure: a connection whose pending output passes high_water stops being
// read (so TCP pushes back on its peer) until it drains below low_water; a peer
// that never reads cannot grow server memory past about high_water plus one read.
// Broadcast skips connections above high_water (slow consumers lose messages
// rather than grow the server).
//
// Timers (no thread): a monotonic clock read by the adapter, a min-heap of
// deadlines, and epoll_wait's timeout set from the nearest one:
//   handshake_timeout  an unfinished request head is dropped
//   ping_interval      after that long without receiving anything, a ping is sent
//   idle_timeout       after that long without receiving anything (pongs count),
//                      the connection is closed with 1001
//   close_timeout      after a close frame was sent or received, or after an HTTP
//                      error answer, the TCP connection is dropped if the peer does
//                      not finish in time
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ws6455/config.hpp"
#include "ws6455/connection.hpp"
#include "ws6455/error.hpp"
#include "ws6455/event.hpp"
#include "ws6455/expected.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/http_head.hpp"
#include "ws6455/permessage_deflate.hpp"

namespace ws6455::io {

// A connection handle: a slot and a generation, so a stale handle (the
// connection ended, the slot was reused) is recognised and refused. Never 0.
using conn_id = std::uint64_t;

struct server_options {
  std::string host = "127.0.0.1";  // an IPv4 or IPv6 literal; "0.0.0.0" / "::" for any
  std::uint16_t port = 8080;       // 0: the kernel picks one; see epoll_server::port()
  int backlog = 511;
  // Frame-layer limits of every connection (config::deflate is set by the negotiation).
  config ws;
  bool deflate = false;            // accept permessage-deflate offers
  permessage_deflate::server_options deflate_options;
  handshake_limits limits;         // request head size and header count (431 past them)
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds idle_timeout{120'000};  // 0: never
  std::chrono::milliseconds ping_interval{30'000};  // 0: no keepalive pings
  std::chrono::milliseconds close_timeout{5'000};
  std::size_t read_buffer_size = 256u << 10;  // one buffer per loop, shared by all connections
  std::size_t high_water = 512u << 10;  // pending output above which a connection is not read
  std::size_t low_water = 128u << 10;   // ... until it drained to this
  std::size_t max_connections = 100'000;      // accepting pauses at this count
};

// What handler::on_open decides for an upgrade request. Accepts by default.
struct upgrade_reply {
  bool accepted = true;
  accept_options options;  // when accepting: subprotocol policy, extra headers (extensions are set by the server)
  int status = 403;        // when rejecting
  std::string body;
  std::vector<http_header> headers;

  void reject(int s, std::string b = {}, std::vector<http_header> h = {}) {
    accepted = false;
    status = s;
    body = std::move(b);
    headers = std::move(h);
  }
};

// The answer to a plain HTTP GET (a request without "Upgrade: websocket").
struct http_reply {
  int status = 404;
  std::string content_type = "text/plain; charset=utf-8";
  std::string_view body;  // must stay valid until on_http returns; it is copied
};

class handler {
 public:
  virtual ~handler() = default;
  // A valid upgrade request. The connection already exists: sends made here are
  // written after the 101. Reject with reply.reject(status, body, headers).
  virtual void on_open(conn_id, const http_request&, upgrade_reply&) {}
  // A GET without "Upgrade: websocket". Return true to answer with `reply`;
  // false sends the handshake's own error (400). The connection closes after it.
  virtual bool on_http(const http_request&, http_reply&) { return false; }
  // text and binary events. ev.data is valid during the call only.
  virtual void on_message(conn_id, const event&) {}
  // The connection is gone (only for accepted ones): the peer's close code (1005:
  // none in its close frame), the code we failed it with, or 1006 (the transport
  // ended or timed out without a close handshake).
  virtual void on_close(conn_id, std::uint16_t /*code*/, std::string_view /*reason*/) {}
};

struct server_stats {
  std::size_t connections = 0;      // open sockets, in any phase
  std::uint64_t accepted = 0;       // TCP connections accepted
  std::uint64_t upgraded = 0;       // WebSocket connections opened
  std::uint64_t broadcast_dropped = 0;  // broadcast copies skipped for slow consumers
  std::uint64_t paused_reads = 0;   // times a connection stopped being read (backpressure)
};

class epoll_server {
 public:
  epoll_server(server_options options, handler& h);
  ~epoll_server();
  epoll_server(const epoll_server&) = delete;
  epoll_server& operator=(const epoll_server&) = delete;

  // Binds and listens. Returns the bound port (useful with port 0) or why it failed.
  expected<std::uint16_t, std::string> listen();
  std::uint16_t port() const noexcept;

  // Runs the loop until a graceful stop has completed: every WebSocket got a close
  // 1001 and either finished the close handshake or hit close_timeout. Returns 0,
  // or -1 if epoll itself failed.
  int run();
  // Starts the graceful stop (from the loop thread: a handler or a timer).
  void stop();
  // The same, from a signal handler or another thread: async-signal-safe.
  void request_stop() noexcept;

  // Sending to one connection. send_result::closed also for a stale or unknown id.
  send_result send_text(conn_id id, std::string_view text, bool trusted_utf8 = false);
  send_result send_binary(conn_id id, std::span<const std::byte> data);
  send_result send_ping(conn_id id, std::span<const std::byte> data = {});
  send_result close(conn_id id, std::uint16_t code = 1000, std::string_view reason = {});
  // The same prepared frame to each open connection of `ids` (a room). Connections
  // above high_water are skipped (counted in stats().broadcast_dropped). Returns
  // how many got it.
  std::size_t broadcast(std::span<const conn_id> ids, const prepared_message& m);

  // The connection's frame layer for anything else (nullptr when not open).
  // Do not keep the pointer beyond the current callback.
  connection* find(conn_id id) noexcept;
  // Pending output of a connection (bytes), 0 when unknown.
  std::size_t buffered_amount(conn_id id) const noexcept;
  // An application pointer per connection (a room, a session), nullptr by default.
  void set_user_data(conn_id id, void* p) noexcept;
  void* user_data(conn_id id) const noexcept;

  server_stats stats() const noexcept;

  struct impl;  // lib/io/epoll_loop.hpp

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace ws6455::io
