// What the frame layer reports. Payload spans point either into the buffer the
// caller passed to connection::feed (unmasked in place) or into the connection's
// own storage; see connection::feed for how long each stays valid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "ws6455/error.hpp"

namespace ws6455 {

enum class event_type : std::uint8_t {
  text,    // a text message (or, streaming, a piece of one); valid UTF-8 so far
  binary,  // a binary message (or a piece of one)
  ping,    // the peer's ping; with auto_pong on, the pong is already queued
  pong,    // the peer's pong (solicited or not, §5.5.3)
  close,   // the peer's close frame; code is 1005 when it had no body
  fail,    // we failed the connection (§7.1.7); code/reason are what we sent
};

struct event {
  event_type type = event_type::binary;
  bool fin = true;                 // last piece of the message (always true in whole-message mode)
  std::uint16_t code = 0;          // close and fail
  protocol_error error = protocol_error::none;  // fail
  std::span<const std::byte> data;  // message, piece, ping or pong payload
  std::string_view reason;          // close and fail

  std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
  }
};

}  // namespace ws6455
