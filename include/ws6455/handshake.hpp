// The opening handshake, RFC 6455 §4, sans-I/O: bytes in, a parsed request or
// response and bytes to send out. Like the frame layer it does no I/O and keeps
// no clock: time out slow peers in the adapter.
//
// Server:  feed() the request bytes until state() is request_ready (or failed),
//          inspect request() (path, query, Origin, Cookie, Authorization ...),
//          then accept() or reject(); write response(). Only after accept() is the
//          connection a WebSocket: hand the bytes after the head to the frame layer.
// Client:  write request(), feed() the response bytes until done or failed.
//
// Both feed() calls take any split of the input (one byte at a time works) and
// never consume past the end of the head: input.subspan(consumed) is the start
// of the frame stream (early frames sent in the same packet, wsproto trailing_data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ws6455/http_head.hpp"
#include "ws6455/url.hpp"

namespace ws6455 {

namespace detail {
// Room for the library's incremental head scanner, an internal type: the handshake
// objects hold it in place, so a handshake costs no allocation for it, and the type
// stays out of this header. The library checks at build time that it fits.
class scanner_storage {
 public:
  static constexpr std::size_t size = 96;
  static constexpr std::size_t align = alignof(std::max_align_t);

  explicit scanner_storage(handshake_limits limits) noexcept;
  scanner_storage(const scanner_storage& other);
  scanner_storage(scanner_storage&& other) noexcept;
  scanner_storage& operator=(const scanner_storage& other);
  scanner_storage& operator=(scanner_storage&& other) noexcept;
  ~scanner_storage();

  void* get() noexcept { return bytes_; }
  const void* get() const noexcept { return bytes_; }

 private:
  alignas(align) unsigned char bytes_[size];
};
}  // namespace detail

// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), RFC 6455 §4.2.2 item 5.4.
std::string websocket_accept_key(std::string_view key);
// Is `key` a Sec-WebSocket-Key: canonical base64 of exactly 16 bytes (§4.1 item 7)?
bool is_valid_websocket_key(std::string_view key) noexcept;

enum class handshake_state : std::uint8_t {
  need_more,      // feed more bytes
  request_ready,  // server: a valid upgrade request; call accept() or reject()
  done,           // server: accepted (send response()); client: the server accepted
  failed,         // server: send response() and close; client: see reason() and status()
};

// How the server picks the subprotocol (§4.2.2 item 5.4, /subprotocol/).
enum class subprotocol_policy : std::uint8_t {
  none,           // never answer with one (the default); offers are ignored
  prefer_server,  // the first entry of `protocols` that the client offered
  prefer_client,  // the first client offer that is in `protocols`
  accept_any,     // echo the client's first offer, whatever it is
};

struct accept_options {
  subprotocol_policy policy = subprotocol_policy::none;
  std::vector<std::string> protocols;  // the allowlist, for prefer_server / prefer_client
  // Without a match the 101 carries no Sec-WebSocket-Protocol (the RFC's behaviour;
  // browsers then fail the connection if they offered any). With require_protocol
  // the server answers 400 instead.
  bool require_protocol = false;
  // The Sec-WebSocket-Extensions value to answer with (the permessage-deflate
  // negotiation's result; opaque here). Empty: no header.
  std::string extensions;
  // Added to the 101 as given (Set-Cookie, ...). Must be valid fields, and not
  // ones the handshake writes itself; otherwise the answer is 500.
  std::vector<http_header> headers;
};

class server_handshake {
 public:
  explicit server_handshake(handshake_limits limits = {});

  // Takes request bytes; returns how many it consumed. Stops at the end of the
  // head, so the rest of `input` belongs to the frame layer (after accept()).
  // Consumes nothing once the head is complete or the handshake failed.
  std::size_t feed(std::span<const std::byte> input);
  std::size_t feed(std::string_view input) {
    return feed(std::as_bytes(std::span<const char>(input.data(), input.size())));
  }

  handshake_state state() const noexcept { return state_; }
  // The request, complete once state() is request_ready (also after accept/reject).
  // After a failure it holds what was parsed, possibly nothing.
  const http_request& request() const noexcept { return request_; }

  // Answers 101 (state done) and returns true; or, when require_protocol finds no
  // match or an option is invalid, answers 400/500 (state failed) and returns false.
  // Only in state request_ready; otherwise returns false and changes nothing.
  bool accept(const accept_options& options = {});
  // Refuses the upgrade with `status` (300-599, else 500 is sent) and `body`
  // (text/plain unless `headers` names a Content-Type). Content-Length and
  // Connection: close are added. Only in state request_ready.
  void reject(int status, std::string_view body = {}, std::span<const http_header> headers = {});

  // What to write to the peer once state() is done or failed: the 101, or the
  // error response (with its body). Empty before.
  std::string_view response() const noexcept { return response_; }
  // 101 when accepted, the error status when failed, 0 before.
  int status() const noexcept { return status_; }
  // Why the handshake failed (also the body of the error responses we generate).
  std::string_view reason() const noexcept { return reason_; }
  // The subprotocol accept() chose; empty for none.
  std::string_view protocol() const noexcept { return protocol_; }

 private:
  void fail(int status, std::string_view reason);
  void validate();

  handshake_state state_ = handshake_state::need_more;
  int status_ = 0;
  std::string reason_;
  std::string response_;
  std::string protocol_;
  detail::scanner_storage scanner_;
  http_request request_;
};

struct client_options {
  std::vector<std::string> protocols;  // Sec-WebSocket-Protocol offers, in preference order
  std::string extensions;              // the Sec-WebSocket-Extensions offer (permessage-deflate's)
  std::vector<http_header> headers;    // Origin, Authorization, Cookie, User-Agent, ...
  // A fixed Sec-WebSocket-Key, for reproducible tests and tools. Without it: 16
  // fresh bytes from the CSPRNG (§4.1 item 7 requires a random nonce per handshake).
  std::optional<std::string> key;
  handshake_limits limits;
  // A non-101 answer's body is collected when its Content-Length is at most this
  // (so 401 and 404 pages can be shown); otherwise the caller reads it from the
  // transport, starting at the bytes feed() did not consume.
  std::size_t max_body_bytes = 4096;
};

class client_handshake {
 public:
  // Invalid options (a protocol that is not a token, a duplicate offer, a header
  // the handshake writes itself, a malformed key) leave the handshake failed with
  // reason() saying why, and request() empty.
  explicit client_handshake(const ws_url& url, const client_options& options = {});

  // The GET request head to write.
  std::string_view request() const noexcept { return request_; }
  std::string_view key() const noexcept { return key_; }

  // Takes response bytes; returns how many it consumed. After a 101 it stops at
  // the end of the head: the rest of `input` is the server's first frames.
  std::size_t feed(std::span<const std::byte> input);
  std::size_t feed(std::string_view input) {
    return feed(std::as_bytes(std::span<const char>(input.data(), input.size())));
  }

  handshake_state state() const noexcept { return state_; }
  // The final response's status code once its head is parsed, else 0.
  int status() const noexcept { return response_.status(); }
  const http_response& response() const noexcept { return response_; }
  // A non-101 response's body, when collected (see client_options::max_body_bytes).
  std::string_view body() const noexcept { return body_; }
  std::string_view reason() const noexcept { return reason_; }
  // The subprotocol the server chose (one we offered), empty for none.
  std::string_view protocol() const noexcept { return protocol_; }
  // The server's Sec-WebSocket-Extensions (lines joined), for the deflate
  // negotiation to check. Every extension named in it was offered.
  std::string_view extensions() const noexcept { return extensions_; }

 private:
  void fail(std::string_view reason);
  void on_head();
  void validate();

  client_options options_;
  handshake_state state_ = handshake_state::need_more;
  std::string request_;
  std::string key_;
  std::string expected_accept_;
  std::string reason_;
  std::string protocol_;
  std::string extensions_;
  std::string body_;
  std::size_t body_left_ = 0;
  bool reading_body_ = false;
  detail::scanner_storage scanner_;
  http_response response_;
};

}  // namespace ws6455
