#include "ws6455/close_code.hpp"
#include "ws6455/error.hpp"

#include <string>

namespace ws6455 {

std::uint16_t close_code_for(protocol_error e) noexcept {
  switch (e) {
    case protocol_error::invalid_utf8:
    case protocol_error::invalid_close_reason:
    case protocol_error::bad_compressed_data:
      return close_code::invalid_payload;
    case protocol_error::frame_too_large:
    case protocol_error::message_too_large:
    case protocol_error::too_many_fragments:
      return close_code::message_too_big;
    case protocol_error::none:
      return close_code::normal;
    case protocol_error::internal_error:
      return close_code::internal_error;
    default:
      return close_code::protocol_error;
  }
}

std::string_view describe(protocol_error e) noexcept {
  switch (e) {
    case protocol_error::none: return "no error";
    case protocol_error::reserved_bits: return "reserved bits set";
    case protocol_error::reserved_opcode: return "reserved opcode";
    case protocol_error::control_fragmented: return "fragmented control frame";
    case protocol_error::control_too_long: return "control frame payload over 125 bytes";
    case protocol_error::non_minimal_length: return "payload length not in minimal form";
    case protocol_error::length_msb_set: return "64-bit payload length with the high bit set";
    case protocol_error::unmasked_frame: return "unmasked client frame";
    case protocol_error::masked_frame: return "masked server frame";
    case protocol_error::unexpected_continuation: return "continuation frame with no message to continue";
    case protocol_error::expected_continuation: return "new data frame inside a fragmented message";
    case protocol_error::bad_close_payload: return "close payload of one byte";
    case protocol_error::bad_close_code: return "invalid close code";
    case protocol_error::invalid_utf8: return "invalid UTF-8 in text message";
    case protocol_error::invalid_close_reason: return "invalid UTF-8 in close reason";
    case protocol_error::bad_compressed_data: return "invalid compressed data";
    case protocol_error::frame_too_large: return "frame larger than max_frame_size";
    case protocol_error::message_too_large: return "message larger than max_message_size";
    case protocol_error::too_many_fragments: return "too many fragments in one message";
    case protocol_error::internal_error: return "internal error";
  }
  return "unknown error";
}

std::string_view describe(send_result r) noexcept {
  switch (r) {
    case send_result::ok: return "ok";
    case send_result::backpressure: return "output buffer full (max_write_buffer_size)";
    case send_result::closed: return "connection is closing or closed";
    case send_result::invalid_utf8: return "text is not valid UTF-8";
    case send_result::control_too_long: return "control payload too long";
    case send_result::invalid_close_code: return "close code may not be sent";
    case send_result::message_in_progress: return "a fragmented message is in progress";
    case send_result::no_message_open: return "no fragmented message to continue";
    case send_result::wrong_role: return "not allowed in this role";
    case send_result::not_a_data_opcode: return "fragments are text, binary or continuation";
    case send_result::compression_failed: return "compression failed";
  }
  return "unknown";
}

std::string_view describe(config_error e) noexcept {
  switch (e) {
    case config_error::none: return "no error";
    case config_error::deflate_window_bits: return "invalid config: deflate window bits outside 8-15";
    case config_error::deflate_mem_level: return "invalid config: deflate mem_level outside 1-9";
    case config_error::zero_write_buffer: return "invalid config: max_write_buffer_size is 0";
    case config_error::deflate_init_failed: return "zlib could not be initialised";
  }
  return "unknown config error";
}

namespace {

template <class E>
class category final : public std::error_category {
 public:
  explicit category(const char* name) noexcept : name_(name) {}
  const char* name() const noexcept override { return name_; }
  std::string message(int v) const override { return std::string(describe(static_cast<E>(v))); }

 private:
  const char* name_;
};

}  // namespace

const std::error_category& protocol_error_category() noexcept {
  static const category<protocol_error> c("ws6455.protocol_error");
  return c;
}
const std::error_category& send_result_category() noexcept {
  static const category<send_result> c("ws6455.send_result");
  return c;
}
const std::error_category& config_error_category() noexcept {
  static const category<config_error> c("ws6455.config_error");
  return c;
}
std::error_code make_error_code(protocol_error e) noexcept { return {static_cast<int>(e), protocol_error_category()}; }
std::error_code make_error_code(send_result r) noexcept { return {static_cast<int>(r), send_result_category()}; }
std::error_code make_error_code(config_error e) noexcept { return {static_cast<int>(e), config_error_category()}; }

}  // namespace ws6455
