// The server side of the opening handshake (RFC 6455 §4.2).
#include <algorithm>

#include "head_parser.hpp"
#include "head_scanner.hpp"
#include "ws6455/handshake.hpp"

namespace ws6455 {

namespace {

using detail::reason_phrase;

// Fields the engine writes itself: an application copy would duplicate or contradict them.
bool is_engine_field_101(std::string_view name) noexcept {
  for (std::string_view n : {"Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
                             "Sec-WebSocket-Extensions", "Sec-WebSocket-Version", "Content-Length",
                             "Transfer-Encoding"})
    if (iequals(name, n)) return true;
  return false;
}

bool is_engine_field_error(std::string_view name) noexcept {
  for (std::string_view n : {"Connection", "Content-Length", "Transfer-Encoding"})
    if (iequals(name, n)) return true;
  return false;
}

bool valid_app_fields(std::span<const http_header> headers, bool (*reserved)(std::string_view) noexcept) {
  return std::all_of(headers.begin(), headers.end(), [&](const http_header& h) {
    return is_token(h.name) && detail::is_valid_field_value(h.value) && !reserved(h.name);
  });
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

void append_status_line(std::string& out, int status) {
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
}

// An error response that ends the exchange: the connection is closed after it.
// To a HEAD request it has no body (RFC 9110 §9.3.2), and so no Content-Length or
// Content-Type either: Content-Length in an answer to HEAD must be the length a GET
// would have got (RFC 9110 §8.6), and a GET would not have got this response.
std::string error_response(int status, std::string_view body, std::span<const http_header> extra,
                           bool to_head = false) {
  std::string out;
  out.reserve(160 + body.size());
  append_status_line(out, status);
  if (status == 405) append_field(out, "Allow", "GET");  // RFC 9110 §15.5.6
  if (status == 426) {
    // RFC 6455 §4.2.2 item 4 and RFC 9110 §15.5.22 (426 MUST carry Upgrade).
    append_field(out, "Sec-WebSocket-Version", "13");
    append_field(out, "Upgrade", "websocket");
    append_field(out, "Connection", "Upgrade, close");
  } else {
    append_field(out, "Connection", "close");
  }
  const bool typed = std::any_of(extra.begin(), extra.end(),
                                 [](const http_header& h) { return iequals(h.name, "Content-Type"); });
  if (!typed && !to_head) append_field(out, "Content-Type", "text/plain; charset=utf-8");
  if (!to_head) append_field(out, "Content-Length", std::to_string(body.size()));
  for (const auto& h : extra) append_field(out, h.name, h.value);
  out += "\r\n";
  if (!to_head) out += body;
  return out;
}

}  // namespace

server_handshake::server_handshake(handshake_limits limits) : scanner_(limits) {}

void server_handshake::fail(int status, std::string_view reason) {
  state_ = handshake_state::failed;
  status_ = status;
  reason_ = reason;
  std::string body(reason);
  body += '\n';
  // The method, even when the request line was never parsed (431 on a long head).
  const bool to_head = request_.method().empty() ? detail::scanner(scanner_).head().starts_with("HEAD ")
                                                 : request_.method() == "HEAD";
  response_ = error_response(status, body, {}, to_head);
}

std::size_t server_handshake::feed(std::span<const std::byte> input) {
  if (state_ != handshake_state::need_more) return 0;
  detail::head_scanner& scanner = detail::scanner(scanner_);
  const std::size_t n = scanner.feed(input);
  using st = detail::head_scanner::status;
  switch (scanner.state()) {
    case st::need_more:
      break;
    case st::complete: {
      const detail::parse_error e = detail::head_access::parse_request(scanner.head(), request_);
      if (e.status != 0) {
        fail(e.status, e.reason);
      } else {
        validate();
      }
      break;
    }
    case st::too_large:
      fail(431, "request head too large");
      break;
    case st::too_many_headers:
      fail(431, "too many header fields");
      break;
    case st::bad_line_ending:
      fail(400, "line ending other than CRLF in request head");
      break;
    case st::leading_blank_line:
      fail(400, "empty line before the request line");
      break;
  }
  return n;
}

void server_handshake::validate() {
  const http_request& r = request_;
  // RFC 9110 §15.6.6: 505 for a major version we do not speak; the rest of the
  // head may not even mean what HTTP/1 says.
  if (r.version_major() != 1) return fail(505, "HTTP/1.1 required");
  // RFC 6455 §4.2.1 item 1. Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
  if (r.method() != "GET") return fail(405, "method must be GET");
  if (r.version_minor() < 1) return fail(400, "HTTP/1.1 or later required");
  // §4.2.1 item 2; RFC 9112 §3.2: exactly one Host, with a valid value, else 400.
  const std::size_t hosts = r.header_count("Host");
  if (hosts == 0) return fail(400, "missing Host header");
  if (hosts > 1) return fail(400, "duplicate Host header");
  if (r.header("Host")->empty()) return fail(400, "empty Host header");
  if (!detail::is_valid_host_field(*r.header("Host"))) return fail(400, "invalid Host header");
  // A body would be read as WebSocket frames (request smuggling): none allowed.
  if (r.header_count("Transfer-Encoding") != 0) return fail(400, "request body not allowed");
  for (const auto& h : r.headers())
    if (iequals(h.name, "Content-Length") && h.value != "0") return fail(400, "request body not allowed");
  // §4.2.1 items 3 and 4: token lists, case-insensitive.
  if (!r.header_has_token("Upgrade", "websocket")) return fail(400, "Upgrade header must contain websocket");
  if (!r.header_has_token("Connection", "upgrade")) return fail(400, "Connection header must contain Upgrade");
  // §4.2.1 item 6 and §4.2.2 item 4: other (or no) versions get 426 and the one we speak.
  const std::size_t versions = r.header_count("Sec-WebSocket-Version");
  if (versions > 1) return fail(400, "duplicate Sec-WebSocket-Version header");
  if (versions == 0 || *r.header("Sec-WebSocket-Version") != "13")
    return fail(426, "unsupported WebSocket version (13 required)");
  // §4.2.1 item 5.
  const std::size_t keys = r.header_count("Sec-WebSocket-Key");
  if (keys == 0) return fail(400, "missing Sec-WebSocket-Key header");
  if (keys > 1) return fail(400, "duplicate Sec-WebSocket-Key header");
  const std::string_view key = *r.header("Sec-WebSocket-Key");
  if (!is_valid_websocket_key(key)) return fail(400, "Sec-WebSocket-Key is not base64 of 16 bytes");
  // §4.1 item 10: the offers are tokens; they may span several header lines.
  std::vector<std::string> protocols;
  for (const auto& h : r.headers()) {
    if (!iequals(h.name, "Sec-WebSocket-Protocol")) continue;
    for (const std::string_view p : split_list(h.value)) {
      if (!is_token(p)) return fail(400, "Sec-WebSocket-Protocol offer is not a token");
      protocols.emplace_back(p);
    }
  }
  detail::head_access::set_websocket(request_, std::string(key), std::move(protocols),
                                     r.header_list("Sec-WebSocket-Extensions"));
  state_ = handshake_state::request_ready;
}

bool server_handshake::accept(const accept_options& options) {
  if (state_ != handshake_state::request_ready) return false;
  // What the application passes goes on the wire: no CR/LF injection, no field we write.
  if (!valid_app_fields(options.headers, is_engine_field_101) ||
      !detail::is_valid_field_value(options.extensions) ||
      !std::all_of(options.protocols.begin(), options.protocols.end(),
                   [](const std::string& p) { return is_token(p); })) {
    fail(500, "invalid accept options");
    return false;
  }
  const auto offered = request_.offered_protocols();
  const auto is_offered = [&](std::string_view p) { return std::find(offered.begin(), offered.end(), p) != offered.end(); };
  const auto is_allowed = [&](std::string_view p) {
    return std::find(options.protocols.begin(), options.protocols.end(), p) != options.protocols.end();
  };
  // Subprotocol names compare exactly (case-sensitive), as websockets and browsers do.
  protocol_.clear();
  switch (options.policy) {
    case subprotocol_policy::none:
      break;
    case subprotocol_policy::prefer_server:
      for (const auto& p : options.protocols)
        if (is_offered(p)) {
          protocol_ = p;
          break;
        }
      break;
    case subprotocol_policy::prefer_client:
      for (const auto& p : offered)
        if (is_allowed(p)) {
          protocol_ = p;
          break;
        }
      break;
    case subprotocol_policy::accept_any:
      if (!offered.empty()) protocol_ = offered.front();
      break;
  }
  if (protocol_.empty() && options.require_protocol) {
    fail(400, offered.empty() ? "a subprotocol is required" : "no supported subprotocol offered");
    return false;
  }

  // §4.2.2 item 5.
  std::string& out = response_;
  out.clear();
  out.reserve(160);
  append_status_line(out, 101);
  append_field(out, "Upgrade", "websocket");
  append_field(out, "Connection", "Upgrade");
  append_field(out, "Sec-WebSocket-Accept", websocket_accept_key(request_.key()));
  if (!protocol_.empty()) append_field(out, "Sec-WebSocket-Protocol", protocol_);  // exactly one token
  if (!options.extensions.empty()) append_field(out, "Sec-WebSocket-Extensions", options.extensions);
  for (const auto& h : options.headers) append_field(out, h.name, h.value);
  out += "\r\n";
  status_ = 101;
  state_ = handshake_state::done;
  return true;
}

void server_handshake::reject(int status, std::string_view body, std::span<const http_header> headers) {
  if (state_ != handshake_state::request_ready) return;
  if (status < 300 || status > 599 || !valid_app_fields(headers, is_engine_field_error)) {
    fail(500, "invalid reject arguments");
    return;
  }
  state_ = handshake_state::failed;
  status_ = status;
  reason_ = "rejected by the application";
  response_ = error_response(status, body, headers);
}

}  // namespace ws6455
