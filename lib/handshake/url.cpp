// ws:// and wss:// URLs (RFC 6455 §3) and query decoding.
#include "ws6455/url.hpp"

#include <charconv>

#include "ws6455/http_head.hpp"

namespace ws6455 {

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_alnum(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Printable ASCII without space: what we put on the request line unchanged.
bool is_url_char(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f;
}

}  // namespace

std::string ws_url::resource() const {
  std::string r = path.empty() ? std::string("/") : path;
  if (!query.empty()) {
    r += '?';
    r += query;
  }
  return r;
}

std::string ws_url::host_header() const {
  std::string h;
  if (is_ipv6()) {
    h = '[' + host + ']';
  } else {
    h = host;
  }
  if (port != (secure ? 443 : 80)) {
    h += ':';
    h += std::to_string(port);
  }
  return h;
}

expected<ws_url, std::string> parse_ws_url(std::string_view url) {
  using err = unexpected<std::string>;
  ws_url out;
  const std::size_t colon = url.find("://");
  if (colon == std::string_view::npos) return err{"not a ws:// or wss:// URL"};
  const std::string_view scheme = url.substr(0, colon);
  if (iequals(scheme, "ws")) {
    out.secure = false;
  } else if (iequals(scheme, "wss")) {
    out.secure = true;
  } else {
    return err{"scheme must be ws or wss"};
  }
  out.port = out.secure ? 443 : 80;
  std::string_view rest = url.substr(colon + 3);
  for (const char c : rest)
    if (!is_url_char(c)) return err{"URL contains a space, control or non-ASCII character"};
  if (rest.find('#') != std::string_view::npos) return err{"fragment identifiers are not allowed (RFC 6455 §3)"};

  const std::size_t auth_end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, auth_end);
  const std::string_view path_query = auth_end == std::string_view::npos ? std::string_view{} : rest.substr(auth_end);
  if (authority.find('@') != std::string_view::npos) return err{"userinfo is not allowed in a ws URL"};

  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return err{"unterminated IPv6 literal"};
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return err{"junk after IPv6 literal"};
      port = after.substr(1);
    }
    if (host.empty() || host.find(':') == std::string_view::npos) return err{"invalid IPv6 literal"};
    for (const char c : host)
      if (hex_value(c) < 0 && c != ':' && c != '.') return err{"invalid IPv6 literal (zone ids are not supported)"};
  } else {
    const std::size_t pc = authority.rfind(':');
    host = authority.substr(0, pc);
    if (pc != std::string_view::npos) port = authority.substr(pc + 1);
    for (const char c : host)
      if (!is_alnum(c) && c != '-' && c != '.' && c != '_' && c != '~') return err{"invalid character in host"};
  }
  if (host.empty()) return err{"empty host"};
  // RFC 3986 §3.2.3: an empty port means the default.
  if (!port.empty()) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || port.front() == '+' || value == 0 || value > 65535)
      return err{"invalid port"};
    out.port = static_cast<std::uint16_t>(value);
  }
  out.host = host;

  const std::size_t q = path_query.find('?');
  const std::string_view path = path_query.substr(0, q);
  out.path = path.empty() ? std::string("/") : std::string(path);
  if (q != std::string_view::npos) out.query = path_query.substr(q + 1);
  return out;
}

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view piece = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (piece.empty()) continue;
    const std::size_t eq = piece.find('=');
    out.emplace_back(percent_decode(piece.substr(0, eq), true),
                     eq == std::string_view::npos ? std::string{} : percent_decode(piece.substr(eq + 1), true));
  }
  return out;
}

}  // namespace ws6455
