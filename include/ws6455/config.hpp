// Limits and options of one connection's frame layer. Strict by default (RFC 6455
// as written, every limit on); leniency only by explicit flag.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "ws6455/deflate_params.hpp"
#include "ws6455/error.hpp"

namespace ws6455 {

// Which end of the connection we are. RFC 6455 §5.1: clients mask, servers do not.
enum class role : std::uint8_t { server, client };

// How data messages are reported.
enum class delivery : std::uint8_t {
  whole_messages,  // one event per message, reassembled (bounded by max_message_size)
  streaming,       // one event per piece of payload as it arrives; `fin` marks the last
};

// Fills `out` with cryptographically random bytes (client masking keys, RFC 6455 §5.3).
// Injectable so tests can be deterministic; nullptr means OpenSSL's RAND_bytes.
using random_source = void (*)(void* context, std::span<std::byte> out);

// Sizes are stored in 32 bits per connection (a small idle footprint): values above
// max_size_limit (4 GiB - 1; max_write_buffer_size and write_buffer_size: 1 GiB) are
// treated as that cap, so SIZE_MAX still reads "as large as supported". Invalid
// values (see validate) are refused by connection::make.
struct config {
  std::size_t max_frame_size = 16u << 20;    // declared payload length of one frame (1009 past it)
  std::size_t max_message_size = 64u << 20;  // reassembled message size (1009); with deflate, both
                                             // the inflated size and the compressed size on the wire
  std::uint32_t max_fragments = 131072;      // frames per message, empty ones included (1009)
  std::size_t write_buffer_size = 128u << 10;        // output capacity kept once drained (more is freed)
  std::size_t max_write_buffer_size = 128u << 20;    // pending output past which sends are refused (not 0)
  std::uint32_t max_queued_pongs = 16;       // automatic pongs waiting in the output at once (capped
                                             // at 65535); a newer ping replaces the last unsent one
  bool accept_unmasked_frames = false;       // server only: tolerate unmasked client frames
  bool auto_pong = true;                     // answer pings by itself (the ping is still reported)
  bool auto_close_reply = true;              // answer the peer's close by itself, echoing its code;
                                             // false: the close event is reported, state is
                                             // close_received, and the application calls close()
  // Keep reassembly and output capacity across messages until release_storage() (no
  // allocation and no page faults per large message). For callers that call
  // release_storage() when the connection goes idle, as the socket adapters do;
  // false: storage past 1 MiB (reassembly) or write_buffer_size (output) is given
  // back after each message.
  bool retain_storage = false;
  delivery mode = delivery::whole_messages;
  std::optional<deflate_params> deflate;     // permessage-deflate as negotiated (RFC 7692)
  random_source random = nullptr;
  void* random_context = nullptr;

  static constexpr std::size_t max_size_limit = 0xFFFFFFFFu;      // frame and message sizes
  static constexpr std::size_t max_output_limit = std::size_t{1} << 30;  // output buffer sizes
};

// none, or the first reason `cfg` cannot work: deflate window bits outside 8..15 or a
// memLevel outside 1..9 (zlib would refuse them), max_write_buffer_size 0.
config_error validate(const config& cfg) noexcept;

}  // namespace ws6455
