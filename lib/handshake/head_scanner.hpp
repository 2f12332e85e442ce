// Internal: finding the end of an HTTP/1.1 head, incrementally. The handshake
// classes keep one in place (detail::scanner_storage in handshake.hpp), so that the
// type stays out of the public headers without an allocation per handshake.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <string>
#include <string_view>

#include "ws6455/handshake.hpp"

namespace ws6455::detail {

// Each byte is looked at once, whatever the split (picohttpparser's last_len idea),
// so one-byte reads of an 8 KiB head cost O(n), not O(n^2) (tungstenite
// CVE-2023-43669). Line endings are strict CRLF: a bare LF or a bare CR fails at
// once (RFC 9112 §2.2 lets us; it closes the door on LF/CRLF disagreements between
// us and proxies).
class head_scanner {
 public:
  enum class status : std::uint8_t {
    need_more,
    complete,          // head() is the whole head, final CRLF CRLF included
    too_large,         // more than max_header_bytes without the end
    too_many_headers,  // more than max_headers lines
    bad_line_ending,   // bare LF or bare CR
    leading_blank_line,
  };

  explicit head_scanner(handshake_limits limits) noexcept : limits_(limits) {}
  // Consumes up to the end of the head; nothing once complete or failed.
  std::size_t feed(std::span<const std::byte> input);
  status state() const noexcept { return status_; }
  std::string_view head() const noexcept { return buf_; }
  // Starts over for another head (after a 1xx interim response). The bytes
  // already taken still count against max_header_bytes.
  void restart() noexcept;

 private:
  handshake_limits limits_;
  std::string buf_;
  std::size_t used_before_ = 0;  // bytes of earlier heads (restart)
  std::size_t line_start_ = 0;
  std::size_t lines_ = 0;
  status status_ = status::need_more;
  char prev_ = 0;
};

static_assert(sizeof(head_scanner) <= scanner_storage::size && alignof(head_scanner) <= scanner_storage::align,
              "scanner_storage in handshake.hpp is too small for head_scanner");

inline head_scanner& scanner(scanner_storage& s) noexcept {
  return *std::launder(static_cast<head_scanner*>(s.get()));
}
inline const head_scanner& scanner(const scanner_storage& s) noexcept {
  return *std::launder(static_cast<const head_scanner*>(s.get()));
}

}  // namespace ws6455::detail
