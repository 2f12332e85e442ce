// Close status codes, RFC 6455 §7.4 and the IANA registry.
#pragma once

#include <cstdint>

namespace ws6455 {

namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;    // local only: a close frame without a body
inline constexpr std::uint16_t abnormal = 1006;     // local only: the transport closed without a close frame
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t message_too_big = 1009;
inline constexpr std::uint16_t mandatory_extension = 1010;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t service_restart = 1012;
inline constexpr std::uint16_t try_again_later = 1013;
inline constexpr std::uint16_t bad_gateway = 1014;
inline constexpr std::uint16_t tls_handshake = 1015;  // local only
}  // namespace close_code

// May this code appear in a close frame on the wire? RFC 6455 §7.4.1 and §7.4.2:
// 1000-1003 and 1007-1014 are defined (1012-1014 by IANA), 3000-4999 are for
// libraries and applications; 1004-1006, 1015, everything below 1000, 1016-2999
// and 5000 and above must not be sent, and are a protocol error when received.
constexpr bool is_valid_close_code(std::uint16_t code) noexcept {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

}  // namespace ws6455
