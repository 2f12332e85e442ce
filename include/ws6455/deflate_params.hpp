// Negotiated permessage-deflate parameters (RFC 7692 §7.1), as the frame layer applies them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ws6455 {

struct deflate_params {
  bool server_no_context_takeover = false;  // §7.1.1.1
  bool client_no_context_takeover = false;  // §7.1.1.2
  std::uint8_t server_max_window_bits = 15;  // §7.1.2.1, 8..15 (8 is run as 9: zlib's raw deflate)
  std::uint8_t client_max_window_bits = 15;  // §7.1.2.2
  // Local tuning, not negotiated: zlib memLevel for our compressor, and the size
  // below which we send messages uncompressed (tiny messages only grow).
  std::uint8_t mem_level = 8;
  std::size_t compress_threshold = 0;
};

}  // namespace ws6455
