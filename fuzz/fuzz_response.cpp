// libFuzzer target: the client side of the opening handshake (RFC 6455 §4.1).
// The first input byte chooses limits and chunking; the rest is the server's answer,
// fed whole, byte by byte and in chunks. The runs must agree, and a success must
// satisfy every §4.1 rule.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "ws6455/handshake.hpp"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

template <class Chunk>
std::size_t feed_split(ws6455::client_handshake& hs, std::span<const std::byte> in, Chunk chunk) {
  std::size_t pos = 0;
  for (unsigned i = 0; pos < in.size() && hs.state() == ws6455::handshake_state::need_more; ++i) {
    const std::size_t want = std::min(in.size() - pos, chunk(i));
    const std::size_t n = hs.feed(in.subspan(pos, want));
    require(n <= want, "feed consumed more than it was given");
    pos += n;
    if (n < want) break;
  }
  return pos;
}

void same(const ws6455::client_handshake& a, const ws6455::client_handshake& b) {
  require(a.state() == b.state(), "state differs between splits");
  require(a.status() == b.status(), "status differs between splits");
  require(a.reason() == b.reason(), "reason differs between splits");
  require(a.protocol() == b.protocol(), "protocol differs between splits");
  require(a.extensions() == b.extensions(), "extensions differ between splits");
  require(a.body() == b.body(), "body differs between splits");
  require(a.response().headers().size() == b.response().headers().size(), "headers differ between splits");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ws6455;
  if (size < 1) return 0;
  const std::uint8_t ctl = data[0];
  const auto in = std::as_bytes(std::span(data + 1, size - 1));

  client_options o;
  o.key = "dGhlIHNhbXBsZSBub25jZQ==";  // accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
  o.protocols = {"chat", "superchat"};
  o.extensions = "permessage-deflate; client_max_window_bits, x-foo";
  if (ctl & 1) o.limits.max_header_bytes = 256;
  if (ctl & 2) o.limits.max_headers = 6;
  o.max_body_bytes = (ctl & 4) ? 8 : 4096;
  ws_url url;
  url.host = "server.example.com";

  client_handshake whole(url, o);
  require(whole.state() == handshake_state::need_more, "valid options refused");
  const std::size_t consumed = whole.feed(in);
  require(consumed <= in.size(), "consumed past the input");

  client_handshake bytewise(url, o);
  require(feed_split(bytewise, in, [](unsigned) { return std::size_t{1}; }) == consumed, "bytewise consumed differs");
  same(whole, bytewise);

  client_handshake chunked(url, o);
  std::uint32_t x = ctl * 2654435761u + 1;
  require(feed_split(chunked, in, [&](unsigned) { x = x * 1103515245u + 12345u; return std::size_t{1} + (x >> 16) % 64; }) ==
              consumed,
          "chunked consumed differs");
  same(whole, chunked);

  const std::string_view taken(reinterpret_cast<const char*>(data + 1), consumed);
  switch (whole.state()) {
    case handshake_state::need_more:
      require(consumed == in.size(), "need_more without taking everything");
      break;
    case handshake_state::failed:
      require(!whole.reason().empty(), "failure without reason");
      require(whole.body().size() <= o.max_body_bytes, "body over its bound");
      if (whole.status() != 0) require(whole.status() >= 200 || whole.status() == 101, "failed on an interim status");
      break;
    case handshake_state::done: {
      const http_response& r = whole.response();
      require(whole.status() == 101, "done without 101");
      require(taken.ends_with("\r\n\r\n"), "head does not end with CRLF CRLF");
      require(r.header_has_token("Upgrade", "websocket"), "done without Upgrade: websocket");
      require(r.header_has_token("Connection", "upgrade"), "done without Connection: upgrade");
      require(r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "done with a wrong accept");
      require(whole.protocol().empty() || whole.protocol() == "chat" || whole.protocol() == "superchat",
              "done with an unoffered protocol");
      require(whole.body().empty(), "a 101 with a body");
      break;
    }
    case handshake_state::request_ready:
      require(false, "client in request_ready");
  }
  return 0;
}
