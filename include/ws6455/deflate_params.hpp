// Negotiated permessage-deflate parameters (RFC 7692 §7.1), as the frame layer applies them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ws6455 {

// The local tuning defaults, shared by deflate_params and the negotiation's options
// (permessage_deflate::server_options / client_options), so there is one set: memLevel
// 5 costs 16 KiB of zlib memory where zlib's 8 costs 128 KiB, for a few percent of
// ratio; messages under 128 bytes rarely shrink (docs/deflate.md has the numbers).
inline constexpr std::uint8_t default_deflate_mem_level = 5;
inline constexpr std::size_t default_compress_threshold = 128;

struct deflate_params {
  bool server_no_context_takeover = false;  // §7.1.1.1
  bool client_no_context_takeover = false;  // §7.1.1.2
  std::uint8_t server_max_window_bits = 15;  // §7.1.2.1, 8..15 (8 is run as 9: zlib's raw deflate)
  std::uint8_t client_max_window_bits = 15;  // §7.1.2.2
  // Local tuning, not negotiated: zlib memLevel for our compressor, and the size
  // below which we send messages uncompressed (tiny messages only grow).
  std::uint8_t mem_level = default_deflate_mem_level;
  std::size_t compress_threshold = default_compress_threshold;
};

}  // namespace ws6455
