// client_session: client_handshake, then connection(role::client), through one feed().
#include <utility>

#include "ws6455/client_session.hpp"

namespace ws6455 {

namespace {

client_options with_offer(client_options o, const std::optional<permessage_deflate::client_options>& deflate) {
  o.extensions = deflate ? permessage_deflate::make_offer(*deflate) : std::string();
  return o;
}

}  // namespace

client_session::client_session(const ws_url& url, client_session_options options)
    : options_(std::move(options)), handshake_(url, with_offer(options_.handshake, options_.deflate)) {
  if (handshake_.state() == handshake_state::failed) {
    phase_ = phase::failed;  // invalid options: reason() says which
    return;
  }
  set_head_output(handshake_.request());
}

std::string_view client_session::reason() const noexcept {
  return reason_.empty() ? handshake_.reason() : std::string_view(reason_);
}

void client_session::fail(session_event& out, std::string_view why) {
  phase_ = phase::failed;
  // §4.1: a client that fails the handshake just closes the transport; unsent request
  // bytes are moot then.
  drop_head_output();
  if (!why.empty()) reason_ = why;
  out = session_event{session_event_type::handshake_failed, true, static_cast<std::uint16_t>(status()),
                      protocol_error::none, {}, reason()};
}

session_feed_result client_session::feed(std::span<std::byte> input, std::span<session_event> events) {
  if (events.empty()) return {};
  switch (phase_) {
    case phase::handshake: {
      const std::size_t used = handshake_.feed(std::span<const std::byte>(input));
      return on_response(input, used, events);
    }
    case phase::request_ready: return {};  // a server-only state
    case phase::failed: return {input.size(), 0};
    case phase::open: break;
  }
  return feed_frames(input, events);
}

session_feed_result client_session::on_response(std::span<std::byte> input, std::size_t used,
                                                std::span<session_event> events) {
  switch (handshake_.state()) {
    case handshake_state::need_more:
    case handshake_state::request_ready: return {used, 0};
    case handshake_state::failed: fail(events[0], {}); return {input.size(), 1};
    case handshake_state::done: break;
  }
  config cfg = options_.frames;
  cfg.deflate.reset();
  // An absent Sec-WebSocket-Extensions means no compression; one that names an extension
  // we did not offer was refused by the handshake already (§4.1 item 6 of the client's checks).
  if (!handshake_.extensions().empty()) {
    auto params = permessage_deflate::validate_response(
        handshake_.extensions(), options_.deflate ? *options_.deflate : permessage_deflate::client_options{});
    if (!params) {
      // RFC 7692 §5 / RFC 6455 §4.1: a response we cannot honour fails the connection.
      fail(events[0], "invalid permessage-deflate response: " + params.error());
      return {input.size(), 1};
    }
    cfg.deflate = *params;
  }
  conn_.emplace(role::client, cfg);
  phase_ = phase::open;
  events[0] = session_event{session_event_type::open, true, 0, protocol_error::none, {}, {}};
  // The server may send frames right behind its 101, in the same read: hand them on now.
  if (used == input.size() || events.size() == 1) return {used, 1};
  const auto r = feed_frames(input.subspan(used), events.subspan(1));
  return {used + r.consumed, 1 + r.events};
}

bool client_session::feed_eof(session_event& out) {
  switch (phase_) {
    case phase::handshake:
    case phase::request_ready:
      // A non-101 answer whose body was cut short still reports its status.
      fail(out, handshake_.status() != 0 && !handshake_.reason().empty()
                    ? std::string(handshake_.reason())
                    : std::string("the transport ended during the opening handshake"));
      return true;
    case phase::failed: return false;
    case phase::open: break;
  }
  return feed_frames_eof(out);
}

}  // namespace ws6455
