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
#pragma once

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
#include "ws6455/frame_header.hpp"

namespace ws6455 {

enum class connection_state : std::uint8_t {
  open,     // data flows both ways
  closing,  // we sent a close and wait for the peer's (§7.1.2)
  closed,   // the close handshake completed: both closes seen (clean)
  failed,   // we failed the connection (§7.1.7), or the transport ended without a close
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

class connection {
 public:
  explicit connection(role r, const config& cfg = {});
  ~connection();
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  struct feed_result {
    std::size_t consumed = 0;  // bytes of `input` taken; feed the rest again later
    std::size_t events = 0;    // events written to the front of `events`
  };

  // Hands received bytes to the engine and writes what they complete into `events`.
  //
  // It stops early (consumed < input.size()) when `events` is full, or after an
  // event whose payload lives in engine storage; call again with the rest.
  // Masked payloads are unmasked in place, so `input` must be writable.
  //
  // Lifetimes: an event's data/reason points into `input` (valid as long as the
  // caller keeps that memory) or into engine storage (valid until the next call to
  // feed() or feed_eof()). After a close or fail event, input is taken and ignored.
  feed_result feed(std::span<std::byte> input, std::span<event> events);

  // The transport ended (read returned 0). Without a prior close this is the
  // abnormal closure 1006, reported as a close event with that local-only code.
  // Returns false when there is nothing to report.
  bool feed_eof(event& out);

  // Sending. Each call queues one whole frame, or nothing (see send_result).
  send_result send_text(std::string_view text, bool trusted_utf8 = false);
  send_result send_binary(std::span<const std::byte> data);
  send_result send_ping(std::span<const std::byte> data = {});
  send_result send_pong(std::span<const std::byte> data = {});
  // Starts the close handshake (§5.5.1, §7.1.2). code 1005 sends a close without a body.
  send_result close(std::uint16_t code = 1000, std::string_view reason = {});
  // Streaming send: the first call of a message fixes its type (text or binary);
  // later calls continue it; fin ends it. Control frames may be sent in between.
  send_result send_fragment(opcode type, std::span<const std::byte> data, bool fin);
  // Appends a prepared (server-role, uncompressed) frame.
  send_result send_prepared(const prepared_message& m);

  // Output: frames waiting to be written to the transport, in order.
  std::span<const std::byte> pending_output() const noexcept;
  void consume_output(std::size_t n) noexcept;
  // For asynchronous writers (io_uring): the bytes pending now are being read by the
  // kernel, so they keep their address until consume_output() has passed them, even
  // if more frames are queued meanwhile (the buffer then grows into new storage and
  // the old one lives until the pinned bytes are consumed). Synchronous writers
  // (send/sendmsg) never need this.
  void pin_output() noexcept { out_pinned_ = out_size_ - out_head_; }

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
  const config& settings() const noexcept { return cfg_; }

 private:
  struct deflate_state;
  enum class rx : std::uint8_t { header, payload, done };

  protocol_error check_first_bytes(std::byte b0, std::byte b1) const noexcept;
  static std::size_t header_size(std::byte b1) noexcept;
  protocol_error start_frame(const std::byte* header) noexcept;
  std::size_t fast_frames(std::byte* data, std::size_t pos, std::size_t len, std::span<event> events,
                          std::size_t& n);
  void emit(const event& ev, std::span<event> events, std::size_t& n) noexcept;
  void on_data(std::span<std::byte> chunk, bool frame_done, bool whole_here, std::span<event> events,
               std::size_t& n, bool& stop);
  void on_compressed(std::span<const std::byte> chunk, bool frame_done, std::span<event> events,
                     std::size_t& n, bool& stop);
  void on_control(std::span<const std::byte> payload, std::span<event> events, std::size_t& n, bool& stop);
  void on_close(std::span<const std::byte> payload, std::span<event> events, std::size_t& n);
  void fail(protocol_error e, std::span<event> events, std::size_t& n);

  send_result write_frame(opcode op, bool fin, bool rsv1, std::span<const std::byte> payload,
                          bool bypass_limit = false);
  send_result send_data(opcode type, std::span<const std::byte> data, bool fin, bool fragment, bool trusted_utf8);
  void queue_close(std::uint16_t code, std::string_view reason);
  bool output_fits(std::size_t frame_bytes) const noexcept;
  std::byte* reserve_output(std::size_t n);
  void next_mask_key(std::byte key[4]);

  config cfg_;
  role role_;
  connection_state state_ = connection_state::open;
  protocol_error error_ = protocol_error::none;
  std::uint16_t peer_close_code_ = 0;

  // Receive side: the current frame.
  rx rx_ = rx::header;
  std::uint8_t stash_len_ = 0;
  std::uint8_t frame_opcode_ = 0;
  bool frame_fin_ = false;
  bool frame_masked_ = false;
  bool frame_started_ = false;  // some payload of this frame was already taken
  std::uint8_t mask_phase_ = 0;
  std::byte stash_[max_frame_header_size]{};
  std::byte mask_key_[4]{};
  std::uint64_t frame_remaining_ = 0;
  // Receive side: the current data message.
  bool in_message_ = false;
  bool msg_text_ = false;
  bool msg_compressed_ = false;
  std::uint32_t msg_fragments_ = 0;
  std::uint64_t msg_size_ = 0;     // wire bytes so far
  std::uint64_t msg_inflated_ = 0;  // inflated bytes so far
  std::uint32_t utf8_state_ = 0;
  std::vector<std::byte> message_;  // reassembly, and inflate output
  std::vector<std::byte> control_;  // a control payload split across feeds
  bool release_message_ = false;    // an event pointed into message_: clear it on the next feed

  // Send side.
  std::unique_ptr<std::byte[]> out_;
  std::size_t out_cap_ = 0;
  std::size_t out_head_ = 0;
  std::size_t out_size_ = 0;
  std::size_t out_pinned_ = 0;        // bytes from out_head_ an asynchronous write reads
  std::unique_ptr<std::byte[]> out_retired_;  // the storage they live in, after a grow
  std::uint32_t pongs_queued_ = 0;
  bool tx_in_message_ = false;
  bool tx_text_ = false;
  bool tx_compressed_ = false;
  std::uint32_t tx_utf8_state_ = 0;

  std::unique_ptr<deflate_state> deflate_;
};

}  // namespace ws6455
