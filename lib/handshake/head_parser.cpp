// HTTP/1.1 head scanning and parsing for the opening handshake. Small on purpose:
// the handshake needs one request or response head, not a general HTTP stack.
// No regex (ws ReDoS), no allocation per byte, every byte looked at a bounded
// number of times.
#include "head_parser.hpp"

#include "head_scanner.hpp"

#include <algorithm>
#include <cstring>

#include "ws6455/url.hpp"

namespace ws6455 {
namespace detail {

namespace {

constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// Calls fn(element) for each non-empty element of a comma-separated list
// (RFC 9110 §5.6.1), with commas inside quoted-strings not splitting.
template <class Fn>
void for_each_element(std::string_view v, Fn&& fn) {
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= v.size(); ++i) {
    if (i == v.size() || (!quoted && v[i] == ',')) {
      const std::string_view e = trim_ows(v.substr(start, i - start));
      if (!e.empty() && fn(e)) return;
      start = i + 1;
      continue;
    }
    if (quoted && v[i] == '\\' && i + 1 < v.size()) {
      ++i;  // quoted-pair: the next character is literal (RFC 9110 §5.6.4)
    } else if (v[i] == '"') {
      quoted = !quoted;
    }
  }
}

bool parse_version(std::string_view v, int& major, int& minor) noexcept {
  // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3), case-sensitive.
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.') return false;
  if (v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9') return false;
  major = v[5] - '0';
  minor = v[7] - '0';
  return true;
}

// The header lines after the start line: `head` from the first header line to the
// end (final CRLF CRLF). Scanner guarantees: CRLF endings only, ends with a blank line.
parse_error parse_fields(std::string_view head, std::vector<http_header>& out) {
  std::size_t pos = 0;
  for (;;) {
    const std::size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) return {400, "malformed head"};  // unreachable after the scanner
    if (eol == pos) return {};                                        // the blank line
    const std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    // RFC 9112 §5.2: obs-fold is deprecated; a server may reject it with 400.
    if (is_ows(line[0])) return {400, "obsolete line folding in header"};
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return {400, "header line without a colon"};
    const std::string_view name = line.substr(0, colon);
    if (name.empty()) return {400, "empty header name"};
    // RFC 9112 §5.1: no whitespace between the name and the colon (a smuggling vector).
    if (is_ows(name.back())) return {400, "whitespace before colon in header"};
    if (!is_token(name)) return {400, "invalid header name"};
    const std::string_view value = trim_ows(line.substr(colon + 1));
    if (!is_valid_field_value(value)) return {400, "control character in header value"};
    out.push_back({std::string(name), std::string(value)});
  }
}

bool is_hexdig(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// RFC 3986 §2.3 unreserved and §2.2 sub-delims.
bool is_unreserved(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == '_' ||
         c == '~';
}
bool is_sub_delim(char c) noexcept {
  switch (c) {
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*': case '+': case ',': case ';': case '=':
      return true;
    default:
      return false;
  }
}

// reg-name = *( unreserved / pct-encoded / sub-delims ), RFC 3986 §3.2.2.
bool is_reg_name(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || !is_hexdig(s[i + 1]) || !is_hexdig(s[i + 2])) return false;
      i += 2;
    } else if (!is_unreserved(s[i]) && !is_sub_delim(s[i])) {
      return false;
    }
  }
  return true;
}

// dec-octet "." dec-octet "." dec-octet "." dec-octet, RFC 3986 §3.2.2 (no leading zeros).
bool is_ipv4(std::string_view s) noexcept {
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (s.empty() || s.front() != '.') return false;
      s.remove_prefix(1);
    }
    std::size_t n = 0;
    while (n < s.size() && n < 3 && is_digit(s[n])) ++n;
    if (n == 0 || (n > 1 && s[0] == '0')) return false;
    int value = 0;
    for (std::size_t i = 0; i < n; ++i) value = value * 10 + (s[i] - '0');
    if (value > 255) return false;
    s.remove_prefix(n);
  }
  return s.empty();
}

// IPv6address, RFC 3986 §3.2.2: eight 16-bit pieces of 1-4 hex digits, one "::"
// standing for one or more zero pieces, the last two pieces possibly an IPv4address.
bool is_ipv6(std::string_view s) noexcept {
  int pieces = 0;
  bool elided = false;
  if (s.starts_with("::")) {
    elided = true;
    s.remove_prefix(2);
    if (s.empty()) return true;  // "::"
  } else if (s.starts_with(":")) {
    return false;
  }
  for (;;) {
    std::size_t n = 0;
    while (n < s.size() && is_hexdig(s[n])) ++n;
    if (n < s.size() && s[n] == '.') {  // ls32 as an IPv4address: the end
      return is_ipv4(s) && (elided ? pieces + 2 <= 7 : pieces + 2 == 8);
    }
    if (n == 0 || n > 4) return false;
    ++pieces;
    s.remove_prefix(n);
    if (s.empty()) break;
    if (s.starts_with("::")) {
      if (elided) return false;
      elided = true;
      s.remove_prefix(2);
      if (s.empty()) break;
    } else if (s.front() == ':') {
      s.remove_prefix(1);
      if (s.empty()) return false;  // a trailing single colon
    } else {
      return false;
    }
  }
  return elided ? pieces <= 7 : pieces == 8;
}

// IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ), RFC 3986 §3.2.2.
bool is_ipvfuture(std::string_view s) noexcept {
  if (s.size() < 4 || (s[0] != 'v' && s[0] != 'V')) return false;
  std::size_t i = 1;
  while (i < s.size() && is_hexdig(s[i])) ++i;
  if (i == 1 || i >= s.size() || s[i] != '.' || i + 1 == s.size()) return false;
  for (++i; i < s.size(); ++i)
    if (!is_unreserved(s[i]) && !is_sub_delim(s[i]) && s[i] != ':') return false;
  return true;
}

}  // namespace

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool is_valid_field_value(std::string_view v) noexcept {
  return std::all_of(v.begin(), v.end(), [](char c) { return is_field_value_char(static_cast<unsigned char>(c)); });
}

bool is_valid_host_field(std::string_view v) noexcept {
  std::string_view host = v;
  std::string_view port;
  if (!v.empty() && v.front() == '[') {
    const std::size_t close = v.find(']');
    if (close == std::string_view::npos) return false;
    const std::string_view literal = v.substr(1, close - 1);
    if (!is_ipv6(literal) && !is_ipvfuture(literal)) return false;
    const std::string_view rest = v.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
    }
  } else {
    const std::size_t colon = v.find(':');  // a reg-name has no colon
    host = v.substr(0, colon);
    if (colon != std::string_view::npos) port = v.substr(colon + 1);
    if (host.empty() || !is_reg_name(host)) return false;
  }
  // port = *DIGIT (RFC 3986 §3.2.3); empty means the scheme's default.
  if (port.size() > 5) return false;
  unsigned value = 0;
  for (const char c : port) {
    if (!is_digit(c)) return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

// ---- head_scanner -----------------------------------------------------------------

std::size_t head_scanner::feed(std::span<const std::byte> input) {
  if (status_ != status::need_more || input.empty()) return 0;
  if (buf_.capacity() == 0) buf_.reserve(std::min<std::size_t>(limits_.max_header_bytes, 512));
  const char* p = reinterpret_cast<const char*>(input.data());
  const std::size_t used = used_before_ + buf_.size();
  const std::size_t room = limits_.max_header_bytes > used ? limits_.max_header_bytes - used : 0;
  std::size_t i = 0;
  for (; i < input.size(); ++i) {
    if (i >= room) {
      status_ = status::too_large;
      break;
    }
    const char c = p[i];
    if (prev_ == '\r' && c != '\n') {
      status_ = status::bad_line_ending;  // bare CR
      break;
    }
    if (c == '\n') {
      if (prev_ != '\r') {
        status_ = status::bad_line_ending;  // bare LF
        break;
      }
      const std::size_t lf = buf_.size() + i;
      if (lf - 1 == line_start_) {  // an empty line
        if (lines_ == 0) {
          status_ = status::leading_blank_line;
          break;
        }
        status_ = status::complete;
        ++i;  // the final LF is part of the head
        break;
      }
      // The start line plus at most max_headers header lines.
      if (++lines_ > limits_.max_headers + 1) {
        status_ = status::too_many_headers;
        break;
      }
      line_start_ = lf + 1;
    }
    prev_ = c;
  }
  buf_.append(p, i);
  // Full without the end: no further byte could complete it, so fail now rather
  // than wait for one more (a head of exactly the limit is fine).
  if (status_ == status::need_more && used + i >= limits_.max_header_bytes) status_ = status::too_large;
  return i;
}

void head_scanner::restart() noexcept {
  used_before_ += buf_.size();
  buf_.clear();
  line_start_ = 0;
  lines_ = 0;
  prev_ = 0;
  status_ = status::need_more;
}

// ---- scanner_storage: a head_scanner constructed in place ---------------------------

scanner_storage::scanner_storage(handshake_limits limits) noexcept { ::new (get()) head_scanner(limits); }
scanner_storage::scanner_storage(const scanner_storage& other) { ::new (get()) head_scanner(scanner(other)); }
scanner_storage::scanner_storage(scanner_storage&& other) noexcept {
  ::new (get()) head_scanner(std::move(scanner(other)));
}
scanner_storage& scanner_storage::operator=(const scanner_storage& other) {
  scanner(*this) = scanner(other);
  return *this;
}
scanner_storage& scanner_storage::operator=(scanner_storage&& other) noexcept {
  scanner(*this) = std::move(scanner(other));
  return *this;
}
scanner_storage::~scanner_storage() { scanner(*this).~head_scanner(); }

// ---- request and response heads -----------------------------------------------------

parse_error head_access::parse_request(std::string_view head, http_request& out) {
  const std::size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  // request-line = method SP request-target SP HTTP-version (RFC 9112 §3), single spaces.
  const std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return {400, "malformed request line"};
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return {400, "malformed request line"};
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) return {400, "malformed request method"};
  if (target.empty()) return {400, "malformed request line"};
  for (const char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '#') return {400, "invalid character in request target"};
  }
  if (!parse_version(version, out.major_, out.minor_)) return {400, "malformed HTTP version"};

  // origin-form, or absolute-form (RFC 9112 §3.2.2: servers MUST accept it).
  std::string_view path_query;
  if (target.front() == '/') {
    path_query = target;
  } else {
    const std::size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) return {400, "unsupported request target form"};
    const std::string_view scheme = target.substr(0, scheme_end);
    if (!iequals(scheme, "http") && !iequals(scheme, "https") && !iequals(scheme, "ws") &&
        !iequals(scheme, "wss"))
      return {400, "unsupported request target form"};
    const std::string_view rest = target.substr(scheme_end + 3);
    const std::size_t auth_end = rest.find_first_of("/?");
    if (auth_end == 0) return {400, "empty authority in request target"};
    path_query = auth_end == std::string_view::npos ? std::string_view{} : rest.substr(auth_end);
  }
  const std::size_t q = path_query.find('?');
  std::string_view path = path_query.substr(0, q);
  out.method_ = method;
  out.target_ = target;
  out.path_ = path.empty() ? std::string_view("/") : path;
  out.query_ = q == std::string_view::npos ? std::string_view{} : path_query.substr(q + 1);
  return parse_fields(head.substr(eol + 2), out.headers_);
}

parse_error head_access::parse_response(std::string_view head, http_response& out) {
  const std::size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4);
  // a missing SP before an empty reason is tolerated, as §4 suggests.
  if (line.size() < 12 || line[8] != ' ') return {400, "malformed status line"};
  if (!parse_version(line.substr(0, 8), out.major_, out.minor_)) return {400, "malformed status line"};
  const std::string_view code = line.substr(9, 3);
  if (code[0] < '1' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9')
    return {400, "malformed status code"};
  if (line.size() > 12 && line[12] != ' ') return {400, "malformed status line"};
  const std::string_view reason = line.size() > 13 ? line.substr(13) : std::string_view{};
  if (!is_valid_field_value(reason)) return {400, "control character in reason phrase"};
  out.status_ = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  out.reason_ = reason;
  out.headers_.clear();
  return parse_fields(head.substr(eol + 2), out.headers_);
}

}  // namespace detail

// ---- public helpers -----------------------------------------------------------------

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (detail::lower(a[i]) != detail::lower(b[i])) return false;
  return true;
}

bool is_token(std::string_view s) noexcept {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return detail::is_tchar(static_cast<unsigned char>(c)); });
}

std::vector<std::string_view> split_list(std::string_view value) {
  std::vector<std::string_view> out;
  detail::for_each_element(value, [&](std::string_view e) {
    out.push_back(e);
    return false;
  });
  return out;
}

std::optional<std::string_view> http_fields::header(std::string_view name) const noexcept {
  for (const auto& h : headers_)
    if (iequals(h.name, name)) return std::string_view(h.value);
  return std::nullopt;
}

std::size_t http_fields::header_count(std::string_view name) const noexcept {
  return static_cast<std::size_t>(
      std::count_if(headers_.begin(), headers_.end(), [&](const http_header& h) { return iequals(h.name, name); }));
}

std::string http_fields::header_list(std::string_view name) const {
  std::string out;
  for (const auto& h : headers_) {
    if (!iequals(h.name, name) || h.value.empty()) continue;
    if (!out.empty()) out += ", ";
    out += h.value;
  }
  return out;
}

bool http_fields::header_has_token(std::string_view name, std::string_view token) const {
  for (const auto& h : headers_) {
    if (!iequals(h.name, name)) continue;
    bool found = false;
    detail::for_each_element(h.value, [&](std::string_view e) { return found = iequals(e, token); });
    if (found) return true;
  }
  return false;
}

std::vector<std::pair<std::string, std::string>> http_request::query_params() const {
  return parse_query(query_);
}

std::optional<std::string> http_request::query_param(std::string_view name) const {
  for (auto& [k, v] : parse_query(query_))
    if (k == name) return std::move(v);
  return std::nullopt;
}

}  // namespace ws6455
