// libFuzzer target: ws:// and wss:// URLs (RFC 6455 §3) and the query helpers
// (include/ws6455/url.hpp). The whole input is the URL (and the percent_decode /
// parse_query input).
//   parse_ws_url: deterministic; on success the fields keep the header's promises
//     (secure iff the scheme is wss in any case, non-empty host of printable ASCII,
//     brackets only around IPv6, port != 0 and the scheme default unless given, path
//     starting with '/', no '#', resource() == path + ("?" + query if any)), and the
//     URL rebuilt from its parts — scheme "://" host_header() resource() — parses to the
//     same fields (the request line and Host header a client sends name the same URL).
//   percent_decode: never grows; leaves strings without '%' (and '+', with
//     plus_is_space) alone; decodes a full %XX encoding of any bytes back to them.
//   parse_query: equals a model of the documented splitting; total size <= input size.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ws6455/url.hpp"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool istarts(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != prefix[i]) return false;
  return true;
}

bool same_url(const ws6455::ws_url& a, const ws6455::ws_url& b) {
  return a.secure == b.secure && a.host == b.host && a.port == b.port && a.path == b.path && a.query == b.query;
}

bool printable(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return true;
}

void check_url(std::string_view in) {
  const auto u = ws6455::parse_ws_url(in);
  const auto u2 = ws6455::parse_ws_url(in);
  require(u.has_value() == u2.has_value(), "parse_ws_url is not deterministic");
  if (!u) {
    require(!u.error().empty(), "parse_ws_url failed without a reason");
    require(u.error() == u2.error(), "parse_ws_url is not deterministic (reason)");
    return;
  }
  require(same_url(*u, *u2), "parse_ws_url is not deterministic (fields)");
  const ws6455::ws_url& url = *u;
  require(url.secure ? istarts(in, "wss://") : istarts(in, "ws://"), "secure does not match the scheme");
  require(!url.host.empty(), "empty host accepted");
  require(url.port != 0, "port 0 accepted");
  require(!url.path.empty() && url.path.front() == '/', "path does not start with '/'");
  require(printable(url.host) && printable(url.path) && printable(url.query), "non-printable character accepted");
  require(in.find('#') == std::string_view::npos, "fragment accepted");
  require(url.host.find_first_of("[]@/?") == std::string::npos, "host holds a delimiter");
  const bool bracketed = in.find("://[") != std::string_view::npos && in.find("://[") == in.find("://");
  require(url.is_ipv6() == bracketed, "is_ipv6() does not match the brackets");
  if (in.find(std::to_string(url.port)) == std::string_view::npos)
    require(url.port == (url.secure ? 443 : 80), "a port not in the URL that is not the default");

  const std::string res = url.resource();
  require(res == url.path + (url.query.empty() ? std::string() : "?" + url.query), "resource() != path?query");
  const std::string hh = url.host_header();
  require(!hh.empty() && hh.find_first_of("/?#@") == std::string::npos, "host_header() holds a delimiter");

  const std::string rebuilt = std::string(url.secure ? "wss" : "ws") + "://" + hh + res;
  const auto again = ws6455::parse_ws_url(rebuilt);
  require(again.has_value(), "the rebuilt URL does not parse");
  require(same_url(url, *again), "the rebuilt URL parses differently");
  require(again->host_header() == hh && again->resource() == res, "the rebuilt URL gives another request");
}

void check_percent(std::string_view in) {
  for (const bool plus : {false, true}) {
    const std::string d = ws6455::percent_decode(in, plus);
    require(d.size() <= in.size(), "percent_decode grew the string");
    require(d == ws6455::percent_decode(in, plus), "percent_decode is not deterministic");
    const bool plain = in.find('%') == std::string_view::npos && (!plus || in.find('+') == std::string_view::npos);
    if (plain) require(d == in, "percent_decode changed a string without escapes");
  }
  // Full %XX encoding (mixed-case hex) decodes back to the bytes.
  static const char hex_lo[] = "0123456789abcdef";
  static const char hex_up[] = "0123456789ABCDEF";
  std::string enc;
  enc.reserve(in.size() * 3);
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    const char* h = (i & 1) ? hex_up : hex_lo;
    enc += '%';
    enc += h[c >> 4];
    enc += h[c & 15];
  }
  require(ws6455::percent_decode(enc) == in, "percent_decode(encode(x)) != x");
  require(ws6455::percent_decode(enc, true) == in, "percent_decode(encode(x), plus) != x");
}

void check_query(std::string_view in) {
  const auto pairs = ws6455::parse_query(in);
  std::size_t total = 0;
  for (const auto& [n, v] : pairs) total += n.size() + v.size();
  require(total <= in.size(), "parse_query output larger than its input");
  // The documented splitting.
  std::vector<std::pair<std::string, std::string>> model;
  std::size_t b = 0;
  while (b <= in.size()) {
    std::size_t e = in.find('&', b);
    if (e == std::string_view::npos) e = in.size();
    const std::string_view piece = in.substr(b, e - b);
    if (!piece.empty()) {
      const std::size_t eq = piece.find('=');
      if (eq == std::string_view::npos)
        model.emplace_back(ws6455::percent_decode(piece, true), std::string());
      else
        model.emplace_back(ws6455::percent_decode(piece.substr(0, eq), true),
                           ws6455::percent_decode(piece.substr(eq + 1), true));
    }
    b = e + 1;
  }
  require(pairs == model, "parse_query differs from the documented splitting");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  check_url(in);
  check_percent(in);
  check_query(in);
  // The query of a URL, the way a server would read it.
  const std::size_t q = in.find('?');
  if (q != std::string_view::npos) check_query(in.substr(q + 1));
  return 0;
}
