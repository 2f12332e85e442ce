// Internal: parsing a complete HTTP/1.1 head (found by detail::head_scanner) into
// http_request / http_response, and the small character classes both sides share.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ws6455/http_head.hpp"

namespace ws6455::detail {

// tchar, RFC 9110 §5.6.2.
constexpr bool is_tchar(unsigned char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

// field-vchar / obs-text and the whitespace allowed inside a value (RFC 9110 §5.5):
// no CTLs other than HTAB, no DEL.
constexpr bool is_field_value_char(unsigned char c) noexcept {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) noexcept;
// A value we may put on the wire: only field-value characters, so no CR/LF
// (header injection from application-supplied strings).
bool is_valid_field_value(std::string_view v) noexcept;

// A Host field value: uri-host [ ":" port ] (RFC 9110 §7.2), uri-host being an
// RFC 3986 §3.2.2 host: an IP-literal in brackets (IPv6address or IPvFuture), or a
// reg-name (which covers IPv4address). Stricter than the grammar where it would not
// name a TCP endpoint: the host may not be empty, the port is at most 65535.
bool is_valid_host_field(std::string_view v) noexcept;

// base64 of a 16-byte Sec-WebSocket-Key nonce (accept_key.cpp).
std::string base64_encode_16(const std::byte (&bytes)[16]);

// The reason phrase for the status codes we send; "Error" for the rest.
std::string_view reason_phrase(int status) noexcept;

struct parse_error {
  int status = 0;  // 0: no error; else the HTTP status a server answers with
  std::string_view reason;
};

struct head_access {
  // Syntax only (RFC 9112 §3, §5): request line and fields. The WebSocket rules
  // are checked by server_handshake.
  static parse_error parse_request(std::string_view head, http_request& out);
  // Status line (RFC 9112 §4) and fields.
  static parse_error parse_response(std::string_view head, http_response& out);

  static void set_websocket(http_request& r, std::string key, std::vector<std::string> protocols,
                            std::string extensions) {
    r.key_ = std::move(key);
    r.protocols_ = std::move(protocols);
    r.extensions_ = std::move(extensions);
  }
};

}  // namespace ws6455::detail
