// The sans-I/O frame layer of one WebSocket connection (RFC 6455 §5-§7).
//
// It starts OPEN: the opening handshake is done elsewhere (ws6455/handshake.hpp,
// an existing HTTP server, or RFC 8441 over HTTP/2), and whatever it negotiated
// (permessage-deflate) is passed in the config.
//
//   bytes in:   feed(received, events)  -> events, payloads unmasked in place
//   bytes out:  send_*(...) appends frames; pending_output() / consume_output(n)
//
// No I/O, no threads, no clock. After construction the receive path allocates
// only to grow reassembly storage for fragmented (or split) messages; sending
// allocates only when the output buffer grows past its retained capacity.
//
// Order (RFC 6455 §5.5.1, §5.5.2, §7.1.7 reactions come after the application's
// answers): feed() never queues its own reaction to a frame (a close reply, the close
// of a failure, a pong) behind events it already returned in the same call. It stops
// before that frame instead, so that the application can answer those events first
// (echo the last message, then the close reply follows it); the next feed() takes it.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "ws6455/config.hpp"
#include "ws6455/error.hpp"
#include "ws6455/event.hpp"
#include "ws6455/expected.hpp"
#include "ws6455/frame_header.hpp"

namespace ws6455 {

enum class connection_state : std::uint8_t {
  open,     // data flows both ways
  closing,  // we sent a close and wait for the peer's (§7.1.2)
  closed,   // the close handshake completed: both closes seen (clean)
  failed,   // we failed the connection (§7.1.7), or the transport ended without a close
  close_received,  // auto_close_reply off: the peer's close came, our close() is due (§5.5.1)
};

// A frame encoded once in the server role (unmasked) and sent to many
// connections: broadcast without re-encoding (uWS PreparedMessage, websockets broadcast).
class prepared_message {
 public:
  prepared_message(opcode op, std::span<const std::byte> payload);
  static prepared_message text(std::string_view s);
  std::span<const std::byte> bytes() const noexcept { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

namespace detail {

struct connection_storage;
struct connection_deflate;
enum class rx_stage : std::uint8_t { header, payload, done };

// The fields of one connection, packed for a small idle footprint (limits in 32 bits,
// rarely used storage behind lazily allocated pointers). A base of its own so that
// connection's moves stay member-wise and can then reset the source in one assignment.
struct connection_fields {
  connection_fields() noexcept;
  ~connection_fields();
  connection_fields(connection_fields&&) noexcept;
  connection_fields& operator=(connection_fields&&) noexcept;

  std::unique_ptr<std::byte[]> out_;
  std::unique_ptr<connection_storage> ext_;      // reassembly, split control payloads, ...
  std::unique_ptr<connection_deflate> deflate_;  // permessage-deflate, when negotiated

  // Limits, from config (clamped to 32 bits).
  std::uint32_t max_frame_size_ = 0;
  std::uint32_t max_message_size_ = 0;
  std::uint32_t max_fragments_ = 0;
  std::uint32_t write_buffer_size_ = 0;
  std::uint32_t max_write_buffer_size_ = 0;
  // Receive side: the current frame and message (sizes are within the limits above).
  std::uint32_t frame_remaining_ = 0;
  std::uint32_t msg_fragments_ = 0;
  std::uint32_t msg_size_ = 0;  // wire bytes so far
  std::uint32_t utf8_state_ = 0;
  // Send side.
  std::uint32_t tx_utf8_state_ = 0;
  std::uint32_t out_cap_ = 0;
  std::uint32_t out_head_ = 0;
  std::uint32_t out_size_ = 0;
  std::uint32_t out_pinned_ = 0;    // bytes from out_head_ an asynchronous write reads
  std::uint32_t last_pong_at_ = 0;  // offset in out_ of the last automatic pong + 1; 0: none
  std::uint16_t max_queued_pongs_ = 0;
  std::uint16_t pongs_queued_ = 0;
  std::uint16_t peer_close_code_ = 0;

  std::byte stash_[max_frame_header_size]{};
  std::byte mask_key_[4]{};
  role role_ = role::server;
  connection_state state_ = connection_state::open;
  rx_stage rx_ = rx_stage::header;
  std::uint8_t stash_len_ = 0;
  std::uint8_t frame_opcode_ = 0;
  std::uint8_t mask_phase_ = 0;
  protocol_error error_ = protocol_error::none;
  config_error config_error_ = config_error::none;
  bool frame_fin_ = false;
  bool frame_masked_ = false;
  bool frame_started_ = false;  // some payload of this frame was already taken
  bool in_message_ = false;
  bool msg_text_ = false;
  bool msg_compressed_ = false;
  // Rarely touched flags.
  bool release_message_ : 1 = false;  // an event pointed into the reassembly storage
  bool report_fail_ : 1 = false;      // a local failure (config, zlib) is still to be reported
  bool tx_in_message_ : 1 = false;
  bool tx_text_ : 1 = false;
  bool tx_compressed_ : 1 = false;
  bool accept_unmasked_ : 1 = false;
  bool auto_pong_ : 1 = true;
  bool streaming_ : 1 = false;
  bool auto_close_reply_ : 1 = true;
  bool retain_storage_ : 1 = false;
};

}  // namespace detail

class connection : private detail::connection_fields {
 public:
  // An invalid config (see validate()) does not make a silently dead connection: the
  // connection is failed at once, its close (1011, the reason from describe(config_error))
  // is queued, and the first feed() or feed_eof() reports a fail event with code 1011,
  // error protocol_error::internal_error and that reason. make() refuses it instead.
  // Sizes above the caps in config are clamped.
  explicit connection(role r, const config& cfg = {});
  // The checked way in: the error when the config is invalid (or zlib cannot start).
  static expected<connection, config_error> make(role r, const config& cfg = {});
  ~connection();
  // A moved-from connection is empty: failed, no output, feed() ignores input, sends
  // return send_result::closed.
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  struct [[nodiscard]] feed_result {
    std::size_t consumed = 0;  // bytes of `input` taken; feed the rest again later
    std::size_t events = 0;    // events written to the front of `events`
  };

  // Hands received bytes to the engine and writes what they complete into `events`.
  //
  // It stops early (consumed < input.size()) when `events` is full, after an event
  // whose payload lives in engine storage, or before a frame the engine itself must
  // answer (a close, a ping, a violation) once it has returned events in this call
  // (see the order note above); call again with the rest. Masked payloads are unmasked
  // in place, so `input` must be writable.
  //
  // Lifetimes: an event's data/reason points into `input` (valid as long as the
  // caller keeps that memory) or into engine storage (valid until the next call to
  // feed(), feed_eof() or release_storage()). After a close or fail event, input is
  // taken and ignored.
  feed_result feed(std::span<std::byte> input, std::span<event> events);
  // Read-only input, for the client role: a server's frames are not masked, so nothing
  // is written. In the server role nothing is read: the connection fails with 1011
  // (error internal_error, reason "read-only input in the server role").
  feed_result feed(std::span<const std::byte> input, std::span<event> events);
  // A writable buffer (std::vector<std::byte>, std::array ...) picks the writable feed.
  template <class Buffer>
    requires std::convertible_to<Buffer&, std::span<std::byte>>
  feed_result feed(Buffer& input, std::span<event> events) {
    return feed(std::span<std::byte>(input), events);
  }

  // The transport ended (read returned 0). Without a prior close this is the
  // abnormal closure 1006, reported as a close event with that local-only code.
  // Returns false when there is nothing to report.
  bool feed_eof(event& out);

  // The caller has finished with every event reported so far: storage a large message
  // used (reassembly, inflate output, compression scratch) is given back now rather than
  // at the next feed(), so an idle connection does not keep it; so is the output
  // buffer once drained, however small (the next send allocates one again). A message
  // still being reassembled is kept. Cheap when there is nothing to give back. With
  // config::retain_storage, the only way storage is given back: call it when the
  // connection goes idle.
  void release_storage() noexcept;
  // Heap bytes this connection holds: output, reassembly, control and compression
  // buffers (not zlib's own state; see docs/deflate.md).
  std::size_t memory_usage() const noexcept;

  // Sending. Each call queues one whole frame, or nothing (see send_result).
  send_result send_text(std::string_view text, bool trusted_utf8 = false);
  send_result send_binary(std::span<const std::byte> data);
  send_result send_ping(std::span<const std::byte> data = {});
  send_result send_pong(std::span<const std::byte> data = {});
  // Starts the close handshake (§5.5.1, §7.1.2), or, in state close_received, answers
  // the peer's close with the code and reason of your choice. code 1005 sends a close
  // without a body.
  send_result close(std::uint16_t code = 1000, std::string_view reason = {});
  // Streaming send: the first call of a message fixes its type (text or binary);
  // later calls continue it; fin ends it. Control frames may be sent in between.
  send_result send_fragment(opcode type, std::span<const std::byte> data, bool fin);
  // Appends a prepared (server-role, uncompressed) frame.
  send_result send_prepared(const prepared_message& m);

  // Output: frames waiting to be written to the transport, in order.
  std::span<const std::byte> pending_output() const noexcept;
  void consume_output(std::size_t n) noexcept;
  // For asynchronous writers (io_uring), once per write submitted, one write in
  // flight at a time: the bytes pending now are being read by the kernel, so they
  // keep their address until consume_output() has passed them, even if more frames
  // are queued meanwhile (the buffer then grows into new storage and the old one
  // lives until the pinned bytes are consumed or the next write is pinned).
  // Synchronous writers (send/sendmsg) never need this.
  void pin_output() noexcept;
  // The bytes pending now keep their order and sizes until consumed (a newer ping's
  // pong does not replace a pong among them, §5.5.3), though not their address:
  // for a writer that interleaves frames queued elsewhere, counted by offset.
  void hold_output() noexcept { out_pinned_ = std::max(out_pinned_, out_size_ - out_head_); }

  connection_state state() const noexcept { return state_; }
  role which_role() const noexcept { return role_; }
  bool want_read() const noexcept { return state_ == connection_state::open || state_ == connection_state::closing; }
  bool want_write() const noexcept { return out_size_ != out_head_; }
  // A fragmented message of ours is open (send_fragment without fin): only control
  // frames and its continuations may go out until it ends (§5.4).
  bool sending_fragmented() const noexcept { return tx_in_message_; }
  // Close the TCP connection now? For a server, once the close handshake is over (or
  // failed) and the output drained (§7.1.1: the server closes first). A client waits
  // for the server's EOF after a clean close (callers should bound that with a timeout),
  // but closes at once after a failure.
  bool should_close_transport() const noexcept;
  // True when both close frames were exchanged.
  bool closed_cleanly() const noexcept { return state_ == connection_state::closed; }
  // The close code received from the peer (1005 if none, 1006 on EOF), 0 before.
  std::uint16_t peer_close_code() const noexcept { return peer_close_code_; }
  protocol_error last_error() const noexcept { return error_; }
  // The configuration in effect (sizes after clamping), rebuilt: the connection keeps
  // only the fields it needs.
  config settings() const;

 private:
  using rx = detail::rx_stage;
  struct rx_snapshot;

  void fail_locally(config_error e);
  protocol_error check_first_bytes(std::byte b0, std::byte b1) const noexcept;
  static std::size_t header_size(std::byte b1) noexcept;
  protocol_error start_frame(const std::byte* header) noexcept;
  feed_result feed_impl(std::byte* data, std::size_t len, std::span<event> events);
  std::size_t fast_frames(std::byte* data, std::size_t pos, std::size_t len, std::span<event> events,
                          std::size_t& n);
  void emit(const event& ev, std::span<event> events, std::size_t& n) noexcept;
  bool on_data(std::span<std::byte> chunk, bool frame_done, bool whole_here, std::span<event> events,
               std::size_t& n, bool& stop);
  void restore(const rx_snapshot& s) noexcept;
  void on_compressed(std::span<const std::byte> chunk, bool frame_done, std::span<event> events,
                     std::size_t& n, bool& stop);
  void on_control(std::span<const std::byte> payload, std::span<event> events, std::size_t& n, bool& stop);
  void on_close(std::span<const std::byte> payload, std::span<event> events, std::size_t& n);
  void fail(protocol_error e, std::span<event> events, std::size_t& n);
  void report_local_fail(event& out) noexcept;
  void queue_pong(std::span<const std::byte> payload);
  void release_message() noexcept;
  detail::connection_storage& storage();

  bool can_send() const noexcept {
    return state_ == connection_state::open || state_ == connection_state::close_received;
  }
  send_result write_frame(opcode op, bool fin, bool rsv1, std::span<const std::byte> payload,
                          bool bypass_limit = false);
  send_result send_data(opcode type, std::span<const std::byte> data, bool fin, bool fragment, bool trusted_utf8);
  void drop_retired_output() noexcept;
  void queue_close(std::uint16_t code, std::string_view reason);
  bool output_fits(std::size_t frame_bytes) const noexcept;
  std::byte* reserve_output(std::size_t n);
  void next_mask_key(std::byte key[4]);
};

}  // namespace ws6455
