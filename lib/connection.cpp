#include "ws6455/connection.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "deflate/deflate_codec.hpp"
#include "mask.hpp"
#include "random.hpp"
#include "utf8.hpp"
#include "ws6455/close_code.hpp"

namespace ws6455 {

namespace {

constexpr std::size_t max_control_payload = 125;  // RFC 6455 §5.5
// Reassembly storage larger than this is given back once its message is delivered,
// so one large message does not pin its memory for the life of the connection.
constexpr std::size_t retained_message_capacity = 1u << 20;
// The first output allocation: a few control frames or a small message.
constexpr std::size_t min_output_capacity = 512;

inline std::uint16_t load_be16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>((static_cast<unsigned>(p[0]) << 8) | static_cast<unsigned>(p[1]));
}
inline std::uint64_t load_be64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

// ASCII, for n <= 16: two overlapping words, no call (tiny text frames: chat, acks).
inline bool is_ascii_small(const std::byte* p, std::size_t n) noexcept {
  std::uint64_t a = 0, b = 0;
  if (n >= 8) {
    std::memcpy(&a, p, 8);
    std::memcpy(&b, p + n - 8, 8);
  } else {
    for (std::size_t i = 0; i < n; ++i) a |= static_cast<std::uint64_t>(p[i]);
  }
  return ((a | b) & 0x8080808080808080ull) == 0;
}

inline bool valid_utf8(std::span<const std::byte> s) noexcept {
  detail::utf8_state st = 0;
  return detail::utf8_validate(st, s.data(), s.size()) && detail::utf8_complete(st);
}

// The most a compressed piece of n bytes can take: incompressible input goes out as
// stored blocks of at most (1 << (memLevel + 6)) - 1 bytes with 5 header bytes each,
// and the sync flush adds an empty stored block (RFC 7692 §7.2.1).
inline std::size_t deflate_bound(std::size_t n, int mem_level) noexcept {
  const std::size_t block = (std::size_t{1} << (mem_level + 6)) - 1;
  return n + 5 * (n / block + 1) + 10;
}

inline std::span<const std::byte> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

// permessage-deflate state (RFC 7692 §7.2): one inflater for the peer's messages, one
// deflater for ours, each with its own context-takeover rule.
struct connection::deflate_state {
  detail::inflater inflate;
  detail::deflater deflate;
  bool reset_inflater_per_message = false;
  bool reset_deflater_per_message = false;
  std::size_t compress_threshold = 0;
  std::vector<std::byte> scratch;  // our compressed payload, before it is framed
};

// ---------------------------------------------------------------- prepared_message

prepared_message::prepared_message(opcode op, std::span<const std::byte> payload) {
  const frame_header h = encode_frame_header(op, true, false, payload.size());
  bytes_.resize(h.size + payload.size());
  std::memcpy(bytes_.data(), h.bytes.data(), h.size);
  if (!payload.empty()) std::memcpy(bytes_.data() + h.size, payload.data(), payload.size());
}

prepared_message prepared_message::text(std::string_view s) { return prepared_message(opcode::text, as_bytes(s)); }

// ---------------------------------------------------------------- lifetime

connection::connection(role r, const config& cfg) : cfg_(cfg), role_(r) {
  if (cfg_.deflate) {
    const deflate_params& p = *cfg_.deflate;
    const bool server = role_ == role::server;
    deflate_ = std::make_unique<deflate_state>();
    // A server inflates what the client compressed with the client's window, and the
    // client's no_context_takeover decides whether that window survives a message.
    const int peer_bits = server ? p.client_max_window_bits : p.server_max_window_bits;
    const int own_bits = server ? p.server_max_window_bits : p.client_max_window_bits;
    deflate_->reset_inflater_per_message = server ? p.client_no_context_takeover : p.server_no_context_takeover;
    deflate_->reset_deflater_per_message = server ? p.server_no_context_takeover : p.client_no_context_takeover;
    deflate_->compress_threshold = p.compress_threshold;
    if (!deflate_->inflate.init(peer_bits) || !deflate_->deflate.init(own_bits, p.mem_level)) {
      // zlib could not allocate its state: nothing can be exchanged with this peer.
      state_ = connection_state::failed;
      rx_ = rx::done;
    }
  }
}

connection::~connection() = default;
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&&) noexcept = default;

// ---------------------------------------------------------------- receiving

protocol_error connection::check_first_bytes(std::byte b0, std::byte b1) const noexcept {
  const unsigned op = static_cast<unsigned>(b0) & 0x0F;
  const bool fin = (static_cast<unsigned>(b0) & 0x80) != 0;
  const unsigned rsv = static_cast<unsigned>(b0) & 0x70;
  const bool masked = (static_cast<unsigned>(b1) & 0x80) != 0;
  const unsigned len7 = static_cast<unsigned>(b1) & 0x7F;

  // RFC 6455 §5.2: opcodes 3-7 and 0xB-0xF are reserved.
  if (!(op <= 2 || (op >= 8 && op <= 10))) return protocol_error::reserved_opcode;
  const bool control = (op & 0x8) != 0;
  // §5.2: RSV bits must be 0 unless an extension defines them. RFC 7692 §6 claims RSV1
  // for the first frame of a compressed data message only (§6.1: not on continuations,
  // not on control frames).
  if (rsv & 0x30) return protocol_error::reserved_bits;
  if ((rsv & 0x40) && (!deflate_ || control || op == 0)) return protocol_error::reserved_bits;
  if (control) {
    // §5.5: control frames are never fragmented and carry at most 125 bytes. The 7-bit
    // field already tells: no need to wait for an extended length.
    if (!fin) return protocol_error::control_fragmented;
    if (len7 > max_control_payload) return protocol_error::control_too_long;
  } else if (op == 0) {
    if (!in_message_) return protocol_error::unexpected_continuation;  // §5.4
  } else if (in_message_) {
    return protocol_error::expected_continuation;  // §5.4: no interleaving of messages
  }
  // §5.1: a server must fail on an unmasked frame, a client on a masked one.
  if (role_ == role::server && !masked && !cfg_.accept_unmasked_frames) return protocol_error::unmasked_frame;
  if (role_ == role::client && masked) return protocol_error::masked_frame;
  return protocol_error::none;
}

std::size_t connection::header_size(std::byte b1) noexcept {
  const unsigned len7 = static_cast<unsigned>(b1) & 0x7F;
  const bool masked = (static_cast<unsigned>(b1) & 0x80) != 0;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
}

protocol_error connection::start_frame(const std::byte* h) noexcept {
  const unsigned b0 = static_cast<unsigned>(h[0]);
  const unsigned len7 = static_cast<unsigned>(h[1]) & 0x7F;
  const bool masked = (static_cast<unsigned>(h[1]) & 0x80) != 0;
  std::uint64_t len = len7;
  std::size_t i = 2;
  // §5.2: "the minimal number of bytes MUST be used to encode the length", and the
  // most significant bit of the 64-bit form MUST be 0.
  if (len7 == 126) {
    len = load_be16(h + 2);
    if (len < 126) return protocol_error::non_minimal_length;
    i = 4;
  } else if (len7 == 127) {
    len = load_be64(h + 2);
    if (len >> 63) return protocol_error::length_msb_set;
    if (len <= 0xFFFF) return protocol_error::non_minimal_length;
    i = 10;
  }
  const unsigned op = b0 & 0x0F;
  if (op < 8) {
    // Limits on the declared length, before a byte of payload is buffered.
    if (len > cfg_.max_frame_size) return protocol_error::frame_too_large;
    if (op != 0) {
      in_message_ = true;
      msg_text_ = op == static_cast<unsigned>(opcode::text);
      msg_compressed_ = (b0 & 0x40) != 0;
      msg_fragments_ = 0;
      msg_size_ = 0;
      msg_inflated_ = 0;
      utf8_state_ = 0;
    }
    if (len > cfg_.max_message_size - msg_size_) return protocol_error::message_too_large;
    if (++msg_fragments_ > cfg_.max_fragments) return protocol_error::too_many_fragments;
    msg_size_ += len;
  } else {
    control_.clear();
  }
  frame_opcode_ = static_cast<std::uint8_t>(op);
  frame_fin_ = (b0 & 0x80) != 0;
  frame_masked_ = masked;
  frame_started_ = false;
  frame_remaining_ = len;
  mask_phase_ = 0;
  if (masked) std::memcpy(mask_key_, h + i, 4);
  return protocol_error::none;
}

connection::feed_result connection::feed(std::span<std::byte> input, std::span<event> events) {
  if (release_message_) {
    message_.clear();
    if (message_.capacity() > retained_message_capacity) std::vector<std::byte>().swap(message_);
    release_message_ = false;
  }
  if (rx_ == rx::done) return {input.size(), 0};  // §7.1.4: nothing more is read after a close

  std::byte* const data = input.data();
  const std::size_t len = input.size();
  std::size_t pos = 0;
  std::size_t n = 0;
  bool stop = false;

  while (!stop && n < events.size() && rx_ != rx::done) {
    if (rx_ == rx::header && stash_len_ == 0 && !in_message_) {
      pos = fast_frames(data, pos, len, events, n);
      if (rx_ == rx::done || n == events.size()) break;
    }
    if (rx_ == rx::header) {
      if (pos == len) break;
      const std::byte* h;
      if (stash_len_ == 0 && len - pos >= max_frame_header_size) {
        // The whole header is in the caller's buffer: read it there.
        h = data + pos;
        const protocol_error e = check_first_bytes(h[0], h[1]);
        if (e != protocol_error::none) { fail(e, events, n); break; }
        pos += header_size(h[1]);
      } else {
        // Otherwise gather a header split across feeds in the 14-byte stash.
        while (stash_len_ < 2 && pos < len) stash_[stash_len_++] = data[pos++];
        if (stash_len_ < 2) break;
        if (stash_len_ == 2) {
          const protocol_error e = check_first_bytes(stash_[0], stash_[1]);
          if (e != protocol_error::none) { fail(e, events, n); break; }
        }
        const std::size_t need = header_size(stash_[1]);
        const std::size_t take = std::min(need - stash_len_, len - pos);
        if (take) std::memcpy(stash_ + stash_len_, data + pos, take);
        stash_len_ = static_cast<std::uint8_t>(stash_len_ + take);
        pos += take;
        if (stash_len_ < need) break;
        h = stash_;
        stash_len_ = 0;
      }
      const protocol_error e = start_frame(h);
      if (e != protocol_error::none) { fail(e, events, n); break; }
      rx_ = rx::payload;
    }

    // rx_ == rx::payload: take what is here of the current frame.
    const std::size_t avail = static_cast<std::size_t>(std::min<std::uint64_t>(frame_remaining_, len - pos));
    if (avail == 0 && frame_remaining_ != 0) break;  // wait for more input
    std::byte* const chunk = data + pos;
    const bool whole_here = !frame_started_ && avail == frame_remaining_;
    if (frame_masked_ && avail) mask_phase_ = static_cast<std::uint8_t>(detail::mask_in_place(chunk, avail, mask_key_, mask_phase_));
    pos += avail;
    frame_remaining_ -= avail;
    frame_started_ = true;
    const bool frame_done = frame_remaining_ == 0;
    if (frame_opcode_ >= 8) {
      if (whole_here) {
        on_control({chunk, avail}, events, n, stop);
      } else {
        control_.insert(control_.end(), chunk, chunk + avail);
        if (frame_done) {
          on_control(control_, events, n, stop);
          stop = true;  // the event points into control_, which the next frame reuses
        }
      }
    } else if (msg_compressed_) {
      on_compressed({chunk, avail}, frame_done, events, n, stop);
    } else {
      on_data({chunk, avail}, frame_done, whole_here, events, n, stop);
    }
    if (frame_done && rx_ == rx::payload) rx_ = rx::header;
  }
  if (rx_ == rx::done) pos = len;  // input after a close or a failure is ignored
  return {pos, n};
}

std::size_t connection::fast_frames(std::byte* data, std::size_t pos, std::size_t len, std::span<event> events,
                                    std::size_t& n) {
  // The common case in one pass, without the per-frame state machine: a whole,
  // unfragmented, uncompressed text or binary frame, header and payload both in the
  // caller's buffer. Anything else (a control frame, a fragment, RSV bits, a length in
  // a non-minimal form, a limit, a partial frame) leaves it to the general path, which
  // re-reads the frame from its first byte: nothing here changes state before the
  // frame is known to be taken whole.
  const bool server = role_ == role::server;
  const unsigned want_mask = server ? 0x80 : 0;
  const std::uint64_t limit = std::min<std::uint64_t>(cfg_.max_frame_size, cfg_.max_message_size);
  if (cfg_.max_fragments == 0) return pos;
  const std::size_t mask_bytes = want_mask ? 4 : 0;
  // Locals, not the members and references they mirror: stores through `events`
  // could alias them, which would force a reload per frame.
  event* const out = events.data();
  const std::size_t room = events.size();
  std::size_t k = n;
  for (; k < room; ++k) {
    const std::size_t avail = len - pos;
    if (avail < 2) break;
    const std::byte* h = data + pos;
    const unsigned b0 = static_cast<unsigned>(h[0]);
    const unsigned b1 = static_cast<unsigned>(h[1]);
    // FIN=1, RSV=0, text or binary, mask bit as our role requires.
    if (b0 - 0x81 > 1 || (b1 & 0x80) != want_mask) break;  // b0: 0x81 or 0x82
    const unsigned len7 = b1 & 0x7F;
    std::size_t header = 2 + mask_bytes;
    std::uint64_t size = len7;
    if (len7 >= 126) {
      if (avail < 10) break;
      if (len7 == 126) {
        size = load_be16(h + 2);
        header += 2;
        if (size < 126) break;
      } else {
        size = load_be64(h + 2);
        header += 8;
        if (size <= 0xFFFF || (size >> 63)) break;
      }
    }
    // size < 2^63 here, so header + size cannot wrap.
    if (header + size > avail || size > limit) break;
    std::byte* payload = data + pos + header;
    if (want_mask) {
      if (size <= 16) detail::mask_small(payload, payload, size, h + header - 4, 0);
      else detail::mask_in_place(payload, size, h + header - 4, 0);
    }
    pos += header + size;
    const bool text = (b0 & 0x0F) == static_cast<unsigned>(opcode::text);
    if (text && !(size <= 16 && is_ascii_small(payload, size))) {
      detail::utf8_state st = 0;
      if (!detail::utf8_validate(st, payload, size) || !detail::utf8_complete(st)) {
        n = k;
        fail(protocol_error::invalid_utf8, events, n);  // §8.1
        return pos;
      }
    }
    event& ev = out[k];
    ev.type = text ? event_type::text : event_type::binary;
    ev.fin = true;
    ev.code = 0;
    ev.error = protocol_error::none;
    ev.data = {payload, static_cast<std::size_t>(size)};
    ev.reason = {};
  }
  n = k;
  return pos;
}

void connection::emit(const event& ev, std::span<event> events, std::size_t& n) noexcept {
  assert(n < events.size());  // the loop makes at most one event per turn, with room checked
  events[n++] = ev;
}

void connection::on_data(std::span<std::byte> chunk, bool frame_done, bool whole_here,
                         std::span<event> events, std::size_t& n, bool& stop) {
  // §8.1: text must be UTF-8; checked as bytes arrive, so a bad byte fails at once.
  if (msg_text_ && !detail::utf8_validate(utf8_state_, chunk.data(), chunk.size())) {
    fail(protocol_error::invalid_utf8, events, n);
    return;
  }
  const bool msg_end = frame_done && frame_fin_;
  if (msg_end && msg_text_ && !detail::utf8_complete(utf8_state_)) {
    fail(protocol_error::invalid_utf8, events, n);  // ends inside a code point
    return;
  }
  const event_type type = msg_text_ ? event_type::text : event_type::binary;
  if (msg_end) in_message_ = false;
  if (cfg_.mode == delivery::streaming) {
    if (!chunk.empty() || msg_end) emit(event{type, msg_end, 0, protocol_error::none, chunk, {}}, events, n);
    return;
  }
  if (msg_end && whole_here && message_.empty()) {
    // The whole message is one frame in the caller's buffer: report it in place.
    emit(event{type, true, 0, protocol_error::none, chunk, {}}, events, n);
    return;
  }
  message_.insert(message_.end(), chunk.begin(), chunk.end());
  if (msg_end) {
    emit(event{type, true, 0, protocol_error::none, message_, {}}, events, n);
    release_message_ = true;
    stop = true;
  }
}

void connection::on_compressed(std::span<const std::byte> chunk, bool frame_done, std::span<event> events,
                               std::size_t& n, bool& stop) {
  const bool msg_end = frame_done && frame_fin_;
  const std::size_t before = message_.size();
  // max_message_size bounds the inflated size, enforced while inflating: a bomb stops
  // after at most the limit of output (RFC 7692 §8.1 leaves limits to us).
  const std::uint64_t budget = cfg_.max_message_size - msg_inflated_;
  const std::size_t max_out = before + static_cast<std::size_t>(std::min<std::uint64_t>(budget, SIZE_MAX - before));
  std::size_t consumed = 0;
  const detail::codec_status st = deflate_->inflate.inflate(chunk, msg_end, message_, max_out, consumed);
  const std::size_t produced = message_.size() - before;
  msg_inflated_ += produced;
  // RFC 7692 §8.2.3.1 / RFC 6455 §8.1: validate the inflated text, fail fast. This comes
  // before the codec's verdict so that bad text followed by bad data (or by more output
  // than the limit) fails the same way however the input was split.
  if (msg_text_ && !detail::utf8_validate(utf8_state_, message_.data() + before, produced)) {
    fail(protocol_error::invalid_utf8, events, n);
    return;
  }
  if (st == detail::codec_status::error) {
    fail(protocol_error::bad_compressed_data, events, n);
    return;
  }
  if (st == detail::codec_status::full) {
    fail(protocol_error::message_too_large, events, n);
    return;
  }
  if (msg_end && msg_text_ && !detail::utf8_complete(utf8_state_)) {
    fail(protocol_error::invalid_utf8, events, n);
    return;
  }
  if (msg_end) {
    in_message_ = false;
    if (deflate_->reset_inflater_per_message) deflate_->inflate.reset();
  }
  const event_type type = msg_text_ ? event_type::text : event_type::binary;
  if (cfg_.mode == delivery::streaming) {
    // Pieces live in message_, which the next feed() clears; stop so that no later
    // piece of this call reallocates it under an earlier event.
    if (produced || msg_end) {
      emit(event{type, msg_end, 0, protocol_error::none, {message_.data() + before, produced}, {}}, events, n);
      release_message_ = true;
      stop = true;
    }
    return;
  }
  if (msg_end) {
    emit(event{type, true, 0, protocol_error::none, message_, {}}, events, n);
    release_message_ = true;
    stop = true;
  }
}

void connection::on_control(std::span<const std::byte> payload, std::span<event> events, std::size_t& n, bool& stop) {
  switch (static_cast<opcode>(frame_opcode_)) {
    case opcode::ping:
      // §5.5.2: answer with a pong carrying the same payload. Automatic pongs waiting in
      // the output are capped, so a ping flood against a peer that does not read cannot
      // grow memory; skipping some is allowed (§5.5.3: a pong for the latest ping suffices).
      if (cfg_.auto_pong && state_ == connection_state::open && pongs_queued_ < cfg_.max_queued_pongs) {
        if (write_frame(opcode::pong, true, false, payload, true) == send_result::ok) ++pongs_queued_;
      }
      emit(event{event_type::ping, true, 0, protocol_error::none, payload, {}}, events, n);
      return;
    case opcode::pong:
      emit(event{event_type::pong, true, 0, protocol_error::none, payload, {}}, events, n);
      return;
    case opcode::close:
      on_close(payload, events, n);
      stop = true;
      return;
    default:
      return;  // unreachable: check_first_bytes admits no other control opcode
  }
}

void connection::on_close(std::span<const std::byte> payload, std::span<event> events, std::size_t& n) {
  std::uint16_t code = close_code::no_status;
  std::string_view reason;
  if (payload.size() == 1) {
    fail(protocol_error::bad_close_payload, events, n);  // §5.5.1: a body starts with a 2-byte code
    return;
  }
  if (payload.size() >= 2) {
    code = load_be16(payload.data());
    if (!is_valid_close_code(code)) {  // §7.4.1, §7.4.2
      fail(protocol_error::bad_close_code, events, n);
      return;
    }
    const auto text = payload.subspan(2);
    if (!valid_utf8(text)) {  // §5.5.1: the reason is UTF-8
      fail(protocol_error::invalid_close_reason, events, n);
      return;
    }
    reason = {reinterpret_cast<const char*>(text.data()), text.size()};
  }
  peer_close_code_ = code;
  in_message_ = false;  // a close inside a fragmented message ends it (Autobahn 7.1.5: echo, not 1002)
  rx_ = rx::done;
  if (state_ == connection_state::open) {
    // §5.5.1: reply with a close, typically echoing the code; a close without a body
    // is answered without one (1005 never goes on the wire, §7.4.1).
    queue_close(code, {});
  }
  state_ = connection_state::closed;
  emit(event{event_type::close, true, code, protocol_error::none, {}, reason}, events, n);
}

void connection::fail(protocol_error e, std::span<event> events, std::size_t& n) {
  // §7.1.7: fail the connection: send a close with the right code (unless one went
  // out already), report it, and read nothing more.
  error_ = e;
  const std::uint16_t code = close_code_for(e);
  if (state_ == connection_state::open) queue_close(code, describe(e));
  state_ = connection_state::failed;
  rx_ = rx::done;
  in_message_ = false;
  emit(event{event_type::fail, true, code, e, {}, describe(e)}, events, n);
}

bool connection::feed_eof(event& out) {
  release_message_ = true;  // nothing reported earlier is referenced any more
  if (rx_ == rx::done) return false;
  rx_ = rx::done;
  in_message_ = false;
  state_ = connection_state::failed;
  peer_close_code_ = close_code::abnormal;  // §7.1.5: closed without a close frame
  out = event{event_type::close, true, close_code::abnormal, protocol_error::none, {},
              "connection closed without a close frame"};
  return true;
}

// ---------------------------------------------------------------- sending

bool connection::output_fits(std::size_t frame_bytes) const noexcept {
  const std::size_t pending = out_size_ - out_head_;
  return frame_bytes <= cfg_.max_write_buffer_size && pending <= cfg_.max_write_buffer_size - frame_bytes;
}

std::byte* connection::reserve_output(std::size_t n) {
  if (out_cap_ - out_size_ < n) {
    const std::size_t pending = out_size_ - out_head_;
    if (out_cap_ - pending >= n && out_head_ >= pending && out_pinned_ == 0) {
      // Enough room once what is pending slides to the front (and it is cheap to slide).
      std::memmove(out_.get(), out_.get() + out_head_, pending);
    } else {
      // Grow from small, doubling: an idle connection that sent a ping holds a few hundred
      // bytes, not write_buffer_size. No zero-fill: every byte is written before it is read.
      const std::size_t cap = std::max({pending + n, out_cap_ * 2, min_output_capacity});
      auto grown = std::make_unique_for_overwrite<std::byte[]>(cap);
      if (pending) std::memcpy(grown.get(), out_.get() + out_head_, pending);
      // Pinned bytes are read from the old storage by a write in flight: keep it (the
      // first one only: a later grow moves a copy nobody reads).
      if (out_pinned_ != 0 && !out_retired_) out_retired_ = std::move(out_);
      out_ = std::move(grown);
      out_cap_ = cap;
    }
    out_head_ = 0;
    out_size_ = pending;
  }
  return out_.get() + out_size_;
}

void connection::next_mask_key(std::byte key[4]) {
  // §5.3: a fresh, unpredictable key for every frame.
  if (cfg_.random) cfg_.random(cfg_.random_context, {key, 4});
  else detail::random_bytes({key, 4});
}

send_result connection::write_frame(opcode op, bool fin, bool rsv1, std::span<const std::byte> payload,
                                    bool bypass_limit) {
  if (!bypass_limit && !output_fits(frame_header_size(payload.size(), role_ == role::client) + payload.size()))
    return send_result::backpressure;
  std::optional<std::array<std::byte, 4>> key;
  if (role_ == role::client) {
    key.emplace();
    next_mask_key(key->data());
  }
  const frame_header h = encode_frame_header(op, fin, rsv1, payload.size(), key);
  std::byte* dst = reserve_output(h.size + payload.size());
  std::memcpy(dst, h.bytes.data(), h.size);
  if (!payload.empty()) {
    if (key) detail::mask_copy(dst + h.size, payload.data(), payload.size(), key->data());
    else std::memcpy(dst + h.size, payload.data(), payload.size());
  }
  out_size_ += h.size + payload.size();
  return send_result::ok;
}

send_result connection::send_data(opcode type, std::span<const std::byte> data, bool fin, bool fragment,
                                   bool trusted_utf8) {
  if (state_ != connection_state::open) return send_result::closed;  // §5.5.1: nothing after a close
  bool first = true;
  if (fragment) {
    if (tx_in_message_) {
      if (type != opcode::continuation && type != (tx_text_ ? opcode::text : opcode::binary))
        return send_result::message_in_progress;
      first = false;
    } else if (type == opcode::continuation) {
      return send_result::no_message_open;
    }
  } else if (tx_in_message_) {
    return send_result::message_in_progress;
  }
  const bool text = first ? type == opcode::text : tx_text_;
  detail::utf8_state st = first ? 0 : tx_utf8_state_;
  if (text && !trusted_utf8) {
    if (!detail::utf8_validate(st, data.data(), data.size()) || (fin && !detail::utf8_complete(st)))
      return send_result::invalid_utf8;
  }
  const bool compress = first ? (deflate_ && data.size() >= deflate_->compress_threshold) : tx_compressed_;
  // Checked before compressing, on zlib's worst case: a refused send must leave the
  // deflate context untouched.
  const std::size_t payload_bound = compress ? deflate_bound(data.size(), cfg_.deflate->mem_level) : data.size();
  if (!output_fits(frame_header_size(payload_bound, role_ == role::client) + payload_bound))
    return send_result::backpressure;
  const opcode wire_op = first ? type : opcode::continuation;
  if (compress) {
    deflate_->scratch.clear();
    if (deflate_->deflate.compress(data, fin, deflate_->scratch) != detail::codec_status::ok) return send_result::closed;
    write_frame(wire_op, fin, first, deflate_->scratch, true);  // RFC 7692 §6: RSV1 on the first frame only
    if (fin && deflate_->reset_deflater_per_message) deflate_->deflate.reset();
  } else {
    write_frame(wire_op, fin, false, data, true);
  }
  tx_in_message_ = !fin;
  if (first) {
    tx_text_ = text;
    tx_compressed_ = compress;
  }
  tx_utf8_state_ = st;
  return send_result::ok;
}

send_result connection::send_text(std::string_view text, bool trusted_utf8) {
  return send_data(opcode::text, as_bytes(text), true, false, trusted_utf8);
}

send_result connection::send_binary(std::span<const std::byte> data) {
  return send_data(opcode::binary, data, true, false, false);
}

send_result connection::send_fragment(opcode type, std::span<const std::byte> data, bool fin) {
  if (is_control(type)) return send_result::not_a_data_opcode;
  return send_data(type, data, fin, true, false);
}

send_result connection::send_ping(std::span<const std::byte> data) {
  if (state_ != connection_state::open) return send_result::closed;
  if (data.size() > max_control_payload) return send_result::control_too_long;
  return write_frame(opcode::ping, true, false, data);
}

send_result connection::send_pong(std::span<const std::byte> data) {
  if (state_ != connection_state::open) return send_result::closed;
  if (data.size() > max_control_payload) return send_result::control_too_long;
  return write_frame(opcode::pong, true, false, data);
}

send_result connection::close(std::uint16_t code, std::string_view reason) {
  if (state_ != connection_state::open) return send_result::closed;
  if (code == close_code::no_status) {
    if (!reason.empty()) return send_result::invalid_close_code;  // a reason needs a code (§5.5.1)
  } else if (!is_valid_close_code(code)) {
    return send_result::invalid_close_code;
  }
  if (reason.size() > max_control_payload - 2) return send_result::control_too_long;
  if (!valid_utf8(as_bytes(reason))) return send_result::invalid_utf8;
  queue_close(code, reason);
  state_ = connection_state::closing;
  tx_in_message_ = false;
  return send_result::ok;
}

void connection::queue_close(std::uint16_t code, std::string_view reason) {
  std::byte body[max_control_payload];
  std::size_t size = 0;
  if (code != close_code::no_status && code != close_code::abnormal && code != close_code::tls_handshake) {
    body[0] = static_cast<std::byte>(code >> 8);
    body[1] = static_cast<std::byte>(code);
    size = 2 + std::min(reason.size(), max_control_payload - 2);
    if (size > 2) std::memcpy(body + 2, reason.data(), size - 2);
  }
  // Always queued, past the write limit: it is small and it ends the stream.
  write_frame(opcode::close, true, false, {body, size}, true);
}

send_result connection::send_prepared(const prepared_message& m) {
  if (role_ != role::server) return send_result::wrong_role;  // clients must mask (§5.3)
  if (state_ != connection_state::open) return send_result::closed;
  if (tx_in_message_) return send_result::message_in_progress;
  const auto bytes = m.bytes();
  if (!output_fits(bytes.size())) return send_result::backpressure;
  std::memcpy(reserve_output(bytes.size()), bytes.data(), bytes.size());
  out_size_ += bytes.size();
  return send_result::ok;
}

std::span<const std::byte> connection::pending_output() const noexcept {
  return {out_.get() + out_head_, out_size_ - out_head_};
}

void connection::consume_output(std::size_t n) noexcept {
  n = std::min(n, out_size_ - out_head_);
  out_head_ += n;
  out_pinned_ -= std::min(n, out_pinned_);
  if (out_pinned_ == 0) out_retired_.reset();
  if (out_head_ == out_size_) {
    out_head_ = out_size_ = 0;
    pongs_queued_ = 0;
    // Capacity up to write_buffer_size is kept for the next burst; a buffer that grew
    // past it (a large message) is given back.
    if (out_cap_ > cfg_.write_buffer_size) {
      out_.reset();
      out_cap_ = 0;
    }
  }
}

bool connection::should_close_transport() const noexcept {
  if (want_write()) return false;
  if (state_ == connection_state::failed) return true;
  // §7.1.1: after the close handshake the server closes TCP first; the client waits.
  return state_ == connection_state::closed && role_ == role::server;
}

}  // namespace ws6455
