// The part server_session and client_session share: the handshake head queued in
// front of the frames, and the forwarding to the connection once it exists.
#include <algorithm>
#include <array>

#include "ws6455/session.hpp"

namespace ws6455 {

namespace {

session_event_type to_session_type(event_type t) noexcept {
  switch (t) {
    case event_type::text: return session_event_type::text;
    case event_type::binary: return session_event_type::binary;
    case event_type::ping: return session_event_type::ping;
    case event_type::pong: return session_event_type::pong;
    case event_type::close: return session_event_type::close;
    case event_type::fail: return session_event_type::fail;
  }
  return session_event_type::fail;
}

session_event to_session_event(const event& e) noexcept {
  return session_event{to_session_type(e.type), e.fin, e.code, e.error, e.data, e.reason};
}

}  // namespace

session_state session_base::state() const noexcept {
  switch (phase_) {
    case phase::handshake: return session_state::handshake;
    case phase::request_ready: return session_state::request_ready;
    case phase::failed: return session_state::handshake_failed;
    case phase::open: break;
  }
  switch (conn_->state()) {
    case connection_state::open: return session_state::open;
    case connection_state::closing: return session_state::closing;
    case connection_state::close_received: return session_state::closing;  // ours is still to go (auto_close_reply off)
    case connection_state::closed: return session_state::closed;
    case connection_state::failed: return session_state::failed;
  }
  return session_state::failed;
}

send_result session_base::send_text(std::string_view text, bool trusted_utf8) {
  return conn_ ? conn_->send_text(text, trusted_utf8) : send_result::closed;
}
send_result session_base::send_binary(std::span<const std::byte> data) {
  return conn_ ? conn_->send_binary(data) : send_result::closed;
}
send_result session_base::send_ping(std::span<const std::byte> data) {
  return conn_ ? conn_->send_ping(data) : send_result::closed;
}
send_result session_base::send_pong(std::span<const std::byte> data) {
  return conn_ ? conn_->send_pong(data) : send_result::closed;
}
send_result session_base::close(std::uint16_t code, std::string_view reason) {
  return conn_ ? conn_->close(code, reason) : send_result::closed;
}
send_result session_base::send_fragment(opcode type, std::span<const std::byte> data, bool fin) {
  return conn_ ? conn_->send_fragment(type, data, fin) : send_result::closed;
}

std::span<const std::byte> session_base::pending_output() const noexcept {
  // The head goes first: a 101 must precede the frames it announces (RFC 6455 §4.2.2).
  if (head_sent_ < head_out_.size())
    return std::as_bytes(std::span<const char>(head_out_.data() + head_sent_, head_out_.size() - head_sent_));
  return conn_ ? conn_->pending_output() : std::span<const std::byte>{};
}

void session_base::consume_output(std::size_t n) noexcept {
  const std::size_t head = std::min(n, head_out_.size() - head_sent_);
  head_sent_ += head;
  n -= head;
  if (head != 0 && head_sent_ == head_out_.size()) drop_head_output();  // written: free it
  if (n != 0 && conn_) conn_->consume_output(n);
}

void session_base::release_storage() noexcept {
  if (conn_) conn_->release_storage();
}

void session_base::pin_output() noexcept {
  // The head's storage is not touched until it is all consumed, so only frames need pinning.
  if (head_sent_ == head_out_.size() && conn_) conn_->pin_output();
}

bool session_base::want_write() const noexcept {
  return head_sent_ < head_out_.size() || (conn_ && conn_->want_write());
}

bool session_base::want_read() const noexcept {
  switch (phase_) {
    case phase::handshake: return true;
    case phase::request_ready:
    case phase::failed: return false;
    case phase::open: break;
  }
  if (conn_->want_read()) return true;
  return conn_->which_role() == role::client && conn_->state() == connection_state::closed && !eof_;
}

bool session_base::should_close_transport() const noexcept {
  if (head_sent_ < head_out_.size()) return false;
  switch (phase_) {
    case phase::handshake:
    case phase::request_ready: return false;
    case phase::failed: return true;
    case phase::open: break;
  }
  return conn_->should_close_transport();
}

session_feed_result session_base::feed_frames(std::span<std::byte> input, std::span<session_event> events) {
  // One connection::feed per call keeps its contract: events pointing into engine storage
  // stay valid until the caller feeds again.
  std::array<event, 32> buffer;
  const std::size_t room = std::min(buffer.size(), events.size());
  const auto r = conn_->feed(input, std::span<event>(buffer.data(), room));
  for (std::size_t i = 0; i < r.events; ++i) events[i] = to_session_event(buffer[i]);
  return {r.consumed, r.events};
}

bool session_base::feed_frames_eof(session_event& out) {
  eof_ = true;
  event e;
  if (!conn_->feed_eof(e)) return false;
  out = to_session_event(e);
  return true;
}

void session_base::set_head_output(std::string_view bytes) {
  head_out_.assign(bytes);
  head_sent_ = 0;
}

void session_base::drop_head_output() noexcept {
  std::string().swap(head_out_);
  head_sent_ = 0;
}

}  // namespace ws6455
