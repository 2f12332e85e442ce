// What server_session and client_session share: one object from the opening
// handshake (RFC 6455 §4) to the end of the close handshake (§7), for embedders
// who let ws6455 do the HTTP/1.1 upgrade too. Sans-I/O like the rest:
//
//   bytes in:   feed(received, events)  -> session events (handshake and frames)
//   bytes out:  pending_output() / consume_output(n): the request or response head
//               first, then frames, through the same pair
//
// Those who do the HTTP part elsewhere keep using server_handshake/client_handshake
// and connection directly; a session is only those objects wired together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ws6455/connection.hpp"
#include "ws6455/error.hpp"
#include "ws6455/event.hpp"

namespace ws6455 {

enum class session_event_type : std::uint8_t {
  // The frame layer's events, as event_type describes them.
  text,
  binary,
  ping,
  pong,
  close,
  fail,
  // The opening handshake.
  request,           // server: a valid upgrade request; inspect request(), then accept() or reject()
  open,              // client: the server's 101 was valid; the WebSocket is open
  handshake_failed,  // no WebSocket: `code` is the HTTP status (0 if none), `reason` says why
};

// One event. Frame events carry what `event` carries; see connection::feed for
// how long `data`/`reason` stay valid. A handshake_failed `reason` lives in the
// session and stays valid as long as it does.
struct session_event {
  session_event_type type = session_event_type::binary;
  bool fin = true;
  std::uint16_t code = 0;  // close and fail: the close code; handshake_failed: the HTTP status
  protocol_error error = protocol_error::none;  // fail
  std::span<const std::byte> data;
  std::string_view reason;

  std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
  }
};

enum class session_state : std::uint8_t {
  handshake,      // the opening handshake is in progress
  request_ready,  // server: a valid request waits for accept() or reject(); feed() takes nothing
  open,           // from here on, connection_state's meanings
  closing,
  closed,
  failed,
  handshake_failed,  // no WebSocket (refused, invalid, or the transport ended first): write
                     // pending_output() if any (the server's error response), then close
};

struct session_feed_result {
  std::size_t consumed = 0;  // bytes of `input` taken; feed the rest again
  std::size_t events = 0;    // events written to the front of `events`
};

// The shared part: output, sending, and the WebSocket once it is open. Not used on
// its own; a moved-from session may only be destroyed or assigned to.
class session_base {
 public:
  session_state state() const noexcept;

  // The frame layer, once the WebSocket is open (nullptr before, and when the
  // handshake failed): for what the forwarders below do not cover (settings(),
  // peer_close_code(), last_error(), ...).
  connection* websocket() noexcept { return conn_ ? &*conn_ : nullptr; }
  const connection* websocket() const noexcept { return conn_ ? &*conn_ : nullptr; }

  // Sending, as on connection. Before the WebSocket is open (or when the handshake
  // failed) nothing can be sent and these return send_result::closed.
  [[nodiscard]] send_result send_text(std::string_view text, bool trusted_utf8 = false);
  [[nodiscard]] send_result send_binary(std::span<const std::byte> data);
  [[nodiscard]] send_result send_ping(std::span<const std::byte> data = {});
  [[nodiscard]] send_result send_pong(std::span<const std::byte> data = {});
  [[nodiscard]] send_result close(std::uint16_t code = 1000, std::string_view reason = {});
  [[nodiscard]] send_result send_fragment(opcode type, std::span<const std::byte> data, bool fin);

  // Bytes to write, in order: the handshake head (client request, server 101 or error
  // response) until it is consumed, then the frames. One call may return only the head
  // even when frames wait behind it: loop while want_write(). consume_output(n) takes
  // n <= pending_output().size().
  std::span<const std::byte> pending_output() const noexcept;
  void consume_output(std::size_t n) noexcept;
  // For asynchronous writers, as connection::pin_output (the head's bytes never move).
  void pin_output() noexcept;
  // As connection::release_storage: done with every event reported so far.
  void release_storage() noexcept;
  bool want_write() const noexcept;
  // Read more? False while a request waits for a decision, after the handshake failed,
  // and once the frame layer is done reading; except that a client keeps reading after a
  // clean close until feed_eof(), since the server closes TCP first (RFC 6455 §7.1.1).
  bool want_read() const noexcept;
  // Close the transport now? After a failed handshake once the error response (if any)
  // is written; once open, as connection::should_close_transport (a client waits for
  // the server's EOF after a clean close: bound that with a timeout).
  bool should_close_transport() const noexcept;

 protected:
  session_base() = default;
  ~session_base() = default;
  session_base(session_base&&) noexcept = default;
  session_base& operator=(session_base&&) noexcept = default;

  // The frame-layer part of feed(): one connection::feed call, events converted.
  session_feed_result feed_frames(std::span<std::byte> input, std::span<session_event> events);
  // The frame-layer part of feed_eof().
  bool feed_frames_eof(session_event& out);
  // Queues a handshake head (or error response) to write before any frame.
  void set_head_output(std::string_view bytes);
  void drop_head_output() noexcept;

  enum class phase : std::uint8_t { handshake, request_ready, open, failed };
  phase phase_ = phase::handshake;
  std::optional<connection> conn_;

 private:
  std::string head_out_;  // a copy, so that moving the session cannot invalidate it
  std::size_t head_sent_ = 0;
  bool eof_ = false;  // feed_eof() was called once open
};

}  // namespace ws6455
