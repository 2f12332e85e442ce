// libFuzzer target: the server side of the opening handshake (RFC 6455 §4.2).
// The first input byte chooses limits, chunking and accept options; the rest is
// fed to server_handshake whole, byte by byte and in chunks, and the three runs
// must agree. Accepted requests must produce a 101 that our own client accepts.
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

// Feeds `in` in chunks of `chunk(i)` bytes until the head ends; returns bytes consumed.
template <class Chunk>
std::size_t feed_split(ws6455::server_handshake& hs, std::span<const std::byte> in, Chunk chunk) {
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

void same(const ws6455::server_handshake& a, const ws6455::server_handshake& b) {
  require(a.state() == b.state(), "state differs between splits");
  require(a.status() == b.status(), "status differs between splits");
  require(a.response() == b.response(), "response differs between splits");
  require(a.reason() == b.reason(), "reason differs between splits");
  require(a.request().target() == b.request().target(), "target differs between splits");
  const auto ha = a.request().headers();
  const auto hb = b.request().headers();
  require(ha.size() == hb.size(), "header count differs between splits");
  for (std::size_t i = 0; i < ha.size(); ++i)
    require(ha[i].name == hb[i].name && ha[i].value == hb[i].value, "headers differ between splits");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ws6455;
  if (size < 1) return 0;
  const std::uint8_t ctl = data[0];
  const auto in = std::as_bytes(std::span(data + 1, size - 1));

  handshake_limits limits;
  if (ctl & 1) limits.max_header_bytes = 256;
  if (ctl & 2) limits.max_headers = 6;

  server_handshake whole(limits);
  const std::size_t consumed = whole.feed(in);
  require(consumed <= in.size(), "consumed past the input");

  server_handshake bytewise(limits);
  require(feed_split(bytewise, in, [](unsigned) { return std::size_t{1}; }) == consumed, "bytewise consumed differs");
  same(whole, bytewise);

  server_handshake chunked(limits);
  std::uint32_t x = ctl * 2654435761u + 1;
  require(feed_split(chunked, in, [&](unsigned) { x = x * 1103515245u + 12345u; return std::size_t{1} + (x >> 16) % 64; }) ==
              consumed,
          "chunked consumed differs");
  same(whole, chunked);

  const std::string_view taken(reinterpret_cast<const char*>(data + 1), consumed);
  switch (whole.state()) {
    case handshake_state::need_more:
      require(consumed == in.size(), "need_more without taking everything");
      require(whole.response().empty() && whole.status() == 0, "need_more with a response");
      require(consumed < limits.max_header_bytes, "need_more past the byte limit");
      break;
    case handshake_state::failed: {
      const int s = whole.status();
      require(s == 400 || s == 405 || s == 426 || s == 431 || s == 505, "unexpected failure status");
      require(whole.response().starts_with("HTTP/1.1 4") || whole.response().starts_with("HTTP/1.1 505 "),
              "failure response not an HTTP error");
      // RFC 9110 §9.3.2: never a body in a response to HEAD.
      if (std::string_view(reinterpret_cast<const char*>(data + 1), size - 1).starts_with("HEAD "))
        require(whole.response().ends_with("\r\n\r\n") &&
                    whole.response().find("Content-Length") == std::string_view::npos,
                "a response to HEAD with a body");
      require(!whole.reason().empty(), "failure without reason");
      break;
    }
    case handshake_state::request_ready: {
      require(taken.ends_with("\r\n\r\n"), "head does not end with CRLF CRLF");
      require(consumed <= limits.max_header_bytes, "head longer than the limit");
      const http_request& r = whole.request();
      require(r.method() == "GET", "accepted a non-GET");
      require(r.version_major() == 1 && r.version_minor() >= 1, "accepted a version other than HTTP/1.x, x >= 1");
      require(is_valid_websocket_key(r.key()), "accepted an invalid key");
      require(r.header_count("Host") == 1, "accepted without exactly one Host");
      require(r.headers().size() <= limits.max_headers, "more headers than the limit");
      for (const auto& h : r.headers()) {
        require(is_token(h.name), "header name is not a token");
        require(h.value.find_first_of("\r\n") == std::string::npos, "CR or LF in a header value");
      }
      (void)r.query_params();

      accept_options o;
      o.policy = static_cast<subprotocol_policy>((ctl >> 2) & 3);
      o.protocols = {"chat", "superchat"};
      o.require_protocol = (ctl & 0x10) != 0;
      o.extensions = (ctl & 0x20) ? "permessage-deflate" : "";
      server_handshake& hs = whole;
      const bool ok = hs.accept(o);
      if (!ok) {
        require(o.require_protocol && hs.status() == 400, "accept failed without require_protocol");
        break;
      }
      require(hs.state() == handshake_state::done && hs.status() == 101, "accept did not finish");
      require(hs.response().starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "101 status line");
      require(hs.response().ends_with("\r\n\r\n"), "101 head not terminated");

      // Differential: our client, offering what this request offered, accepts the 101.
      client_options co;
      co.key = std::string(r.key());
      for (const auto& p : r.offered_protocols()) {
        bool dup = false;
        for (const auto& q : co.protocols) dup = dup || q == p;
        if (dup) return 0;  // the client side refuses duplicate offers
        co.protocols.push_back(p);
      }
      co.extensions = o.extensions;
      ws_url url;
      url.host = "h";
      client_handshake client(url, co);
      require(client.state() == handshake_state::need_more, "client refused the offers");
      require(client.feed(hs.response()) == hs.response().size(), "client did not take the whole 101");
      require(client.state() == handshake_state::done, "client rejected our 101");
      require(client.protocol() == hs.protocol(), "client and server disagree on the subprotocol");
      break;
    }
    case handshake_state::done:
      require(false, "done before accept");
  }
  return 0;
}
