// server_session: server_handshake, then connection(role::server), through one feed().
#include <utility>

#include "ws6455/server_session.hpp"

namespace ws6455 {

server_session::server_session(server_session_options options)
    : options_(std::move(options)), handshake_(options_.limits) {}

session_feed_result server_session::feed(std::span<std::byte> input, std::span<session_event> events) {
  if (events.empty()) return {};
  switch (phase_) {
    case phase::handshake: {
      const std::size_t used = handshake_.feed(std::span<const std::byte>(input));
      switch (handshake_.state()) {
        case handshake_state::need_more: return {used, 0};
        case handshake_state::request_ready:
          // Stop at the end of the head: what follows is frames, and whether there is a
          // WebSocket to give them to is the application's call (RFC 6455 §4.2.2).
          phase_ = phase::request_ready;
          events[0] = session_event{session_event_type::request, true, 0, protocol_error::none, {}, {}};
          return {used, 1};
        case handshake_state::failed:
          // Not an upgrade we can take (400/405/426/431): answer, then close (§4.2.1).
          phase_ = phase::failed;
          set_head_output(handshake_.response());
          events[0] = session_event{session_event_type::handshake_failed, true,
                                    static_cast<std::uint16_t>(handshake_.status()), protocol_error::none, {},
                                    handshake_.reason()};
          return {input.size(), 1};
        case handshake_state::done: break;  // only accept() gets here
      }
      return {used, 0};
    }
    case phase::request_ready: return {};  // accept() or reject() first
    case phase::failed: return {input.size(), 0};  // not a WebSocket: whatever follows is not ours
    case phase::open: break;
  }
  return feed_frames(input, events);
}

bool server_session::feed_eof(session_event& out) {
  switch (phase_) {
    case phase::handshake:
    case phase::request_ready:
      phase_ = phase::failed;
      out = session_event{session_event_type::handshake_failed, true, 0, protocol_error::none, {},
                          "the transport ended during the opening handshake"};
      return true;
    case phase::failed: return false;
    case phase::open: break;
  }
  return feed_frames_eof(out);
}

bool server_session::accept() { return accept(options_.accept); }

bool server_session::accept(const accept_options& options) {
  if (phase_ != phase::request_ready) return false;
  accept_options answer = options;
  config cfg = options_.frames;
  answer.extensions.clear();
  cfg.deflate.reset();
  if (options_.deflate) {
    // RFC 7692 §5: the first acceptable offer wins; none acceptable means no compression.
    if (auto agreed = permessage_deflate::negotiate(handshake_.request().offered_extensions(), *options_.deflate)) {
      answer.extensions = std::move(agreed->response);
      cfg.deflate = agreed->params;
    }
  }
  const bool ok = handshake_.accept(answer);
  set_head_output(handshake_.response());
  if (!ok) {
    phase_ = phase::failed;
    return false;
  }
  conn_.emplace(role::server, cfg);
  phase_ = phase::open;
  return true;
}

void server_session::reject(int status, std::string_view body, std::span<const http_header> headers) {
  if (phase_ != phase::request_ready) return;
  handshake_.reject(status, body, headers);
  set_head_output(handshake_.response());
  phase_ = phase::failed;
}

}  // namespace ws6455
