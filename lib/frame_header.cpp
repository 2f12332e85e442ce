#include "ws6455/frame_header.hpp"

#include <cstring>

namespace ws6455 {

frame_header encode_frame_header(opcode op, bool fin, bool rsv1, std::uint64_t payload_size,
                                 const std::optional<std::array<std::byte, 4>>& mask_key) noexcept {
  frame_header h;
  auto* b = h.bytes.data();
  b[0] = static_cast<std::byte>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | static_cast<unsigned>(op));
  const unsigned mask_bit = mask_key ? 0x80 : 0;
  std::size_t i = 2;
  // RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length".
  if (payload_size < 126) {
    b[1] = static_cast<std::byte>(mask_bit | payload_size);
  } else if (payload_size <= 0xFFFF) {
    b[1] = static_cast<std::byte>(mask_bit | 126);
    b[2] = static_cast<std::byte>(payload_size >> 8);
    b[3] = static_cast<std::byte>(payload_size);
    i = 4;
  } else {
    b[1] = static_cast<std::byte>(mask_bit | 127);
    for (int k = 0; k < 8; ++k) b[2 + k] = static_cast<std::byte>(payload_size >> (56 - 8 * k));
    i = 10;
  }
  if (mask_key) {
    std::memcpy(b + i, mask_key->data(), 4);
    i += 4;
  }
  h.size = i;
  return h;
}

}  // namespace ws6455
