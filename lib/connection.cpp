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
// Reassembly storage larger than this is given back at the next feed() once its message
// was delivered, so one large message does not pin its memory for the life of the
// connection; release_storage() (the caller is idle) keeps only idle_message_capacity.
constexpr std::size_t retained_message_capacity = 1u << 20;
constexpr std::size_t idle_message_capacity = 4u << 10;
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

inline std::uint32_t clamp32(std::size_t v, std::size_t cap) noexcept {
  return static_cast<std::uint32_t>(std::min(v, cap));
}

constexpr std::string_view read_only_server_feed = "read-only input in the server role";

}  // namespace

namespace detail {

// Storage few connections need, allocated on first use.
struct connection_storage {
  std::vector<std::byte> message;  // reassembly, and inflate output
  std::vector<std::byte> control;  // a control payload split across feeds
  std::unique_ptr<std::byte[]> out_retired;  // pinned output after a grow (pin_output)
  std::size_t out_retired_size = 0;
  // With retain_storage: a retired buffer kept for the next grow under a pin, so an
  // asynchronous writer that always has a send in flight alternates between two
  // buffers instead of allocating (and faulting in) a new one each time.
  std::unique_ptr<std::byte[]> out_spare;
  std::size_t out_spare_size = 0;
  random_source random = nullptr;  // client masking keys, when injected
  void* random_context = nullptr;
};

// permessage-deflate state (RFC 7692 §7.2): one inflater for the peer's messages, one
// deflater for ours, each with its own context-takeover rule.
struct connection_deflate {
  inflater inflate;
  deflater deflate;
  deflate_params params;  // as configured (settings())
  bool reset_inflater_per_message = false;
  bool reset_deflater_per_message = false;
  std::uint32_t msg_inflated = 0;  // inflated bytes of the current message (<= max_message_size)
  std::vector<std::byte> scratch;  // our compressed payload, before it is framed
};

connection_fields::connection_fields() noexcept = default;
connection_fields::~connection_fields() = default;
connection_fields::connection_fields(connection_fields&&) noexcept = default;
connection_fields& connection_fields::operator=(connection_fields&&) noexcept = default;

}  // namespace detail

static_assert(sizeof(void*) != 8 || sizeof(connection) <= 128, "keep the idle footprint small");

// What a message's state was before a frame header was taken: restored when that frame
// is left for the next feed() (see feed_impl).
struct connection::rx_snapshot {
  std::uint32_t msg_fragments, msg_size, utf8_state;
  bool in_message, msg_text, msg_compressed;
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

config_error validate(const config& cfg) noexcept {
  if (cfg.deflate) {
    const deflate_params& p = *cfg.deflate;
    // RFC 7692 §7.1.2: window bits are 8..15; zlib's memLevel is 1..9.
    if (p.server_max_window_bits < 8 || p.server_max_window_bits > 15 || p.client_max_window_bits < 8 ||
        p.client_max_window_bits > 15)
      return config_error::deflate_window_bits;
    if (p.mem_level < 1 || p.mem_level > 9) return config_error::deflate_mem_level;
  }
  if (cfg.max_write_buffer_size == 0) return config_error::zero_write_buffer;
  return config_error::none;
}

connection::connection(role r, const config& cfg) {
  role_ = r;
  max_frame_size_ = clamp32(cfg.max_frame_size, config::max_size_limit);
  max_message_size_ = clamp32(cfg.max_message_size, config::max_size_limit);
  max_fragments_ = cfg.max_fragments;
  write_buffer_size_ = clamp32(cfg.write_buffer_size, config::max_output_limit);
  max_write_buffer_size_ = clamp32(cfg.max_write_buffer_size, config::max_output_limit);
  max_queued_pongs_ = static_cast<std::uint16_t>(std::min<std::uint32_t>(cfg.max_queued_pongs, 0xFFFF));
  accept_unmasked_ = cfg.accept_unmasked_frames;
  auto_pong_ = cfg.auto_pong;
  auto_close_reply_ = cfg.auto_close_reply;
  retain_storage_ = cfg.retain_storage;
  streaming_ = cfg.mode == delivery::streaming;
  if (cfg.random && r == role::client) {
    storage().random = cfg.random;
    storage().random_context = cfg.random_context;
  }
  if (const config_error e = validate(cfg); e != config_error::none) {
    fail_locally(e);
    return;
  }
  if (cfg.deflate) {
    const deflate_params& p = *cfg.deflate;
    const bool server = role_ == role::server;
    deflate_ = std::make_unique<detail::connection_deflate>();
    deflate_->params = p;
    // A server inflates what the client compressed with the client's window, and the
    // client's no_context_takeover decides whether that window survives a message.
    const int peer_bits = server ? p.client_max_window_bits : p.server_max_window_bits;
    const int own_bits = server ? p.server_max_window_bits : p.client_max_window_bits;
    deflate_->reset_inflater_per_message = server ? p.client_no_context_takeover : p.server_no_context_takeover;
    deflate_->reset_deflater_per_message = server ? p.server_no_context_takeover : p.client_no_context_takeover;
    if (!deflate_->inflate.init(peer_bits) || !deflate_->deflate.init(own_bits, p.mem_level)) {
      deflate_.reset();
      fail_locally(config_error::deflate_init_failed);
    }
  }
}

expected<connection, config_error> connection::make(role r, const config& cfg) {
  if (const config_error e = validate(cfg); e != config_error::none) return unexpected{e};
  connection c(r, cfg);
  if (c.config_error_ != config_error::none) return unexpected{c.config_error_};
  return c;
}

connection::~connection() = default;

namespace {
// A moved-from connection: empty, failed, nothing to report.
void make_empty(detail::connection_fields& f) noexcept {
  f = detail::connection_fields{};
  f.state_ = connection_state::failed;
  f.rx_ = detail::rx_stage::done;
}
}  // namespace

connection::connection(connection&& o) noexcept : detail::connection_fields(std::move(o)) { make_empty(o); }

connection& connection::operator=(connection&& o) noexcept {
  if (this != &o) {
    detail::connection_fields::operator=(std::move(o));
    make_empty(o);
  }
  return *this;
}

detail::connection_storage& connection::storage() {
  if (!ext_) ext_ = std::make_unique<detail::connection_storage>();
  return *ext_;
}

void connection::fail_locally(config_error e) {
  // Not the peer's doing, but the peer still learns why (RFC 6455 §7.4.1: 1011).
  config_error_ = e;
  error_ = protocol_error::internal_error;
  if (state_ == connection_state::open) queue_close(close_code::internal_error, describe(e));
  state_ = connection_state::failed;
  rx_ = rx::done;
  in_message_ = false;
  report_fail_ = true;
}

void connection::report_local_fail(event& out) noexcept {
  report_fail_ = false;
  const std::string_view reason = config_error_ != config_error::none ? describe(config_error_) : read_only_server_feed;
  out = event{event_type::fail, true, close_code::internal_error, protocol_error::internal_error, {}, reason};
}

config connection::settings() const {
  config c;
  c.max_frame_size = max_frame_size_;
  c.max_message_size = max_message_size_;
  c.max_fragments = max_fragments_;
  c.write_buffer_size = write_buffer_size_;
  c.max_write_buffer_size = max_write_buffer_size_;
  c.max_queued_pongs = max_queued_pongs_;
  c.accept_unmasked_frames = accept_unmasked_;
  c.auto_pong = auto_pong_;
  c.auto_close_reply = auto_close_reply_;
  c.retain_storage = retain_storage_;
  c.mode = streaming_ ? delivery::streaming : delivery::whole_messages;
  if (deflate_) c.deflate = deflate_->params;
  if (ext_) {
    c.random = ext_->random;
    c.random_context = ext_->random_context;
  }
  return c;
}

void connection::release_message() noexcept {
  std::vector<std::byte>& m = ext_->message;
  m.clear();
  if (!retain_storage_ && m.capacity() > retained_message_capacity) std::vector<std::byte>().swap(m);
  release_message_ = false;
}

void connection::release_storage() noexcept {
  // The caller is done with every event: what they pointed into may go (RFC 6455 leaves
  // memory to us; an idle connection should not keep a large message's storage).
  if (release_message_) release_message();
  if (ext_ && ext_->message.empty() && ext_->message.capacity() > idle_message_capacity)
    std::vector<std::byte>().swap(ext_->message);
  if (deflate_ && deflate_->scratch.capacity() > idle_message_capacity) std::vector<std::byte>().swap(deflate_->scratch);
  if (ext_) {
    ext_->out_spare.reset();
    ext_->out_spare_size = 0;
  }
  // Drained output, however small: an idle connection keeps no buffer (the next send
  // allocates one again; kept across messages with retain_storage until now).
  if (out_head_ == out_size_ && out_pinned_ == 0 && out_cap_ != 0) {
    out_.reset();
    out_cap_ = out_head_ = out_size_ = 0;
  }
}

std::size_t connection::memory_usage() const noexcept {
  std::size_t n = out_cap_;
  if (ext_)
    n += sizeof(detail::connection_storage) + ext_->message.capacity() + ext_->control.capacity() +
         ext_->out_retired_size + ext_->out_spare_size;
  if (deflate_) n += sizeof(detail::connection_deflate) + deflate_->scratch.capacity();
  return n;
}

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
  if (role_ == role::server && !masked && !accept_unmasked_) return protocol_error::unmasked_frame;
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
    if (len > max_frame_size_) return protocol_error::frame_too_large;
    if (op != 0) {
      in_message_ = true;
      msg_text_ = op == static_cast<unsigned>(opcode::text);
      msg_compressed_ = (b0 & 0x40) != 0;
      msg_fragments_ = 0;
      msg_size_ = 0;
      if (deflate_) deflate_->msg_inflated = 0;
      utf8_state_ = 0;
    }
    if (len > max_message_size_ - msg_size_) return protocol_error::message_too_large;
    if (++msg_fragments_ > max_fragments_) return protocol_error::too_many_fragments;
    msg_size_ += static_cast<std::uint32_t>(len);  // <= max_message_size_ < 2^32
  } else if (ext_) {
    ext_->control.clear();
  }
  frame_opcode_ = static_cast<std::uint8_t>(op);
  frame_fin_ = (b0 & 0x80) != 0;
  frame_masked_ = masked;
  frame_started_ = false;
  frame_remaining_ = static_cast<std::uint32_t>(len);  // <= max_frame_size_, or <= 125
  mask_phase_ = 0;
  if (masked) std::memcpy(mask_key_, h + i, 4);
  return protocol_error::none;
}

connection::feed_result connection::feed(std::span<std::byte> input, std::span<event> events) {
  return feed_impl(input.data(), input.size(), events);
}

connection::feed_result connection::feed(std::span<const std::byte> input, std::span<event> events) {
  if (role_ == role::server && rx_ != rx::done) {
    // §5.3: a server unmasks client frames in place, so it cannot take read-only input.
    // A programming error, reported as a local failure rather than a hang or a write.
    error_ = protocol_error::internal_error;
    if (state_ == connection_state::open) queue_close(close_code::internal_error, read_only_server_feed);
    state_ = connection_state::failed;
    rx_ = rx::done;
    in_message_ = false;
    report_fail_ = true;
  }
  // A client never writes into its input: server frames are unmasked, and a masked one
  // fails before its payload is touched (§5.1).
  return feed_impl(const_cast<std::byte*>(input.data()), input.size(), events);
}

connection::feed_result connection::feed_impl(std::byte* const data, const std::size_t len, std::span<event> events) {
  if (release_message_) release_message();
  if (rx_ == rx::done) {  // §7.1.4: nothing more is read after a close
    if (report_fail_ && !events.empty()) {
      report_local_fail(events[0]);
      return {len, 1};
    }
    return {len, 0};
  }

  std::size_t pos = 0;
  std::size_t n = 0;
  bool stop = false;

  // Order: once this call returned events (n != 0), a frame the engine itself must answer
  // (a close reply, the close of a failure, a pong) is left, unconsumed, for the next
  // call, so that the application's answers to those events are queued first. Frames
  // known at their header (close, ping, compressed data, header violations) stop before
  // the header; a text frame found invalid in its payload is given back whole.
  while (!stop && n < events.size() && rx_ != rx::done) {
    if (rx_ == rx::header && stash_len_ == 0 && !in_message_) {
      pos = fast_frames(data, pos, len, events, n);
      if (rx_ == rx::done || n == events.size()) break;
    }
    const std::size_t frame_start = pos;
    rx_snapshot before{};
    if (rx_ == rx::header) {
      if (pos == len) break;
      assert(n == 0 || stash_len_ == 0);  // with events out, this header began in this call
      const std::byte* h;
      if (stash_len_ == 0 && len - pos >= max_frame_header_size) {
        // The whole header is in the caller's buffer: read it there.
        h = data + pos;
        const protocol_error e = check_first_bytes(h[0], h[1]);
        if (e != protocol_error::none) {
          if (n == 0) fail(e, events, n);
          break;
        }
        pos += header_size(h[1]);
      } else {
        // Otherwise gather a header split across feeds in the 14-byte stash.
        while (stash_len_ < 2 && pos < len) stash_[stash_len_++] = data[pos++];
        if (stash_len_ < 2) break;
        if (stash_len_ == 2) {
          const protocol_error e = check_first_bytes(stash_[0], stash_[1]);
          if (e != protocol_error::none) {
            if (n == 0) {
              fail(e, events, n);
            } else {
              pos = frame_start;
              stash_len_ = 0;
            }
            break;
          }
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
      if (n != 0) {
        const unsigned b0 = static_cast<unsigned>(h[0]);
        const unsigned op = b0 & 0x0F;
        // §5.5.1 close reply, §5.5.2 pong, RFC 7692 inflate failures: after the events.
        if (op == 0x8 || op == 0x9 || (b0 & 0x40) || (op == 0 && msg_compressed_)) {
          pos = frame_start;
          break;
        }
        before = {msg_fragments_, msg_size_, utf8_state_, in_message_, msg_text_, msg_compressed_};
      }
      const protocol_error e = start_frame(h);
      if (e != protocol_error::none) {
        if (n == 0) {
          fail(e, events, n);
        } else {
          restore(before);
          pos = frame_start;
        }
        break;
      }
      rx_ = rx::payload;
    }

    // rx_ == rx::payload: take what is here of the current frame.
    const std::size_t avail = static_cast<std::size_t>(std::min<std::uint64_t>(frame_remaining_, len - pos));
    if (avail == 0 && frame_remaining_ != 0) break;  // wait for more input
    std::byte* const chunk = data + pos;
    const bool whole_here = !frame_started_ && avail == frame_remaining_;
    if (frame_masked_ && avail) mask_phase_ = static_cast<std::uint8_t>(detail::mask_in_place(chunk, avail, mask_key_, mask_phase_));
    pos += avail;
    frame_remaining_ -= static_cast<std::uint32_t>(avail);
    frame_started_ = true;
    const bool frame_done = frame_remaining_ == 0;
    if (frame_opcode_ >= 8) {
      if (whole_here) {
        on_control({chunk, avail}, events, n, stop);
      } else {
        std::vector<std::byte>& control = storage().control;
        control.insert(control.end(), chunk, chunk + avail);
        if (frame_done) {
          on_control(control, events, n, stop);
          stop = true;  // the event points into the control storage, which the next frame reuses
        }
      }
    } else if (msg_compressed_) {
      on_compressed({chunk, avail}, frame_done, events, n, stop);
    } else if (!on_data({chunk, avail}, frame_done, whole_here, events, n, stop)) {
      // Invalid text behind events of this call: give the frame back as it came (masked
      // again), header included, and fail on the next call.
      assert(n != 0 && frame_start < pos);
      if (frame_masked_ && avail) detail::mask_in_place(chunk, avail, mask_key_, 0);
      restore(before);
      rx_ = rx::header;
      pos = frame_start;
      break;
    }
    if (frame_done && rx_ == rx::payload) rx_ = rx::header;
  }
  if (rx_ == rx::done) pos = len;  // input after a close or a failure is ignored
  return {pos, n};
}

void connection::restore(const rx_snapshot& s) noexcept {
  msg_fragments_ = s.msg_fragments;
  msg_size_ = s.msg_size;
  utf8_state_ = s.utf8_state;
  in_message_ = s.in_message;
  msg_text_ = s.msg_text;
  msg_compressed_ = s.msg_compressed;
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
  const std::uint64_t limit = std::min(max_frame_size_, max_message_size_);
  if (max_fragments_ == 0) return pos;
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
        if (k != 0) {
          // Events are out: give the frame back as it came (masked again, the key is just
          // before the payload); the general path leaves it for the next call.
          if (want_mask) detail::mask_in_place(payload, size, payload - 4, 0);
          pos -= frame_header_size(size, want_mask != 0) + size;  // minimal length form here
          break;
        }
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

bool connection::on_data(std::span<std::byte> chunk, bool frame_done, bool whole_here, std::span<event> events,
                         std::size_t& n, bool& stop) {
  const bool msg_end = frame_done && frame_fin_;
  if (msg_text_) {
    // §8.1: text must be UTF-8; checked as bytes arrive, so a bad byte fails at once, and
    // a message may not end inside a code point.
    detail::utf8_state st = utf8_state_;
    if (!detail::utf8_validate(st, chunk.data(), chunk.size()) || (msg_end && !detail::utf8_complete(st))) {
      if (n != 0) return false;  // the caller leaves this frame for the next call
      fail(protocol_error::invalid_utf8, events, n);
      return true;
    }
    utf8_state_ = st;
  }
  const event_type type = msg_text_ ? event_type::text : event_type::binary;
  if (msg_end) in_message_ = false;
  if (streaming_) {
    if (!chunk.empty() || msg_end) emit(event{type, msg_end, 0, protocol_error::none, chunk, {}}, events, n);
    return true;
  }
  if (msg_end && whole_here && (!ext_ || ext_->message.empty())) {
    // The whole message is one frame in the caller's buffer: report it in place.
    emit(event{type, true, 0, protocol_error::none, chunk, {}}, events, n);
    return true;
  }
  std::vector<std::byte>& message = storage().message;
  message.insert(message.end(), chunk.begin(), chunk.end());
  if (msg_end) {
    emit(event{type, true, 0, protocol_error::none, message, {}}, events, n);
    release_message_ = true;
    stop = true;
  }
  return true;
}

void connection::on_compressed(std::span<const std::byte> chunk, bool frame_done, std::span<event> events,
                               std::size_t& n, bool& stop) {
  const bool msg_end = frame_done && frame_fin_;
  std::vector<std::byte>& message = storage().message;
  const std::size_t before = message.size();
  // max_message_size bounds the inflated size, enforced while inflating: a bomb stops
  // after at most the limit of output (RFC 7692 §8.1 leaves limits to us).
  const std::size_t max_out = before + (max_message_size_ - deflate_->msg_inflated);
  std::size_t consumed = 0;
  const detail::codec_status st = deflate_->inflate.inflate(chunk, msg_end, message, max_out, consumed);
  const std::size_t produced = message.size() - before;
  deflate_->msg_inflated += static_cast<std::uint32_t>(produced);  // within max_message_size_
  // RFC 7692 §8.2.3.1 / RFC 6455 §8.1: validate the inflated text, fail fast. This comes
  // before the codec's verdict so that bad text followed by bad data (or by more output
  // than the limit) fails the same way however the input was split.
  if (msg_text_ && !detail::utf8_validate(utf8_state_, message.data() + before, produced)) {
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
  if (streaming_) {
    // Pieces live in the message storage, which the next feed() clears; stop so that no
    // later piece of this call reallocates it under an earlier event.
    if (produced || msg_end) {
      emit(event{type, msg_end, 0, protocol_error::none, {message.data() + before, produced}, {}}, events, n);
      release_message_ = true;
      stop = true;
    }
    return;
  }
  if (msg_end) {
    emit(event{type, true, 0, protocol_error::none, message, {}}, events, n);
    release_message_ = true;
    stop = true;
  }
}

void connection::queue_pong(std::span<const std::byte> payload) {
  // §5.5.2: answer with a pong carrying the same payload. Automatic pongs waiting in the
  // output are capped, so a ping flood against a peer that does not read cannot grow
  // memory; past the cap the newest ping replaces the last pong that has not started
  // going out (§5.5.3: a pong for the most recent ping suffices), so a keepalive that
  // waits for the answer to its latest ping still gets it.
  const std::size_t size = frame_header_size(payload.size(), role_ == role::client) + payload.size();
  if (pongs_queued_ >= max_queued_pongs_) {
    if (last_pong_at_ == 0) return;
    const std::uint32_t at = last_pong_at_ - 1;
    if (at < out_head_ + out_pinned_) return;  // being written: too late to take it back
    const std::byte* old = out_.get() + at;
    const std::uint32_t old_size = 2 + (static_cast<unsigned>(old[1]) & 0x7F) + ((static_cast<unsigned>(old[1]) & 0x80) ? 4 : 0);
    // Frames queued after it move down (each byte at most once per send: the new pong
    // goes to the end, so the next replacement finds it there).
    std::memmove(out_.get() + at, out_.get() + at + old_size, out_size_ - at - old_size);
    out_size_ -= old_size;
    --pongs_queued_;
  }
  (void)write_frame(opcode::pong, true, false, payload, true);
  last_pong_at_ = static_cast<std::uint32_t>(out_size_ - size + 1);
  ++pongs_queued_;
}

void connection::on_control(std::span<const std::byte> payload, std::span<event> events, std::size_t& n, bool& stop) {
  switch (static_cast<opcode>(frame_opcode_)) {
    case opcode::ping:
      if (auto_pong_ && state_ == connection_state::open) queue_pong(payload);
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
  if (state_ == connection_state::open && auto_close_reply_) {
    // §5.5.1: reply with a close, typically echoing the code; a close without a body
    // is answered without one (1005 never goes on the wire, §7.4.1).
    queue_close(code, {});
    state_ = connection_state::closed;
  } else if (state_ == connection_state::open) {
    state_ = connection_state::close_received;  // §5.5.1: the application's close() answers
  } else {
    state_ = connection_state::closed;
  }
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
  if (release_message_) release_message();  // nothing reported earlier is referenced any more
  if (report_fail_) {
    report_local_fail(out);
    return true;
  }
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
  return frame_bytes <= max_write_buffer_size_ && pending <= max_write_buffer_size_ - frame_bytes;
}

std::byte* connection::reserve_output(std::size_t n) {
  // Sizes stay below 2^32: sends are checked against max_write_buffer_size (<= 1 GiB), and
  // only pongs (capped) and one close go past it.
  if (out_cap_ - out_size_ < n) {
    const std::size_t pending = out_size_ - out_head_;
    if (out_cap_ - pending >= n && out_head_ >= pending && out_pinned_ == 0) {
      // Enough room once what is pending slides to the front (and it is cheap to slide).
      std::memmove(out_.get(), out_.get() + out_head_, pending);
    } else {
      // Grow from small, doubling: an idle connection that sent a ping holds a few hundred
      // bytes, not write_buffer_size. No zero-fill: every byte is written before it is read.
      const std::size_t doubled = std::min(std::size_t{out_cap_} * 2, 2 * config::max_output_limit);
      std::size_t cap = std::max({pending + n, doubled, min_output_capacity});
      std::unique_ptr<std::byte[]> grown;
      if (out_pinned_ != 0 && ext_ && ext_->out_spare && ext_->out_spare_size >= pending + n) {
        grown = std::move(ext_->out_spare);  // the other buffer of the pair: no allocation
        cap = ext_->out_spare_size;
        ext_->out_spare_size = 0;
      } else {
        // Under a pin with retain_storage the buffer was not too small, only not
        // slidable: a pair of equal buffers does, rather than doubling each time.
        if (out_pinned_ != 0 && retain_storage_ && pending + n <= out_cap_) cap = out_cap_;
        grown = std::make_unique_for_overwrite<std::byte[]>(cap);
      }
      if (pending) std::memcpy(grown.get(), out_.get() + out_head_, pending);
      // Pinned bytes are read from the old storage by a write in flight: keep it (the
      // first one only: a later grow moves a copy nobody reads).
      if (out_pinned_ != 0 && !(ext_ && ext_->out_retired)) {
        storage().out_retired = std::move(out_);
        ext_->out_retired_size = out_cap_;
      }
      out_ = std::move(grown);
      out_cap_ = static_cast<std::uint32_t>(cap);
    }
    if (last_pong_at_ != 0) last_pong_at_ -= out_head_;  // it lies past out_head_ (consume_output)
    out_head_ = 0;
    out_size_ = static_cast<std::uint32_t>(pending);
  }
  return out_.get() + out_size_;
}

void connection::next_mask_key(std::byte key[4]) {
  // §5.3: a fresh, unpredictable key for every frame.
  if (ext_ && ext_->random) ext_->random(ext_->random_context, {key, 4});
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
  out_size_ += static_cast<std::uint32_t>(h.size + payload.size());
  return send_result::ok;
}

send_result connection::send_data(opcode type, std::span<const std::byte> data, bool fin, bool fragment,
                                   bool trusted_utf8) {
  if (!can_send()) return send_result::closed;  // §5.5.1: nothing after a close
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
  const bool compress = first ? (deflate_ && data.size() >= deflate_->params.compress_threshold) : tx_compressed_;
  // Checked before compressing, on zlib's worst case: a refused send must leave the
  // deflate context untouched.
  const std::size_t payload_bound = compress ? deflate_bound(data.size(), deflate_->params.mem_level) : data.size();
  if (!output_fits(frame_header_size(payload_bound, role_ == role::client) + payload_bound))
    return send_result::backpressure;
  const opcode wire_op = first ? type : opcode::continuation;
  if (compress) {
    deflate_->scratch.clear();
    if (deflate_->deflate.compress(data, fin, deflate_->scratch) != detail::codec_status::ok)
      return send_result::compression_failed;
    (void)write_frame(wire_op, fin, first, deflate_->scratch, true);  // RFC 7692 §6: RSV1 on the first frame only
    if (fin && deflate_->reset_deflater_per_message) deflate_->deflate.reset();
  } else {
    (void)write_frame(wire_op, fin, false, data, true);
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
  if (!can_send()) return send_result::closed;
  if (data.size() > max_control_payload) return send_result::control_too_long;
  return write_frame(opcode::ping, true, false, data);
}

send_result connection::send_pong(std::span<const std::byte> data) {
  if (!can_send()) return send_result::closed;
  if (data.size() > max_control_payload) return send_result::control_too_long;
  return write_frame(opcode::pong, true, false, data);
}

send_result connection::close(std::uint16_t code, std::string_view reason) {
  if (!can_send()) return send_result::closed;
  if (code == close_code::no_status) {
    if (!reason.empty()) return send_result::invalid_close_code;  // a reason needs a code (§5.5.1)
  } else if (!is_valid_close_code(code)) {
    return send_result::invalid_close_code;
  }
  if (reason.size() > max_control_payload - 2) return send_result::control_too_long;
  if (!valid_utf8(as_bytes(reason))) return send_result::invalid_utf8;
  queue_close(code, reason);
  // §7.1.2: ours was the first close, wait for the peer's; or it answered the peer's.
  state_ = state_ == connection_state::open ? connection_state::closing : connection_state::closed;
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
  (void)write_frame(opcode::close, true, false, {body, size}, true);
}

send_result connection::send_prepared(const prepared_message& m) {
  if (role_ != role::server) return send_result::wrong_role;  // clients must mask (§5.3)
  if (!can_send()) return send_result::closed;
  if (tx_in_message_) return send_result::message_in_progress;
  const auto bytes = m.bytes();
  if (!output_fits(bytes.size())) return send_result::backpressure;
  std::memcpy(reserve_output(bytes.size()), bytes.data(), bytes.size());
  out_size_ += static_cast<std::uint32_t>(bytes.size());
  return send_result::ok;
}

std::span<const std::byte> connection::pending_output() const noexcept {
  return {out_.get() + out_head_, std::size_t{out_size_} - out_head_};
}

void connection::pin_output() noexcept {
  // One asynchronous write at a time: the one before has completed, so storage
  // retired while it was in flight is read by nobody now. Keeping it would leave the
  // storage this write reads unprotected at the next grow (only one is retired).
  drop_retired_output();
  out_pinned_ = out_size_ - out_head_;
}

void connection::drop_retired_output() noexcept {
  if (!ext_ || !ext_->out_retired) return;
  if (retain_storage_ && ext_->out_retired_size > ext_->out_spare_size) {
    ext_->out_spare = std::move(ext_->out_retired);
    ext_->out_spare_size = ext_->out_retired_size;
  }
  ext_->out_retired.reset();
  ext_->out_retired_size = 0;
}

void connection::consume_output(std::size_t n) noexcept {
  const auto k = static_cast<std::uint32_t>(std::min<std::size_t>(n, out_size_ - out_head_));
  out_head_ += k;
  out_pinned_ -= std::min(k, out_pinned_);
  if (out_pinned_ == 0) drop_retired_output();
  if (last_pong_at_ != 0 && last_pong_at_ - 1 < out_head_) last_pong_at_ = 0;  // it went out (in part)
  if (out_head_ == out_size_) {
    out_head_ = out_size_ = 0;
    pongs_queued_ = 0;
    last_pong_at_ = 0;
    // Capacity up to write_buffer_size is kept for the next burst; a buffer that grew
    // past it (a large message) is given back, unless the caller retains storage
    // until it is idle (release_storage()).
    if (out_cap_ > write_buffer_size_ && !retain_storage_) {
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
