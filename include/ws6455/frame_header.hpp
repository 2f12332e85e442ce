// Encoding of a frame header (RFC 6455 §5.2), public so that adapters can send
// a header from a small array and the payload from the caller's memory (writev).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace ws6455 {

enum class opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

constexpr bool is_control(opcode op) noexcept { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }

inline constexpr std::size_t max_frame_header_size = 14;  // 2 + 8 (length) + 4 (mask)

struct frame_header {
  std::array<std::byte, max_frame_header_size> bytes{};
  std::size_t size = 0;
};

// The size of the header encode_frame_header writes for such a frame.
constexpr std::size_t frame_header_size(std::uint64_t payload_size, bool masked) noexcept {
  return 2 + (payload_size < 126 ? 0 : payload_size <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
}

// The header for a frame of `payload_size` bytes, in the minimal length form (§5.2).
// With a mask key the MASK bit is set and the key written; the payload must then
// be masked with it by the caller.
frame_header encode_frame_header(opcode op, bool fin, bool rsv1, std::uint64_t payload_size,
                                 const std::optional<std::array<std::byte, 4>>& mask_key = std::nullopt) noexcept;

}  // namespace ws6455
