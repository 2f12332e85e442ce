// The client side of one WebSocket from the upgrade request to the close: a
// client_handshake and a connection(role::client) wired together (see session.hpp).
//
//   client_session c(*parse_ws_url("ws://host:port/path"), options);
//   write c.pending_output() (the request), c.consume_output(n), while c.want_write()
//   loop: r = c.feed(received, events)   // handle events, then feed the rest
//     open:             the server accepted; c.send_text(...) from now on
//     text/binary/...:  the frame layer's events
//     handshake_failed: refused (c.status(), c.body()) or an invalid answer: close
//
// The session keeps no clock: time out the handshake and the close in the adapter.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ws6455/config.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/permessage_deflate.hpp"
#include "ws6455/session.hpp"
#include "ws6455/url.hpp"

namespace ws6455 {

struct client_session_options {
  // Subprotocol offers, extra headers (Origin, Authorization, ...), key, limits.
  // `extensions` is ignored: the session offers permessage-deflate itself (below).
  client_options handshake;
  config frames;  // limits of the frame layer; `deflate` is set from the server's answer
  // Set (e.g. to `{}`) to offer permessage-deflate (RFC 7692) with these parameters;
  // nullopt offers nothing.
  std::optional<permessage_deflate::client_options> deflate;
};

class client_session : public session_base {
 public:
  // The request is on pending_output() at once. Invalid options (see client_handshake)
  // leave the session in handshake_failed with reason() saying why.
  explicit client_session(const ws_url& url, client_session_options options = {});

  // Takes received bytes, writes what they complete into `events` (at least one slot,
  // else nothing happens), and returns how many bytes it took. Stops early — call again
  // with input.subspan(consumed) — when `events` is full or after an event whose payload
  // lives in engine storage (as connection::feed). Frames behind the 101 head in the same
  // input follow the `open` event in the same call when `events` has room. After a failed
  // handshake it takes everything and reports nothing (a non-101 body past
  // client_options::max_body_bytes is not collected). `input` must be writable.
  [[nodiscard]] session_feed_result feed(std::span<std::byte> input, std::span<session_event> events);
  // The transport ended: a close 1006 once open, handshake_failed during the handshake.
  // False when there is nothing to report (e.g. the expected EOF after a clean close).
  bool feed_eof(session_event& out);

  // The server's response head (after `open` or `handshake_failed`).
  const http_response& response() const noexcept { return handshake_.response(); }
  int status() const noexcept { return handshake_.status(); }
  // A non-101 response's body, when short enough to be collected.
  std::string_view body() const noexcept { return handshake_.body(); }
  // Why the handshake failed; empty otherwise.
  std::string_view reason() const noexcept;
  // The subprotocol the server chose (one we offered); empty for none.
  std::string_view protocol() const noexcept { return handshake_.protocol(); }

 private:
  session_feed_result on_response(std::span<std::byte> input, std::size_t used,
                                  std::span<session_event> events);
  void fail(session_event& out, std::string_view why);

  client_session_options options_;
  client_handshake handshake_;
  std::string reason_;  // failures the handshake does not know of (deflate, EOF)
};

}  // namespace ws6455
