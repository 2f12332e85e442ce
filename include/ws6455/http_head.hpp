// The parsed head of an HTTP/1.1 request or response, as the opening handshake
// (RFC 6455 §4) sees it, plus the token-list helpers its checks are built from.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ws6455 {

namespace detail {
struct head_access;
}

// Bounds on what the handshake buffers from the peer (tungstenite CVE-2023-43669,
// ws GHSA-3h5v-q93c-6h6q). Past either bound a server answers 431.
struct handshake_limits {
  std::size_t max_header_bytes = 8192;  // the whole head: start line, headers, final blank line
  std::size_t max_headers = 100;        // header lines
};

struct http_header {
  std::string name;   // as received, case preserved; compare with iequals()
  std::string value;  // leading and trailing whitespace removed
};

// ASCII case-insensitive equality (field names and most tokens, RFC 9110 §5.1).
bool iequals(std::string_view a, std::string_view b) noexcept;
// Is `s` a non-empty token (RFC 9110 §5.6.2)?
bool is_token(std::string_view s) noexcept;
// The elements of a comma-separated list (RFC 9110 §5.6.1), trimmed of whitespace,
// empty elements dropped. A comma inside a quoted-string does not split
// (extension parameters may be quoted, RFC 6455 §9.1).
std::vector<std::string_view> split_list(std::string_view value);

// Header lines of a request or response, in the order received.
class http_fields {
 public:
  std::span<const http_header> headers() const noexcept { return headers_; }
  // The value of the first line named `name` (case-insensitive), if any.
  std::optional<std::string_view> header(std::string_view name) const noexcept;
  // How many lines are named `name`.
  std::size_t header_count(std::string_view name) const noexcept;
  // All lines named `name` joined with ", " (RFC 9110 §5.3); empty when none.
  std::string header_list(std::string_view name) const;
  // Does any line named `name` hold `token` as a list element (both case-insensitive)?
  // "Connection: keep-alive, Upgrade" has the token "upgrade".
  bool header_has_token(std::string_view name, std::string_view token) const;

 protected:
  std::vector<http_header> headers_;
};

// A request head, as received by server_handshake.
class http_request : public http_fields {
 public:
  std::string_view method() const noexcept { return method_; }
  std::string_view target() const noexcept { return target_; }  // as on the request line
  // The path of the target (origin-form, or the path of an absolute-form target),
  // still percent-encoded; "/" at least.
  std::string_view path() const noexcept { return path_; }
  // After '?', without it; empty when there is none. Still percent-encoded.
  std::string_view query() const noexcept { return query_; }
  // The query split and decoded (see parse_query in url.hpp).
  std::vector<std::pair<std::string, std::string>> query_params() const;
  // The decoded value of the first query parameter named `name` (case-sensitive).
  std::optional<std::string> query_param(std::string_view name) const;
  int version_major() const noexcept { return major_; }
  int version_minor() const noexcept { return minor_; }

  // Sec-WebSocket-Protocol offers, in the client's order, over all such lines (§4.1 item 10).
  std::span<const std::string> offered_protocols() const noexcept { return protocols_; }
  // Every Sec-WebSocket-Extensions line joined with ", ": the offer, opaque here,
  // for the permessage-deflate negotiation (RFC 7692 §5). Empty when none.
  std::string_view offered_extensions() const noexcept { return extensions_; }
  // The Sec-WebSocket-Key, once validated.
  std::string_view key() const noexcept { return key_; }

 private:
  friend struct detail::head_access;
  std::string method_, target_, path_, query_, extensions_, key_;
  std::vector<std::string> protocols_;
  int major_ = 0, minor_ = 0;
};

// A response head, as received by client_handshake.
class http_response : public http_fields {
 public:
  int status() const noexcept { return status_; }
  std::string_view reason_phrase() const noexcept { return reason_; }
  int version_major() const noexcept { return major_; }
  int version_minor() const noexcept { return minor_; }

 private:
  friend struct detail::head_access;
  int status_ = 0, major_ = 0, minor_ = 0;
  std::string reason_;
};

}  // namespace ws6455
