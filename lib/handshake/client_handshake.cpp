// The client side of the opening handshake (RFC 6455 §4.1).
#include <algorithm>
#include <charconv>

#include "head_parser.hpp"
#include "head_scanner.hpp"
#include "random.hpp"
#include "ws6455/handshake.hpp"

namespace ws6455 {

namespace {

// Fields the request writes itself; a second copy would make the server fail (§4.2.1).
bool is_engine_request_field(std::string_view name) noexcept {
  for (std::string_view n : {"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                             "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Content-Length",
                             "Transfer-Encoding"})
    if (iequals(name, n)) return true;
  return false;
}

bool is_request_line_safe(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

// The name of each element of an extension list ("permessage-deflate; x=1, foo" ->
// permessage-deflate, foo), RFC 6455 §9.1. False when a name is not a token.
template <class Fn>
bool for_each_extension_name(std::string_view list, Fn&& fn) {
  for (const std::string_view e : split_list(list)) {
    const std::string_view name = detail::trim_ows(e.substr(0, e.find(';')));
    if (!is_token(name)) return false;
    fn(name);
  }
  return true;
}

// Why these options cannot make a valid request; empty when they can.
std::string_view check_options(const ws_url& url, const client_options& o) {
  for (std::size_t i = 0; i < o.protocols.size(); ++i) {
    const std::string& p = o.protocols[i];
    if (!is_token(p)) return "invalid option: subprotocol is not a token";
    // §4.1 item 10: the offered values MUST be unique.
    const auto before = o.protocols.begin() + static_cast<std::ptrdiff_t>(i);
    if (std::find(o.protocols.begin(), before, p) != before) return "invalid option: duplicate subprotocol";
  }
  if (!detail::is_valid_field_value(o.extensions) || !for_each_extension_name(o.extensions, [](std::string_view) {}))
    return "invalid option: malformed extensions offer";
  for (const auto& h : o.headers) {
    if (!is_token(h.name) || !detail::is_valid_field_value(h.value)) return "invalid option: malformed header";
    if (is_engine_request_field(h.name)) return "invalid option: header is written by the handshake";
  }
  const std::string resource = url.resource();
  if (url.host.empty() || !is_request_line_safe(url.host_header()) || !is_request_line_safe(resource) ||
      resource.front() != '/' || resource.find('#') != std::string::npos)
    return "invalid URL";
  if (o.key && !is_valid_websocket_key(*o.key)) return "invalid option: key is not base64 of 16 bytes";
  return {};
}

}  // namespace

client_handshake::client_handshake(const ws_url& url, const client_options& options)
    : options_(options), scanner_(options.limits) {
  // Validate everything that goes on the wire before writing any of it.
  if (const std::string_view error = check_options(url, options_); !error.empty()) {
    fail(error);
    return;
  }
  const std::string resource = url.resource();
  const std::string host = url.host_header();
  if (options_.key) {
    key_ = *options_.key;
  } else {
    // §4.1 item 7: a nonce randomly selected for each connection.
    std::byte nonce[16];
    detail::random_bytes(nonce);
    key_ = detail::base64_encode_16(nonce);
  }
  expected_accept_ = websocket_accept_key(key_);

  std::string& r = request_;
  r.reserve(200 + resource.size() + host.size());
  r += "GET ";
  r += resource;
  r += " HTTP/1.1\r\n";
  append_field(r, "Host", host);
  append_field(r, "Upgrade", "websocket");
  append_field(r, "Connection", "Upgrade");
  append_field(r, "Sec-WebSocket-Key", key_);
  append_field(r, "Sec-WebSocket-Version", "13");
  if (!options_.protocols.empty()) {
    std::string list;
    for (const auto& p : options_.protocols) {
      if (!list.empty()) list += ", ";
      list += p;
    }
    append_field(r, "Sec-WebSocket-Protocol", list);
  }
  if (!options_.extensions.empty()) append_field(r, "Sec-WebSocket-Extensions", options_.extensions);
  for (const auto& h : options_.headers) append_field(r, h.name, h.value);
  r += "\r\n";
}

void client_handshake::fail(std::string_view reason) {
  state_ = handshake_state::failed;
  reason_ = reason;
}

std::size_t client_handshake::feed(std::span<const std::byte> input) {
  std::size_t total = 0;
  while (state_ == handshake_state::need_more && total < input.size()) {
    if (reading_body_) {
      // The body of a non-101 answer, bounded by max_body_bytes.
      const std::size_t take = std::min(body_left_, input.size() - total);
      body_.append(reinterpret_cast<const char*>(input.data() + total), take);
      body_left_ -= take;
      total += take;
      if (body_left_ == 0) state_ = handshake_state::failed;
      continue;
    }
    detail::head_scanner& scanner = detail::scanner(scanner_);
    const std::size_t n = scanner.feed(input.subspan(total));
    total += n;
    using st = detail::head_scanner::status;
    switch (scanner.state()) {
      case st::need_more:
        if (n == 0) return total;  // cannot happen: the scanner takes all it is given
        break;
      case st::complete:
        on_head();
        break;
      case st::too_large:
        fail("response head too large");
        break;
      case st::too_many_headers:
        fail("too many header fields in response");
        break;
      case st::bad_line_ending:
        fail("line ending other than CRLF in response head");
        break;
      case st::leading_blank_line:
        fail("empty line before the status line");
        break;
    }
  }
  return total;
}

void client_handshake::on_head() {
  response_ = http_response{};
  const detail::parse_error e = detail::head_access::parse_response(detail::scanner(scanner_).head(), response_);
  if (e.status != 0) {
    response_ = http_response{};
    return fail(std::string("malformed response: ") + std::string(e.reason));
  }
  const int status = response_.status();
  if (status >= 100 && status < 200 && status != 101) {
    // An interim response (100, 103 Early Hints): skip it and read the next head,
    // within the same byte budget (RFC 9110 §15.2).
    response_ = http_response{};
    detail::scanner(scanner_).restart();
    return;
  }
  if (status != 101) {
    // §4.1: anything but 101 is handled per HTTP, and the connection is not a
    // WebSocket. Keep the status, headers and (small) body for the caller.
    reason_ = "server answered " + std::to_string(status);
    if (!response_.reason_phrase().empty()) {
      reason_ += ' ';
      reason_ += response_.reason_phrase();
    }
    state_ = handshake_state::failed;
    if (response_.header_count("Content-Length") == 1 && response_.header_count("Transfer-Encoding") == 0) {
      const std::string_view v = *response_.header("Content-Length");
      std::size_t length = 0;
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), length);
      if (ec == std::errc{} && end == v.data() + v.size() && length <= options_.max_body_bytes && length > 0) {
        body_.reserve(length);
        body_left_ = length;
        reading_body_ = true;
        state_ = handshake_state::need_more;
      }
    }
    return;
  }
  validate();
}

void client_handshake::validate() {
  const http_response& r = response_;
  // §4.1, the client's checks of the server's handshake, in the RFC's order.
  if (r.version_major() != 1 || r.version_minor() < 1) return fail("101 response is not HTTP/1.1");
  if (!r.header_has_token("Upgrade", "websocket")) return fail("response lacks Upgrade: websocket");
  if (!r.header_has_token("Connection", "upgrade")) return fail("response lacks Connection: Upgrade");
  const std::size_t accepts = r.header_count("Sec-WebSocket-Accept");
  if (accepts == 0) return fail("response lacks Sec-WebSocket-Accept");
  if (accepts > 1) return fail("duplicate Sec-WebSocket-Accept");
  if (*r.header("Sec-WebSocket-Accept") != expected_accept_) return fail("Sec-WebSocket-Accept does not match the key");

  const std::size_t protocols = r.header_count("Sec-WebSocket-Protocol");
  if (protocols > 1) return fail("several Sec-WebSocket-Protocol headers in response");
  if (protocols == 1) {
    const std::string_view p = *r.header("Sec-WebSocket-Protocol");
    if (!is_token(p)) return fail("Sec-WebSocket-Protocol in response is not one token");
    if (std::find(options_.protocols.begin(), options_.protocols.end(), p) == options_.protocols.end())
      return fail("server chose a subprotocol that was not offered");
    protocol_ = p;
  }

  // §4.1 (and §9.1): only extensions we offered. Parameters are the negotiation's business.
  std::string extensions = r.header_list("Sec-WebSocket-Extensions");
  bool unoffered = false;
  const bool well_formed = for_each_extension_name(extensions, [&](std::string_view name) {
    bool offered = false;
    for_each_extension_name(options_.extensions, [&](std::string_view o) { offered = offered || iequals(o, name); });
    unoffered = unoffered || !offered;
  });
  if (!well_formed) return fail("malformed Sec-WebSocket-Extensions in response");
  if (unoffered) return fail("server accepted an extension that was not offered");
  extensions_ = std::move(extensions);
  state_ = handshake_state::done;
}

}  // namespace ws6455
