// A thin WebSocket server over real sockets, around the sans-I/O core: epoll or
// io_uring, one loop per thread.
//
//   accept -> server_handshake (bounded by handshake_timeout) -> handler::on_open decides
//          -> connection: feed() what was read, write what pending_output() holds
//
// Threads: with threads = N each of N loops has its own listening socket (bound
// with SO_REUSEPORT, so the kernel spreads connections), its own connections and
// buffers; nothing is shared on the per-message path. The handler is called from
// every loop's thread at once when N > 1: keep its state per connection
// (set_user_data) or synchronise it. endpoint's calls for one connection are made
// from its loop's thread (inside a callback). publish() and request_stop() may be
// called from anywhere.
//
// Backpressure: a connection whose pending output passes high_water stops being
// read (so TCP pushes back on its peer) until it drains below low_water; a peer
// that never reads cannot grow server memory past about high_water plus one read.
// Broadcast and publish skip connections above high_water (slow consumers lose
// messages rather than grow the server).
//
// Timers (no thread): a monotonic clock, a min-heap of deadlines per loop:
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
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ws6455/config.hpp"
#include "ws6455/expected.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/http_head.hpp"
#include "ws6455/io/common.hpp"
#include "ws6455/permessage_deflate.hpp"

namespace ws6455::io {

// wss:// (TLS 1.2 and 1.3, user space, OpenSSL). Files are PEM.
struct tls_certificate {
  std::string cert_file;  // the certificate chain: leaf first, then intermediates
  std::string key_file;
};
struct server_tls_options {
  std::string cert_file;  // both empty: plain ws://
  std::string key_file;
  // More certificates, chosen by the name the client asks for (SNI, RFC 6066 §3):
  // select_certificate(name) returns an index into sni_certificates, or -1 for the
  // default. Any other index outside sni_certificates (negative, or not below its
  // size) serves the default certificate too; the handshake goes on. Without the
  // hook, the first certificate whose names match (RFC 6125) wins. The hook is not
  // called when the client names no server (a URL with an IP literal: RFC 6066 §3
  // allows host names only) or when sni_certificates is empty: the default.
  // Called on a loop thread, during a handshake (with threads > 1, from several
  // loops at once: keep it thread-safe).
  std::vector<tls_certificate> sni_certificates;
  std::function<int(std::string_view server_name)> select_certificate;
};

struct server_options {
  std::string host = "127.0.0.1";  // an IPv4 or IPv6 literal; "0.0.0.0" / "::" for any
  std::uint16_t port = 8080;       // 0: the kernel picks one; see server::port()
  int backlog = 4096;              // the kernel caps it at net.core.somaxconn
  io::backend backend = io::backend::automatic;
  unsigned threads = 1;            // loops, each on its own thread; 0: one per core
  // Frame-layer limits of every connection (config::deflate is set by the negotiation).
  config ws;
  bool deflate = false;            // accept permessage-deflate offers
  permessage_deflate::server_options deflate_options;
  handshake_limits limits;         // request head size and header count (431 past them)
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds idle_timeout{120'000};  // 0: never
  std::chrono::milliseconds ping_interval{30'000};  // 0: no keepalive pings
  std::chrono::milliseconds close_timeout{5'000};
  std::size_t read_buffer_size = 256u << 10;  // epoll: one buffer per loop, shared by its connections
  std::size_t high_water = 512u << 10;  // pending output above which a connection is not read
  std::size_t low_water = 128u << 10;   // ... until it drained to this
  std::size_t max_connections = 100'000;  // per loop: accepting pauses at this count
  server_tls_options tls;  // cert_file and key_file set: every connection is TLS (wss://)
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

// The answer to a plain HTTP GET or HEAD (a request without "Upgrade: websocket").
struct http_reply {
  int status = 404;
  std::string content_type = "text/plain; charset=utf-8";  // CR, LF and controls are refused (500)
  std::string_view body;  // must stay valid until on_http returns; it is copied (never sent to HEAD)
};

class handler {
 public:
  virtual ~handler() = default;
  // A valid upgrade request. The connection already exists: sends made here are
  // written after the 101. Reject with reply.reject(status, body, headers).
  virtual void on_open(conn_id, const http_request&, upgrade_reply&) {}
  // A GET or HEAD without "Upgrade: websocket". Return true to answer with `reply`;
  // false sends the handshake's own error. The connection closes after it.
  virtual bool on_http(const http_request&, http_reply&) { return false; }
  // text and binary events. ev.data is valid during the call only.
  virtual void on_message(conn_id, const event&) {}
  // Everything else the frame layer reports: ping (already answered), pong, the
  // peer's close (before the reply goes out) and fail (what we closed with).
  virtual void on_event(conn_id, const event&) {}
  // The connection is gone (only for accepted ones): the peer's close code (1005:
  // none in its close frame), the code we failed it with, or 1006 (the transport
  // ended or timed out without a close handshake).
  virtual void on_close(conn_id, std::uint16_t /*code*/, std::string_view /*reason*/) {}
};

class server : public endpoint {
 public:
  server(server_options options, handler& h);
  ~server();

  // Binds and listens (one socket per loop). Returns the bound port (useful with
  // port 0) or why it failed. Chooses the backend (see io::backend).
  expected<std::uint16_t, std::string> listen();
  std::uint16_t port() const noexcept;
  unsigned threads() const noexcept;

  // Runs every loop (loop 0 on the calling thread, the others on threads of their
  // own) until a graceful stop has completed: every WebSocket got a close 1001 and
  // either finished the close handshake or hit close_timeout. Returns 0, or -1 if a
  // loop could not run (its reason on stderr).
  int run();
  // TLS: reads the certificate and key files again (after listen(); from any
  // thread, not from a signal handler). New handshakes use them; open connections
  // keep the certificate they started with. Returns why it failed (the old
  // certificates stay in use), or an empty string.
  std::string reload_tls();
  // Starts the graceful stop of every loop: async-signal-safe, from any thread.
  void request_stop() noexcept;
  void stop() noexcept { request_stop(); }

  // Topics (rooms) that span loops. A connection may be in several; it leaves
  // all of them when it closes. Called from the connection's loop thread.
  void subscribe(conn_id id, std::string_view topic);
  void unsubscribe(conn_id id, std::string_view topic);
  // Sends `m` to every member of `topic` on every loop, once each: members on the
  // calling loop at once, the others through their loop's queue (one encoding,
  // shared by the loops; each member's output gets a copy). A publisher's messages reach each member in the order
  // they were published. From a loop thread or any other thread. Returns how
  // many members on the calling loop got it.
  std::size_t publish(std::string_view topic, prepared_message m);
};

}  // namespace ws6455::io
