// Errors as values. A peer's violation fails the connection with a close code
// (RFC 6455 §7.1.7); a local misuse is refused with a send_result and changes nothing.
#pragma once

#include <cstdint>
#include <string_view>
#include <system_error>

namespace ws6455 {

// Why the connection was failed because of what the peer sent.
enum class protocol_error : std::uint8_t {
  none = 0,
  reserved_bits,            // RSV1-3 set without an extension that claims them (§5.2)      1002
  reserved_opcode,          // opcodes 3-7, 0xB-0xF (§5.2)                                  1002
  control_fragmented,       // FIN=0 on a control frame (§5.5)                              1002
  control_too_long,         // control payload over 125 bytes (§5.5)                        1002
  non_minimal_length,       // 126/127 length form used for a shorter length (§5.2)         1002
  length_msb_set,           // 64-bit length with its most significant bit set (§5.2)       1002
  unmasked_frame,           // a client frame without a mask (§5.1)                         1002
  masked_frame,             // a server frame with a mask (§5.1)                            1002
  unexpected_continuation,  // continuation with no message open (§5.4)                     1002
  expected_continuation,    // new data frame while a message is open (§5.4)                1002
  bad_close_payload,        // close body of one byte (§5.5.1)                              1002
  bad_close_code,           // close code that may not be sent (§7.4)                       1002
  invalid_utf8,             // text payload not UTF-8 (§8.1)                                1007
  invalid_close_reason,     // close reason not UTF-8 (§5.5.1)                              1007
  bad_compressed_data,      // deflate stream does not inflate (RFC 7692 §8.2.3.1)          1007
  frame_too_large,          // declared length over max_frame_size                          1009
  message_too_large,        // message over max_message_size (inflated, with deflate)       1009
  too_many_fragments,       // more frames in one message than max_fragments                1009
  internal_error,           // not the peer's doing: an invalid config, zlib could not start 1011
};

// The close code sent when failing the connection for `e`.
std::uint16_t close_code_for(protocol_error e) noexcept;
// A short English reason, also put in the close frame.
std::string_view describe(protocol_error e) noexcept;

// What a send call did. Anything but `ok` means nothing was queued.
enum class [[nodiscard]] send_result : std::uint8_t {
  ok = 0,
  backpressure,         // pending output would pass max_write_buffer_size: drain, then retry
  closed,               // a close was already sent (or the connection failed): no more frames
  invalid_utf8,         // text that is not UTF-8
  control_too_long,     // ping/pong payload over 125 bytes, close reason over 123
  invalid_close_code,   // a code that may not be put on the wire (§7.4)
  message_in_progress,  // a fragmented send is open: finish it first
  no_message_open,      // send_fragment continuation without a start
  wrong_role,           // e.g. a prepared (unmasked) frame on a client connection
  not_a_data_opcode,    // send_fragment with a control opcode
  compression_failed,   // zlib failed while compressing (out of memory): our compression
                        // context may now be out of step with the peer's; close with 1011
};

std::string_view describe(send_result r) noexcept;

// Why a config was refused (connection::make, validate). A connection constructed
// directly from such a config fails at once with 1011 instead (see connection).
enum class config_error : std::uint8_t {
  none = 0,
  deflate_window_bits,    // server_/client_max_window_bits outside 8..15 (RFC 7692 §7.1.2)
  deflate_mem_level,      // deflate_params::mem_level outside 1..9 (zlib)
  zero_write_buffer,      // max_write_buffer_size 0: nothing could ever be sent
  deflate_init_failed,    // zlib could not allocate its state (not a config mistake)
};

std::string_view describe(config_error e) noexcept;

// std::error_code interop: `std::error_code ec = conn.send_text(s);`, `ec == protocol_error::...`.
// Value 0 (none / ok) is success, as std::error_code expects.
const std::error_category& protocol_error_category() noexcept;
const std::error_category& send_result_category() noexcept;
const std::error_category& config_error_category() noexcept;
std::error_code make_error_code(protocol_error e) noexcept;
std::error_code make_error_code(send_result r) noexcept;
std::error_code make_error_code(config_error e) noexcept;

}  // namespace ws6455

template <>
struct std::is_error_code_enum<ws6455::protocol_error> : std::true_type {};
template <>
struct std::is_error_code_enum<ws6455::send_result> : std::true_type {};
template <>
struct std::is_error_code_enum<ws6455::config_error> : std::true_type {};
