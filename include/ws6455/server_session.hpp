// The server side of one WebSocket from the upgrade request to the close: a
// server_handshake and a connection(role::server) wired together (see session.hpp).
//
//   server_session s(options);
//   loop: r = s.feed(received, events)      // handle events, then feed the rest
//     request:          look at s.request(); s.accept() or s.reject(403, "...")
//     text/binary/...:  the frame layer's events (s.send_text(...) to answer)
//     handshake_failed: a bad request; the 400/405/426/431 is on pending_output()
//   write s.pending_output(), s.consume_output(n) while s.want_write()
//   close the socket when s.should_close_transport()
//
// The session keeps no clock: time out the handshake (10-30 s) and the close in the adapter.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include "ws6455/config.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/permessage_deflate.hpp"
#include "ws6455/session.hpp"

namespace ws6455 {

struct server_session_options {
  config frames;            // limits of the frame layer; `deflate` is set by the negotiation
  handshake_limits limits;  // bounds on the request head (431 past them)
  // What accept() without arguments answers with: subprotocol policy and allowlist,
  // extra headers. `extensions` is ignored: the session negotiates it (below).
  accept_options accept;
  // Set (e.g. to `{}`) to accept a client's permessage-deflate offer (RFC 7692) with
  // these parameters; nullopt never compresses. Costs ~49-77 KiB of zlib memory per
  // connection that uses it (see permessage_deflate.hpp).
  std::optional<permessage_deflate::server_options> deflate;
};

class server_session : public session_base {
 public:
  explicit server_session(server_session_options options = {});

  // Takes received bytes, writes what they complete into `events` (at least one slot,
  // else nothing happens), and returns how many bytes it took. Stops early — call again
  // with input.subspan(consumed) — when `events` is full, after an event whose payload
  // lives in engine storage (as connection::feed), and after a `request` event: the bytes
  // behind the request head are the client's first frames, given to the frame layer by
  // the next call once accept() was called. While the request waits for a decision feed()
  // takes nothing; after a failed handshake it takes everything and reports nothing.
  // Masked payloads are unmasked in place, so `input` must be writable.
  [[nodiscard]] session_feed_result feed(std::span<std::byte> input, std::span<session_event> events);
  // The transport ended (read returned 0): a close 1006 once open, handshake_failed
  // during the handshake. False when there is nothing to report.
  bool feed_eof(session_event& out);

  // The request, complete from the `request` event on (valid for the session's life).
  const http_request& request() const noexcept { return handshake_.request(); }

  // Accepts the upgrade (state request_ready only): queues the 101 with the subprotocol
  // chosen by `options` (or the session's default accept options) and, when enabled,
  // the permessage-deflate agreement; the WebSocket is open. False when the request is
  // not waiting for a decision, or the handshake refused `options` (require_protocol
  // without a match: 400; an invalid header: 500; the error response is queued).
  bool accept();
  bool accept(const accept_options& options);
  // Refuses the upgrade (state request_ready only) with `status` (300-599, else 500)
  // and `body`, as server_handshake::reject. Write pending_output(), then close.
  void reject(int status, std::string_view body = {}, std::span<const http_header> headers = {});

  // The handshake's outcome: 101, the error status, or 0 before either.
  int status() const noexcept { return handshake_.status(); }
  // Why the handshake failed; empty otherwise.
  std::string_view reason() const noexcept { return handshake_.reason(); }
  // The chosen subprotocol; empty for none.
  std::string_view protocol() const noexcept { return handshake_.protocol(); }

 private:
  server_session_options options_;
  server_handshake handshake_;
};

}  // namespace ws6455
