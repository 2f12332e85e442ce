// WebSocket URIs (RFC 6455 §3) and the query-string helpers both handshake sides use.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ws6455/expected.hpp"

namespace ws6455 {

// A parsed ws:// or wss:// URL.
struct ws_url {
  bool secure = false;      // wss: the caller runs TLS underneath; the handshake is the same
  std::string host;         // reg-name or IPv4 as written, or an IPv6 literal without brackets
  std::uint16_t port = 80;  // 80 for ws, 443 for wss unless given
  std::string path = "/";   // still percent-encoded, never empty
  std::string query;        // after '?', without it; empty when none

  bool is_ipv6() const noexcept { return host.find(':') != std::string::npos; }
  // "/path?query": the request-target of the GET (RFC 6455 §3 "resource name").
  std::string resource() const;
  // The Host header value: brackets around IPv6, ":port" only when not the default (§4.1 item 4).
  std::string host_header() const;
};

// Parses "ws://host[:port][/path][?query]" and the wss:// form. The scheme is
// case-insensitive. Rejected, with a short reason: other schemes, fragments
// (§3: "Fragment identifiers ... MUST NOT be used"), userinfo, an empty host,
// port 0 or > 65535, IPv6 zone ids, and characters outside printable ASCII
// (percent-encode them first).
expected<ws_url, std::string> parse_ws_url(std::string_view url);

// %XX decoding (RFC 3986 §2.1). Malformed escapes are kept as written, never rejected.
// With plus_is_space, '+' becomes ' ' (application/x-www-form-urlencoded queries).
std::string percent_decode(std::string_view s, bool plus_is_space = false);

// Splits "a=1&b=two%20words&flag" into decoded (name, value) pairs in order:
// '&' separates, the first '=' splits (a missing '=' gives an empty value),
// '+' is a space, empty pieces are skipped. Repeated names are all kept.
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view query);

}  // namespace ws6455
