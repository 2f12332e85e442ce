// The opening handshake, RFC 6455 §4, both sides. Every head is fed whole, one byte
// at a time and in random chunks, and the three runs must agree (run_server / run_client).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "ws6455/connection.hpp"
#include "ws6455/handshake.hpp"

using namespace ws6455;
using namespace std::literals;

namespace {

constexpr std::string_view rfc_key = "dGhlIHNhbXBsZSBub25jZQ==";         // RFC 6455 §1.3
constexpr std::string_view rfc_accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";  // its accept value

// A request under construction: start line and ordered headers.
struct req {
  std::string line = "GET /chat HTTP/1.1";
  std::vector<std::pair<std::string, std::string>> fields = {
      {"Host", "server.example.com"},       {"Upgrade", "websocket"},
      {"Connection", "Upgrade"},            {"Sec-WebSocket-Key", std::string(rfc_key)},
      {"Sec-WebSocket-Version", "13"},
  };
  req& set(std::string name, std::string value) {
    for (auto& [n, v] : fields)
      if (n == name) {
        v = std::move(value);
        return *this;
      }
    return add(std::move(name), std::move(value));
  }
  req& add(std::string name, std::string value) {
    fields.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  req& drop(std::string_view name) {
    std::erase_if(fields, [&](const auto& f) { return f.first == name; });
    return *this;
  }
  req& start(std::string l) {
    line = std::move(l);
    return *this;
  }
  std::string str() const {
    std::string s = line + "\r\n";
    for (const auto& [n, v] : fields) s += n + ": " + v + "\r\n";
    return s + "\r\n";
  }
};

enum class split { whole, bytewise, random };

template <class Handshake>
std::size_t feed_with(Handshake& hs, std::string_view in, split mode, unsigned seed) {
  std::size_t pos = 0;
  std::mt19937 rng(seed);
  while (pos < in.size() && hs.state() == handshake_state::need_more) {
    std::size_t chunk = in.size() - pos;
    if (mode == split::bytewise) chunk = 1;
    if (mode == split::random) chunk = std::min<std::size_t>(chunk, 1 + rng() % 23);
    const std::size_t n = hs.feed(in.substr(pos, chunk));
    CHECK(n <= chunk);
    pos += n;
    if (n < chunk) break;  // the head ended (or failed) inside this chunk
  }
  return pos;
}

struct server_run {
  server_handshake hs;
  std::size_t consumed = 0;
};

// Feeds `in` whole, byte by byte and in random chunks; checks the outcomes agree;
// returns the whole-fed handshake.
server_run run_server(std::string_view in, handshake_limits limits = {}) {
  server_run whole{server_handshake(limits)};
  whole.consumed = feed_with(whole.hs, in, split::whole, 0);
  for (const split mode : {split::bytewise, split::random}) {
    for (unsigned seed = 1; seed <= (mode == split::random ? 5u : 1u); ++seed) {
      server_handshake other(limits);
      const std::size_t consumed = feed_with(other, in, mode, seed);
      CHECK(consumed == whole.consumed);
      CHECK(other.state() == whole.hs.state());
      CHECK(other.status() == whole.hs.status());
      CHECK(other.response() == whole.hs.response());
      CHECK(other.reason() == whole.hs.reason());
      CHECK(other.request().target() == whole.hs.request().target());
      CHECK(other.request().headers().size() == whole.hs.request().headers().size());
    }
  }
  return whole;
}

bool has_line(std::string_view head, std::string_view line) {
  return head.find("\r\n"s + std::string(line) + "\r\n") != std::string_view::npos;
}

// The status of a failed request, checked to carry a plain-text body and close.
int fail_status(const req& r, handshake_limits limits = {}) {
  auto run = run_server(r.str(), limits);
  CHECK(run.hs.state() == handshake_state::failed);
  CHECK(has_line(run.hs.response(), "Content-Length: " + std::to_string(run.hs.reason().size() + 1)));
  return run.hs.status();
}

client_options fixed_key(client_options o = {}) {
  o.key = std::string(rfc_key);
  return o;
}

struct client_run {
  client_handshake hs;
  std::size_t consumed = 0;
};

client_run run_client(std::string_view response, const client_options& options = fixed_key(),
                      std::string_view url = "ws://server.example.com/chat") {
  const ws_url u = *parse_ws_url(url);
  client_run whole{client_handshake(u, options)};
  whole.consumed = feed_with(whole.hs, response, split::whole, 0);
  for (const split mode : {split::bytewise, split::random}) {
    for (unsigned seed = 1; seed <= (mode == split::random ? 5u : 1u); ++seed) {
      client_handshake other(u, options);
      const std::size_t consumed = feed_with(other, response, mode, seed);
      CHECK(consumed == whole.consumed);
      CHECK(other.state() == whole.hs.state());
      CHECK(other.status() == whole.hs.status());
      CHECK(other.reason() == whole.hs.reason());
      CHECK(other.protocol() == whole.hs.protocol());
      CHECK(other.extensions() == whole.hs.extensions());
      CHECK(other.body() == whole.hs.body());
    }
  }
  return whole;
}

// A 101 for the RFC key, with extra lines.
std::string ok_101(std::string_view extra = "", std::string_view accept = rfc_accept) {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: "s +
         std::string(accept) + "\r\n" + std::string(extra) + "\r\n";
}

}  // namespace

// ---------------------------------------------------------------------------------
TEST_CASE("RFC 6455 §1.3 / §4.2.2: Sec-WebSocket-Accept") {
  CHECK(websocket_accept_key(rfc_key) == rfc_accept);
  CHECK(websocket_accept_key("x3JJHMbDL1EzLkh9GBhXDw==") == "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

TEST_CASE("RFC 6455 §4.1 item 7: Sec-WebSocket-Key is canonical base64 of 16 bytes") {
  CHECK(is_valid_websocket_key(rfc_key));
  CHECK(is_valid_websocket_key("AAAAAAAAAAAAAAAAAAAAAA=="));
  CHECK(is_valid_websocket_key("/+/+/+/+/+/+/+/+/+/+/w=="));
  CHECK_FALSE(is_valid_websocket_key(""));
  CHECK_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ="));    // 23 characters
  CHECK_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ"));     // unpadded
  CHECK_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ==="));  // 25
  CHECK_FALSE(is_valid_websocket_key("AAAAAAAAAAAAAAAAAAAA"));       // 15 bytes
  CHECK_FALSE(is_valid_websocket_key("AAAAAAAAAAAAAAAAAAAAAAA="));   // 17 bytes
  CHECK_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZR=="));   // non-zero padding bits
  CHECK_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZ*=="));   // not base64
  CHECK_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub2 jZQ=="));
}

// ---------------------------------------------------------------------------------
TEST_CASE("RFC 6455 §1.3/§4.2.1: the RFC's example request is accepted") {
  req r;
  r.set("Host", "server.example.com")
      .add("Origin", "http://example.com")
      .add("Sec-WebSocket-Protocol", "chat, superchat");
  auto run = run_server(r.str());
  REQUIRE(run.hs.state() == handshake_state::request_ready);
  CHECK(run.consumed == r.str().size());
  CHECK(run.hs.response().empty());
  CHECK(run.hs.status() == 0);

  accept_options o;
  o.policy = subprotocol_policy::prefer_server;
  o.protocols = {"chat"};
  REQUIRE(run.hs.accept(o));
  CHECK(run.hs.state() == handshake_state::done);
  CHECK(run.hs.status() == 101);
  CHECK(run.hs.protocol() == "chat");
  CHECK(run.hs.response() ==
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        "Sec-WebSocket-Protocol: chat\r\n"
        "\r\n");
  CHECK_FALSE(run.hs.accept(o));  // once only
  CHECK(run.hs.feed("more"sv) == 0);
}

TEST_CASE("RFC 6455 §4.2.1: the caller sees target, query and every header before accepting") {
  req r;
  r.start("GET /rooms/a%20b?token=s%3Dcret&name=J+Doe&flag&&x=1&x=2 HTTP/1.1")
      .add("Origin", "https://app.example")
      .add("Cookie", "session=abc; theme=dark")
      .add("Authorization", "Bearer xyz")
      .add("X-Empty", "")
      .add("x-dup", "one")
      .add("X-Dup", "two");
  auto run = run_server(r.str());
  REQUIRE(run.hs.state() == handshake_state::request_ready);
  const http_request& q = run.hs.request();
  CHECK(q.method() == "GET");
  CHECK(q.version_major() == 1);
  CHECK(q.version_minor() == 1);
  CHECK(q.target() == "/rooms/a%20b?token=s%3Dcret&name=J+Doe&flag&&x=1&x=2");
  CHECK(q.path() == "/rooms/a%20b");
  CHECK(percent_decode(q.path()) == "/rooms/a b");
  CHECK(q.query() == "token=s%3Dcret&name=J+Doe&flag&&x=1&x=2");
  const auto params = q.query_params();
  REQUIRE(params.size() == 5);
  CHECK(params[0] == std::pair<std::string, std::string>{"token", "s=cret"});
  CHECK(params[1] == std::pair<std::string, std::string>{"name", "J Doe"});
  CHECK(params[2] == std::pair<std::string, std::string>{"flag", ""});
  CHECK(params[3] == std::pair<std::string, std::string>{"x", "1"});
  CHECK(params[4] == std::pair<std::string, std::string>{"x", "2"});
  CHECK(q.query_param("x") == "1");
  CHECK(q.query_param("token") == "s=cret");
  CHECK_FALSE(q.query_param("nope").has_value());

  CHECK(q.headers().size() == r.fields.size());
  CHECK(q.headers()[0].name == "Host");
  CHECK(q.headers()[5].name == "Origin");
  CHECK(q.header("origin") == "https://app.example");
  CHECK(q.header("COOKIE") == "session=abc; theme=dark");
  CHECK(q.header("Authorization") == "Bearer xyz");
  CHECK(q.header("X-Empty") == "");
  CHECK_FALSE(q.header("X-Missing").has_value());
  CHECK(q.header("X-Dup") == "one");
  CHECK(q.header_count("x-dup") == 2);
  CHECK(q.header_list("X-Dup") == "one, two");
  CHECK(q.key() == rfc_key);
  CHECK(q.offered_protocols().empty());
  CHECK(q.offered_extensions().empty());
}

TEST_CASE("RFC 9112 §3.2: request-target forms") {
  SUBCASE("absolute-form is accepted") {
    auto run = run_server(req().start("GET ws://server.example.com/chat?x=1 HTTP/1.1").str());
    REQUIRE(run.hs.state() == handshake_state::request_ready);
    CHECK(run.hs.request().path() == "/chat");
    CHECK(run.hs.request().query() == "x=1");
    auto run2 = run_server(req().start("GET http://server.example.com HTTP/1.1").str());
    REQUIRE(run2.hs.state() == handshake_state::request_ready);
    CHECK(run2.hs.request().path() == "/");
  }
  SUBCASE("a bare path and query") {
    auto run = run_server(req().start("GET /?a=b HTTP/1.1").str());
    REQUIRE(run.hs.state() == handshake_state::request_ready);
    CHECK(run.hs.request().path() == "/");
    CHECK(run.hs.request().query() == "a=b");
  }
  SUBCASE("others fail with 400") {
    CHECK(fail_status(req().start("GET * HTTP/1.1")) == 400);
    CHECK(fail_status(req().start("GET chat HTTP/1.1")) == 400);
    CHECK(fail_status(req().start("GET ftp://x/ HTTP/1.1")) == 400);
    CHECK(fail_status(req().start("GET http:///x HTTP/1.1")) == 400);
    CHECK(fail_status(req().start("GET /chat#frag HTTP/1.1")) == 400);
    CHECK(fail_status(req().start("GET /ch\x7f" "at HTTP/1.1")) == 400);
    CHECK(fail_status(req().start("GET /caf\xc3\xa9 HTTP/1.1")) == 400);
  }
}

TEST_CASE("RFC 6455 §4.2.1 item 1: method GET, else 405 with Allow: GET") {
  for (const char* line : {"POST /chat HTTP/1.1", "PUT /chat HTTP/1.1", "get /chat HTTP/1.1", "CONNECT /chat HTTP/1.1"}) {
    CAPTURE(line);
    auto run = run_server(req().start(line).str());
    CHECK(run.hs.state() == handshake_state::failed);
    CHECK(run.hs.status() == 405);
    CHECK(run.hs.response().starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    CHECK(has_line(run.hs.response(), "Allow: GET"));
    CHECK(has_line(run.hs.response(), "Connection: close"));
    CHECK(run.hs.response().ends_with("\r\n\r\nmethod must be GET\n"));
  }
}

TEST_CASE("RFC 6455 §4.2.1 item 1: HTTP/1.1 or later") {
  CHECK(fail_status(req().start("GET /chat HTTP/1.0")) == 400);
  CHECK(run_server(req().start("GET /chat HTTP/1.2").str()).hs.state() == handshake_state::request_ready);
}

TEST_CASE("RFC 9110 §15.6.6: a major version other than 1 is 505") {
  for (const char* line : {"GET /chat HTTP/2.0", "GET /chat HTTP/3.0", "GET /chat HTTP/0.9", "GET /chat HTTP/9.1"}) {
    CAPTURE(line);
    CHECK(fail_status(req().start(line)) == 505);
    CHECK(run_server(req().start(line).str()).hs.response().starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"));
  }
  // Whatever the method: the version is judged first.
  CHECK(fail_status(req().start("POST /chat HTTP/2.0")) == 505);
}

TEST_CASE("RFC 6455 §4.2.1 item 2: Host present, exactly once") {
  CHECK(fail_status(req().drop("Host")) == 400);
  CHECK(fail_status(req().add("Host", "other.example")) == 400);
  CHECK(fail_status(req().set("Host", "")) == 400);
  CHECK(run_server(req().set("Host", "[::1]:8080").str()).hs.state() == handshake_state::request_ready);
}

TEST_CASE("RFC 9112 §3.2: a Host value that is not RFC 3986 host[:port] is 400") {
  for (const char* host : {"a b", "a b:80", "host:80:80", "host:http", "host:123456", "host:65536", "user@host",
                           "host/path", "ho#st", "%zz", "%4", ":80", "[::1", "[::1]x", "[::1]:x", "[]", "[1:2]",
                           "[::1%eth0]", "[12345::]", "[1:2:3:4:5:6:7:8:9]", "[1:::2]", "[1:2:3:4:5:6:7:1.2.3.4]",
                           "[::256.1.1.1]", "[v.x]", "[v1.]", "\"host\"", "h\xc3\xa9"}) {
    CAPTURE(host);
    auto run = run_server(req().set("Host", host).str());
    CHECK(run.hs.state() == handshake_state::failed);
    CHECK(run.hs.status() == 400);
    CHECK(run.hs.reason() == "invalid Host header");
  }
  for (const char* host : {"server.example.com", "server.example.com:8080", "localhost:", "127.0.0.1", "1.2.3.999",
                           "xn--bcher-kva.example", "a_b~c-d.e", "%41bc", "!$&'()*+,;=", "[::1]", "[::]:80",
                           "[2001:db8::1]:443", "[1:2:3:4:5:6:7:8]", "[1:2:3:4:5:6:7::]", "[::2:3:4:5:6:7:8]",
                           "[::ffff:192.0.2.1]", "[1:2:3:4:5::1.2.3.4]", "[1:2:3:4:5:6:1.2.3.4]", "[v1.fe80::a+en1]",
                           "h:65535", "h:00080"}) {
    CAPTURE(host);
    CHECK(run_server(req().set("Host", host).str()).hs.state() == handshake_state::request_ready);
  }
}

TEST_CASE("RFC 9110 §9.3.2: no body in a response to HEAD (405 and any other failure)") {
  auto run = run_server(req().start("HEAD /chat HTTP/1.1").str());
  CHECK(run.hs.state() == handshake_state::failed);
  CHECK(run.hs.status() == 405);
  CHECK(run.hs.response() == "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nConnection: close\r\n\r\n");
  CHECK(run.hs.reason() == "method must be GET");
  // RFC 9110 §8.6: no Content-Length that a GET would not have got, so none at all.
  CHECK(run.hs.response().find("Content-") == std::string_view::npos);
  // Failures found before the method is checked answer HEAD without a body too.
  const std::string long_head = req().start("HEAD /chat HTTP/1.1").add("X-Pad", std::string(9000, 'a')).str();
  for (const std::string& in : {req().start("HEAD /chat HTTP/1.1").add("Bad Name", "x").str(), long_head,
                                req().start("HEAD /chat HTTP/2.0").str()}) {
    auto r = run_server(in);
    CHECK(r.hs.state() == handshake_state::failed);
    CHECK(r.hs.status() != 405);
    CHECK(r.hs.response().ends_with("\r\nConnection: close\r\n\r\n"));
  }
  // Other methods keep the explanatory body.
  CHECK(run_server(req().start("POST /chat HTTP/1.1").str()).hs.response().ends_with("\r\n\r\nmethod must be GET\n"));
}

TEST_CASE("RFC 6455 §4.2.1 item 3: Upgrade contains the token websocket") {
  CHECK(fail_status(req().drop("Upgrade")) == 400);
  CHECK(fail_status(req().set("Upgrade", "h2c")) == 400);
  CHECK(fail_status(req().set("Upgrade", "websocketx")) == 400);    // a token, not a substring
  CHECK(fail_status(req().set("Upgrade", "not-websocket")) == 400);
  CHECK(fail_status(req().set("Upgrade", "\"websocket\"")) == 400);
  for (const char* v : {"websocket", "WebSocket", "WEBSOCKET", "h2c, websocket", "h2c,websocket", " ,websocket\t,"}) {
    CAPTURE(v);
    CHECK(run_server(req().set("Upgrade", v).str()).hs.state() == handshake_state::request_ready);
  }
  // Over several lines.
  CHECK(run_server(req().set("Upgrade", "h2c").add("Upgrade", "websocket").str()).hs.state() ==
        handshake_state::request_ready);
}

TEST_CASE("RFC 6455 §4.2.1 item 4: Connection contains the token upgrade") {
  CHECK(fail_status(req().drop("Connection")) == 400);
  CHECK(fail_status(req().set("Connection", "keep-alive")) == 400);
  CHECK(fail_status(req().set("Connection", "upgraded")) == 400);
  CHECK(fail_status(req().set("Connection", "keep-alive upgrade")) == 400);
  for (const char* v : {"Upgrade", "upgrade", "keep-alive, Upgrade", "keep-alive ,\tUPGRADE", "Upgrade, close"}) {
    CAPTURE(v);
    CHECK(run_server(req().set("Connection", v).str()).hs.state() == handshake_state::request_ready);
  }
  CHECK(run_server(req().set("Connection", "keep-alive").add("Connection", "Upgrade").str()).hs.state() ==
        handshake_state::request_ready);
}

TEST_CASE("RFC 6455 §4.2.1 item 5: Sec-WebSocket-Key, once, base64 of 16 bytes") {
  CHECK(fail_status(req().drop("Sec-WebSocket-Key")) == 400);
  CHECK(fail_status(req().add("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")) == 400);
  CHECK(fail_status(req().add("Sec-WebSocket-Key", std::string(rfc_key))) == 400);  // even when equal
  CHECK(fail_status(req().set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA")) == 400);
  CHECK(fail_status(req().set("Sec-WebSocket-Key", "not base64 at all!!!!!!!")) == 400);
  CHECK(fail_status(req().set("Sec-WebSocket-Key", std::string(rfc_key) + ", " + std::string(rfc_key))) == 400);
  auto run = run_server(req().drop("Sec-WebSocket-Key").str());
  CHECK(run.hs.reason() == "missing Sec-WebSocket-Key header");
}

TEST_CASE("RFC 6455 §4.2.1 item 6 / §4.2.2 item 4: version 13, else 426 with Sec-WebSocket-Version: 13") {
  for (const char* v : {"8", "12", "14", "13, 8", "", "013"}) {
    CAPTURE(v);
    auto run = run_server(req().set("Sec-WebSocket-Version", v).str());
    CHECK(run.hs.state() == handshake_state::failed);
    CHECK(run.hs.status() == 426);
    CHECK(run.hs.response().starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    CHECK(has_line(run.hs.response(), "Sec-WebSocket-Version: 13"));
    CHECK(has_line(run.hs.response(), "Upgrade: websocket"));  // RFC 9110 §15.5.22
  }
  CHECK(fail_status(req().drop("Sec-WebSocket-Version")) == 426);
  // A duplicate is malformed, not another version.
  CHECK(fail_status(req().add("Sec-WebSocket-Version", "13")) == 400);
  CHECK(fail_status(req().add("Sec-WebSocket-Version", "8")) == 400);
}

TEST_CASE("RFC 6455 §4.1 item 10 / §9.1: offered subprotocols and extensions") {
  req r;
  r.add("Sec-WebSocket-Protocol", "chat, superchat")
      .add("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
      .add("Sec-WebSocket-Protocol", " v2.json ")
      .add("Sec-WebSocket-Extensions", "x-webkit-deflate-frame, foo; a=\"1,2\"");
  auto run = run_server(r.str());
  REQUIRE(run.hs.state() == handshake_state::request_ready);
  const auto offered = run.hs.request().offered_protocols();
  REQUIRE(offered.size() == 3);
  CHECK(offered[0] == "chat");
  CHECK(offered[1] == "superchat");
  CHECK(offered[2] == "v2.json");
  CHECK(run.hs.request().offered_extensions() ==
        "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame, foo; a=\"1,2\"");
  CHECK(fail_status(req().add("Sec-WebSocket-Protocol", "chat, sup er")) == 400);
  CHECK(fail_status(req().add("Sec-WebSocket-Protocol", "chat, \"q\"")) == 400);
}

TEST_CASE("RFC 6455 §4.2.2 item 5.4: subprotocol policy") {
  req r;
  r.add("Sec-WebSocket-Protocol", "a, b, c");
  const std::string in = r.str();
  auto chosen = [&](subprotocol_policy p, std::vector<std::string> list, bool require = false) {
    server_handshake hs;
    hs.feed(in);
    REQUIRE(hs.state() == handshake_state::request_ready);
    accept_options o;
    o.policy = p;
    o.protocols = std::move(list);
    o.require_protocol = require;
    const bool ok = hs.accept(o);
    CHECK(ok == (hs.state() == handshake_state::done));
    if (!ok) return "FAILED "s + std::to_string(hs.status());
    const bool has_header = hs.response().find("Sec-WebSocket-Protocol") != std::string_view::npos;
    CHECK(has_header == !hs.protocol().empty());
    if (has_header) CHECK(has_line(hs.response(), "Sec-WebSocket-Protocol: " + std::string(hs.protocol())));
    return std::string(hs.protocol());
  };
  CHECK(chosen(subprotocol_policy::none, {"a"}) == "");
  CHECK(chosen(subprotocol_policy::prefer_server, {"c", "b"}) == "c");
  CHECK(chosen(subprotocol_policy::prefer_client, {"c", "b"}) == "b");
  CHECK(chosen(subprotocol_policy::prefer_server, {"x", "B", "b"}) == "b");  // case-sensitive
  CHECK(chosen(subprotocol_policy::accept_any, {}) == "a");
  CHECK(chosen(subprotocol_policy::prefer_server, {"x", "y"}) == "");        // RFC: no header
  CHECK(chosen(subprotocol_policy::prefer_client, {"x"}) == "");
  CHECK(chosen(subprotocol_policy::prefer_server, {"x", "y"}, true) == "FAILED 400");
  CHECK(chosen(subprotocol_policy::prefer_server, {"b"}, true) == "b");
  CHECK(chosen(subprotocol_policy::none, {}, true) == "FAILED 400");

  // Nothing offered.
  server_handshake hs;
  hs.feed(req().str());
  accept_options any;
  any.policy = subprotocol_policy::accept_any;
  CHECK(hs.accept(any));
  CHECK(hs.protocol().empty());
  server_handshake hs2;
  hs2.feed(req().str());
  any.require_protocol = true;
  CHECK_FALSE(hs2.accept(any));
  CHECK(hs2.status() == 400);
  CHECK(hs2.reason() == "a subprotocol is required");
  CHECK(hs2.response().starts_with("HTTP/1.1 400 Bad Request\r\n"));
}

TEST_CASE("RFC 6455 §4.2.2 item 5: the 101 carries extensions and extra headers") {
  server_handshake hs;
  hs.feed(req().add("Sec-WebSocket-Extensions", "permessage-deflate").str());
  accept_options o;
  o.extensions = "permessage-deflate; server_no_context_takeover";
  o.headers = {{"Set-Cookie", "id=42; HttpOnly"}, {"X-Server", "ws6455"}};
  REQUIRE(hs.accept(o));
  CHECK(hs.response() ==
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        "Set-Cookie: id=42; HttpOnly\r\n"
        "X-Server: ws6455\r\n"
        "\r\n");
}

TEST_CASE("accept() refuses application input that would corrupt the response") {
  auto try_accept = [](accept_options o) {
    server_handshake hs;
    hs.feed(req().str());
    REQUIRE(hs.state() == handshake_state::request_ready);
    const bool ok = hs.accept(o);
    return ok ? 101 : hs.status();
  };
  accept_options o;
  o.headers = {{"Set-Cookie", "a=1\r\nX-Injected: 1"}};
  CHECK(try_accept(o) == 500);
  o.headers = {{"Bad Name", "1"}};
  CHECK(try_accept(o) == 500);
  o.headers = {{"Sec-WebSocket-Accept", "forged"}};
  CHECK(try_accept(o) == 500);
  o.headers = {{"connection", "close"}};
  CHECK(try_accept(o) == 500);
  o.headers = {};
  o.extensions = "permessage-deflate\r\n";
  CHECK(try_accept(o) == 500);
  o.extensions = "";
  o.policy = subprotocol_policy::prefer_server;
  o.protocols = {"not a token"};
  CHECK(try_accept(o) == 500);
  // Before the request is complete: nothing happens.
  server_handshake early;
  CHECK_FALSE(early.accept({}));
  early.reject(401);
  CHECK(early.state() == handshake_state::need_more);
  CHECK(early.response().empty());
}

TEST_CASE("reject(): authentication and origin failures with any status and body") {
  SUBCASE("401 with WWW-Authenticate") {
    server_handshake hs;
    hs.feed(req().str());
    REQUIRE(hs.state() == handshake_state::request_ready);
    CHECK_FALSE(hs.request().header("Authorization").has_value());
    const http_header challenge[] = {{"WWW-Authenticate", "Bearer realm=\"chat\""}};
    hs.reject(401, "token required", challenge);
    CHECK(hs.state() == handshake_state::failed);
    CHECK(hs.status() == 401);
    CHECK(hs.response() ==
          "HTTP/1.1 401 Unauthorized\r\n"
          "Connection: close\r\n"
          "Content-Type: text/plain; charset=utf-8\r\n"
          "Content-Length: 14\r\n"
          "WWW-Authenticate: Bearer realm=\"chat\"\r\n"
          "\r\n"
          "token required");
    CHECK_FALSE(hs.accept({}));  // too late
  }
  SUBCASE("403 for a bad Origin, own Content-Type, empty body") {
    server_handshake hs;
    hs.feed(req().add("Origin", "https://evil.example").str());
    REQUIRE(hs.request().header("Origin") == "https://evil.example");
    const http_header json[] = {{"Content-Type", "application/json"}};
    hs.reject(403, "{}", json);
    CHECK(hs.response().starts_with("HTTP/1.1 403 Forbidden\r\n"));
    CHECK(has_line(hs.response(), "Content-Type: application/json"));
    CHECK(hs.response().find("text/plain") == std::string_view::npos);
    server_handshake hs2;
    hs2.feed(req().str());
    hs2.reject(404);
    CHECK(hs2.response() ==
          "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
          "Content-Length: 0\r\n\r\n");
  }
  SUBCASE("a redirect and an unknown status") {
    server_handshake hs;
    hs.feed(req().str());
    const http_header loc[] = {{"Location", "wss://elsewhere.example/chat"}};
    hs.reject(307, {}, loc);
    CHECK(hs.response().starts_with("HTTP/1.1 307 Temporary Redirect\r\n"));
    server_handshake hs2;
    hs2.feed(req().str());
    hs2.reject(499, "x");
    CHECK(hs2.response().starts_with("HTTP/1.1 499 Error\r\n"));
  }
  SUBCASE("invalid arguments give 500") {
    for (const int status : {101, 200, 600, -1}) {
      server_handshake hs;
      hs.feed(req().str());
      hs.reject(status, "x");
      CHECK(hs.status() == 500);
      CHECK(hs.response().starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
    }
    server_handshake hs;
    hs.feed(req().str());
    const http_header bad[] = {{"Content-Length", "5"}};
    hs.reject(401, "x", bad);
    CHECK(hs.status() == 500);
  }
}

TEST_CASE("RFC 6455 §4.2.1: a request body is refused (it would be read as frames)") {
  CHECK(fail_status(req().add("Content-Length", "5")) == 400);
  CHECK(fail_status(req().add("Transfer-Encoding", "chunked")) == 400);
  CHECK(fail_status(req().add("Content-Length", "0").add("Content-Length", "1")) == 400);
  CHECK(run_server(req().add("Content-Length", "0").str()).hs.state() == handshake_state::request_ready);
}

// ---------------------------------------------------------------------------------
TEST_CASE("RFC 6455 §4.2.1: bytes after the head belong to the frame layer") {
  const std::string head = req().str();
  const std::string frame = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"s;  // RFC 6455 §5.7 masked "Hello"
  const std::string in = head + frame;
  auto run = run_server(in);
  REQUIRE(run.hs.state() == handshake_state::request_ready);
  CHECK(run.consumed == head.size());
  CHECK(in.substr(run.consumed) == frame);

  // Fed in one call, the leftover is exactly input.subspan(consumed).
  server_handshake hs;
  const std::size_t n = hs.feed(in);
  CHECK(n == head.size());
  CHECK(hs.feed(std::string_view(in).substr(n)) == 0);  // nothing more is taken
  CHECK(hs.accept({}));
  CHECK(hs.feed(std::string_view(in).substr(n)) == 0);
}

TEST_CASE("RFC 9112 §2.2: line endings are CRLF only") {
  SUBCASE("a bare LF fails at once") {
    auto run = run_server("GET /chat HTTP/1.1\nHost: x\n\n");
    CHECK(run.hs.state() == handshake_state::failed);
    CHECK(run.hs.status() == 400);
    CHECK(run.consumed == 18);  // the LF itself is not taken
    std::string in = req().str();
    in.replace(in.find("\r\nUpgrade"), 2, "\n");
    CHECK(run_server(in).hs.status() == 400);
  }
  SUBCASE("a bare CR fails") {
    std::string in = req().str();
    in.replace(in.find("\r\nUpgrade"), 2, "\r");
    auto run = run_server(in);
    CHECK(run.hs.status() == 400);
    CHECK(run.hs.reason() == "line ending other than CRLF in request head");
    CHECK(run_server("GET /chat HTTP/1.1\r\r\n").hs.status() == 400);
  }
  SUBCASE("an empty line before the request line fails") {
    CHECK(run_server("\r\n" + req().str()).hs.status() == 400);
  }
}

TEST_CASE("RFC 9112 §3, §5: request line and field syntax") {
  CHECK(fail_status(req().start("GET  /chat HTTP/1.1")) == 400);   // two spaces
  CHECK(fail_status(req().start("GET /chat  HTTP/1.1")) == 400);
  CHECK(fail_status(req().start("GET /chat HTTP/1.1 ")) == 400);
  CHECK(fail_status(req().start("GET\t/chat HTTP/1.1")) == 400);
  CHECK(fail_status(req().start("GET /chat")) == 400);
  CHECK(fail_status(req().start("GET")) == 400);
  CHECK(fail_status(req().start("G(T /chat HTTP/1.1")) == 400);   // method not a token
  CHECK(fail_status(req().start(" GET /chat HTTP/1.1")) == 400);
  CHECK(fail_status(req().start("GET /chat http/1.1")) == 400);
  CHECK(fail_status(req().start("GET /chat HTTP/1.10")) == 400);
  CHECK(fail_status(req().start("GET /chat HTTP/11")) == 400);
  CHECK(fail_status(req().start("GET /chat HTTP/1.x")) == 400);

  CHECK(fail_status(req().add(" X-Folded", "1")) == 400);                  // obs-fold
  CHECK(fail_status(req().add("\tX-Folded", "1")) == 400);
  CHECK(fail_status(req().add("X-Space ", "1")) == 400);                   // space before colon
  CHECK(fail_status(req().add("", "value")) == 400);                       // empty name
  CHECK(fail_status(req().add("X(bad)", "1")) == 400);                     // name not a token
  CHECK(fail_status(req().add("X-Ctl", "a\x01z")) == 400);
  CHECK(fail_status(req().add("X-Ctl", "a"s + '\0' + "z")) == 400);
  CHECK(fail_status(req().add("X-Del", "a\x7fz")) == 400);
  std::string no_colon = req().str();
  no_colon.insert(no_colon.size() - 2, "NoColonHere\r\n");
  CHECK(run_server(no_colon).hs.status() == 400);
  auto folded = run_server(req().add(" X-Folded", "1").str());
  CHECK(folded.hs.reason() == "obsolete line folding in header");
  CHECK(run_server(req().add("X-Space ", "1").str()).hs.reason() == "whitespace before colon in header");
  CHECK(run_server(req().add("X-Tab\t", "1").str()).hs.reason() == "whitespace before colon in header");
  CHECK(run_server(req().add("", "v").str()).hs.reason() == "empty header name");

  // Allowed: obs-text and tabs inside values, whitespace around values, colons in values.
  auto run = run_server(req().add("X-Text", "caf\xc3\xa9\t ok").add("X-Pad", " \t padded \t").add("X-Colon", "a:b").str());
  REQUIRE(run.hs.state() == handshake_state::request_ready);
  CHECK(run.hs.request().header("X-Text") == "caf\xc3\xa9\t ok");
  CHECK(run.hs.request().header("X-Pad") == "padded");
  CHECK(run.hs.request().header("X-Colon") == "a:b");
}

TEST_CASE("Limits: 431 past max_header_bytes or max_headers") {
  SUBCASE("bytes, default 8 KiB") {
    const std::string base = req().str();
    // Pad with one header so the head is exactly the limit, then one byte more.
    const std::size_t overhead = base.size() + std::string("X-Pad: \r\n").size();
    const std::string exact = req().add("X-Pad", std::string(8192 - overhead, 'a')).str();
    REQUIRE(exact.size() == 8192);
    CHECK(run_server(exact).hs.state() == handshake_state::request_ready);
    const std::string over = req().add("X-Pad", std::string(8193 - overhead, 'a')).str();
    auto run = run_server(over);
    CHECK(run.hs.state() == handshake_state::failed);
    CHECK(run.hs.status() == 431);
    CHECK(run.hs.response().starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    CHECK(run.consumed == 8192);
  }
  SUBCASE("bytes: a head that never ends (slowloris) stops at the bound") {
    server_handshake hs;
    std::size_t total = 0;
    for (int i = 0; i < 20000 && hs.state() == handshake_state::need_more; ++i) total += hs.feed("a"sv);
    CHECK(hs.status() == 431);
    CHECK(total == 8192);
  }
  SUBCASE("custom byte limit") {
    handshake_limits small;
    small.max_header_bytes = 100;
    CHECK(run_server(req().str(), small).hs.status() == 431);
  }
  SUBCASE("header count") {
    handshake_limits lim;
    lim.max_headers = 8;
    req r;  // 5 headers
    r.add("A", "1").add("B", "2").add("C", "3");
    CHECK(run_server(r.str(), lim).hs.state() == handshake_state::request_ready);
    r.add("D", "4");
    auto run = run_server(r.str(), lim);
    CHECK(run.hs.status() == 431);
    CHECK(run.hs.reason() == "too many header fields");
    req many;
    for (int i = 0; i < 95; ++i) many.add("X-" + std::to_string(i), "v");
    CHECK(run_server(many.str()).hs.state() == handshake_state::request_ready);  // 100
    many.add("X-Last", "v");
    CHECK(run_server(many.str()).hs.status() == 431);  // 101
  }
}

TEST_CASE("A failed handshake takes nothing more") {
  server_handshake hs;
  hs.feed(req().start("POST / HTTP/1.1").str());
  CHECK(hs.state() == handshake_state::failed);
  CHECK(hs.feed(req().str()) == 0);
  CHECK(hs.status() == 405);
}

// ---------------------------------------------------------------------------------
TEST_CASE("RFC 6455 §3: ws and wss URLs") {
  SUBCASE("defaults") {
    auto u = parse_ws_url("ws://example.com");
    REQUIRE(u);
    CHECK_FALSE(u->secure);
    CHECK(u->host == "example.com");
    CHECK(u->port == 80);
    CHECK(u->path == "/");
    CHECK(u->query.empty());
    CHECK(u->resource() == "/");
    CHECK(u->host_header() == "example.com");
    auto s = parse_ws_url("WSS://Example.COM/a/b?x=1&y");
    REQUIRE(s);
    CHECK(s->secure);
    CHECK(s->port == 443);
    CHECK(s->host == "Example.COM");
    CHECK(s->path == "/a/b");
    CHECK(s->query == "x=1&y");
    CHECK(s->resource() == "/a/b?x=1&y");
  }
  SUBCASE("ports") {
    CHECK(parse_ws_url("ws://h:8080/")->port == 8080);
    CHECK(parse_ws_url("ws://h:8080/")->host_header() == "h:8080");
    CHECK(parse_ws_url("wss://h:443")->host_header() == "h");
    CHECK(parse_ws_url("wss://h:80")->host_header() == "h:80");
    CHECK(parse_ws_url("ws://h:/")->port == 80);
    CHECK(parse_ws_url("ws://h:65535")->port == 65535);
    CHECK(parse_ws_url("ws://h?q=1")->resource() == "/?q=1");
  }
  SUBCASE("IPv6 literals") {
    auto u = parse_ws_url("ws://[::1]:9000/chat?room=1");
    REQUIRE(u);
    CHECK(u->host == "::1");
    CHECK(u->is_ipv6());
    CHECK(u->port == 9000);
    CHECK(u->host_header() == "[::1]:9000");
    CHECK(u->resource() == "/chat?room=1");
    auto v = parse_ws_url("wss://[2001:db8::7]");
    REQUIRE(v);
    CHECK(v->host == "2001:db8::7");
    CHECK(v->host_header() == "[2001:db8::7]");
    CHECK(parse_ws_url("ws://[::ffff:192.0.2.1]/")->host == "::ffff:192.0.2.1");
  }
  SUBCASE("errors") {
    for (const char* bad : {"http://h/", "wsx://h", "h/path", "ws://", "ws:///x", "ws://h/#frag", "ws://h#f",
                            "ws://u:p@h/", "ws://h:0", "ws://h:65536", "ws://h:8a", "ws://h:-1", "ws://h:+80",
                            "ws://[::1", "ws://[::1]x", "ws://[]/", "ws://[fe80::1%25eth0]/", "ws://[zz::1]/",
                            "ws://h/a b", "ws://h/caf\xc3\xa9", "ws://h\r\n/", "ws://::1/", "ws://h:1:2/"}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_ws_url(bad).has_value());
    }
    CHECK(parse_ws_url("ws://h/#x").error() == "fragment identifiers are not allowed (RFC 6455 §3)");
  }
}

TEST_CASE("Query and list helpers") {
  CHECK(percent_decode("a%20b%2fc%zz%4") == "a b/c%zz%4");
  CHECK(percent_decode("a+b") == "a+b");
  CHECK(percent_decode("a+b", true) == "a b");
  CHECK(percent_decode("%e2%82%AC") == "\xe2\x82\xac");
  CHECK(parse_query("").empty());
  CHECK(parse_query("&&").empty());
  CHECK(parse_query("a=b=c")[0].second == "b=c");
  CHECK(parse_query("=v")[0].first == "");
  const auto l = split_list(" a , ,b;q=\"x,y\" ,\t\"c\\\"d,e\" ,");
  REQUIRE(l.size() == 3);
  CHECK(l[0] == "a");
  CHECK(l[1] == "b;q=\"x,y\"");
  CHECK(l[2] == "\"c\\\"d,e\"");
  CHECK(split_list("x\\").size() == 1);
  CHECK(iequals("WebSocket", "websocket"));
  CHECK_FALSE(iequals("websocket", "websocke"));
  CHECK(is_token("permessage-deflate"));
  CHECK_FALSE(is_token(""));
  CHECK_FALSE(is_token("a b"));
  CHECK_FALSE(is_token("a,b"));
}

// ---------------------------------------------------------------------------------
TEST_CASE("RFC 6455 §4.1: the client's request") {
  client_options o = fixed_key();
  o.protocols = {"chat", "superchat"};
  o.extensions = "permessage-deflate; client_max_window_bits";
  o.headers = {{"Origin", "http://example.com"}, {"Authorization", "Bearer t"}};
  client_handshake hs(*parse_ws_url("ws://server.example.com/chat?x=1"), o);
  REQUIRE(hs.state() == handshake_state::need_more);
  CHECK(hs.key() == rfc_key);
  CHECK(hs.request() ==
        "GET /chat?x=1 HTTP/1.1\r\n"
        "Host: server.example.com\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        "Origin: http://example.com\r\n"
        "Authorization: Bearer t\r\n"
        "\r\n");
  client_handshake v6(*parse_ws_url("wss://[::1]:8443/"), fixed_key());
  CHECK(v6.request().starts_with("GET / HTTP/1.1\r\nHost: [::1]:8443\r\n"));
}

TEST_CASE("RFC 6455 §4.1 item 7: a fresh random key per handshake") {
  const ws_url u = *parse_ws_url("ws://h/");
  client_handshake a(u), b(u);
  CHECK(is_valid_websocket_key(a.key()));
  CHECK(is_valid_websocket_key(b.key()));
  CHECK(a.key() != b.key());
  CHECK(a.request().find("Sec-WebSocket-Key: " + std::string(a.key()) + "\r\n") != std::string_view::npos);
}

// A Sec-WebSocket-Key and the masking keys of three client frames, drawn in this process.
std::string draw_keys() {
  std::string keys(client_handshake(*parse_ws_url("ws://h/")).key());
  connection c(role::client);
  for (int i = 0; i < 3; ++i) {
    if (c.send_text("x") != send_result::ok) return "send failed";
    const auto out = c.pending_output();  // 81 81 K K K K 'x' ^ K: the key is bytes 2..5
    if (out.size() != 7) return "unexpected frame";
    for (std::size_t j = 2; j < 6; ++j) keys += ' ' + std::to_string(static_cast<int>(out[j]));
    c.consume_output(out.size());
  }
  return keys;
}

TEST_CASE("RFC 6455 §10.3: after fork(), parent and child draw different keys") {
  // Use the pool before forking, so that a pool the child inherited would be full.
  const std::string before = draw_keys();
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // the child: no doctest here, just the keys down the pipe
    const std::string keys = draw_keys();
    const bool ok = ::write(fds[1], keys.data(), keys.size()) == static_cast<ssize_t>(keys.size());
    ::_exit(ok ? 0 : 1);
  }
  ::close(fds[1]);
  const std::string parent = draw_keys();
  std::string child;
  char buf[256];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) child.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CAPTURE(parent);
  CAPTURE(child);
  CHECK(child.size() > 24);
  CHECK(parent != before);
  CHECK(child != before);
  // Neither the handshake key nor any masking key may repeat across the fork.
  CHECK(parent.substr(0, 24) != child.substr(0, 24));
  CHECK(parent.substr(24) != child.substr(24));
}

TEST_CASE("client options that cannot make a valid request fail up front") {
  const ws_url u = *parse_ws_url("ws://h/");
  auto reason = [&](client_options o) {
    client_handshake hs(u, o);
    CHECK(hs.state() == handshake_state::failed);
    CHECK(hs.request().empty());
    CHECK(hs.feed(ok_101()) == 0);
    return std::string(hs.reason());
  };
  client_options o;
  o.protocols = {"chat", "chat"};
  CHECK(reason(o) == "invalid option: duplicate subprotocol");
  o.protocols = {"a b"};
  CHECK(reason(o) == "invalid option: subprotocol is not a token");
  o.protocols = {};
  o.headers = {{"Sec-WebSocket-Key", "x"}};
  CHECK(reason(o) == "invalid option: header is written by the handshake");
  o.headers = {{"host", "x"}};
  CHECK(reason(o) == "invalid option: header is written by the handshake");
  o.headers = {{"Origin", "a\r\nX: y"}};
  CHECK(reason(o) == "invalid option: malformed header");
  o.headers = {};
  o.extensions = "a\nb";
  CHECK(reason(o) == "invalid option: malformed extensions offer");
  o.extensions = "";
  o.key = "short";
  CHECK(reason(o) == "invalid option: key is not base64 of 16 bytes");
  // Built in place, not assigned: g++ 12 -O3 reports a false -Wrestrict inside
  // std::string's assignment from a literal (GCC PR 105651).
  const ws_url hand_made{.secure = false, .host = "h", .port = 80, .path = "/a b", .query = ""};
  client_handshake bad_url(hand_made);
  CHECK(bad_url.state() == handshake_state::failed);
  CHECK(bad_url.reason() == "invalid URL");
}

TEST_CASE("RFC 6455 §1.3/§4.1: the RFC's example response is accepted") {
  client_options o = fixed_key();
  o.protocols = {"chat", "superchat"};
  auto run = run_client(ok_101("Sec-WebSocket-Protocol: chat\r\n"), o);
  CHECK(run.hs.state() == handshake_state::done);
  CHECK(run.hs.status() == 101);
  CHECK(run.hs.protocol() == "chat");
  CHECK(run.hs.reason().empty());
  CHECK(run.consumed == ok_101("Sec-WebSocket-Protocol: chat\r\n").size());
  CHECK(run.hs.response().header("sec-websocket-accept") == rfc_accept);
}

TEST_CASE("RFC 6455 §4.1: the client validates the server's handshake") {
  auto reason = [](std::string response, client_options o = fixed_key()) {
    auto run = run_client(response, o);
    CHECK(run.hs.state() == handshake_state::failed);
    return std::string(run.hs.reason());
  };
  SUBCASE("Sec-WebSocket-Accept must match exactly") {
    CHECK(reason(ok_101("", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo")) == "Sec-WebSocket-Accept does not match the key");
    CHECK(reason(ok_101("", "S3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) == "Sec-WebSocket-Accept does not match the key");
    CHECK(reason(ok_101("", websocket_accept_key("AAAAAAAAAAAAAAAAAAAAAA=="))) ==
          "Sec-WebSocket-Accept does not match the key");
    CHECK(reason(ok_101("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")) == "duplicate Sec-WebSocket-Accept");
    CHECK(reason("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n") ==
          "response lacks Sec-WebSocket-Accept");
  }
  SUBCASE("Upgrade and Connection tokens") {
    const std::string acc = "Sec-WebSocket-Accept: " + std::string(rfc_accept) + "\r\n";
    CHECK(reason("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n" + acc + "\r\n") ==
          "response lacks Upgrade: websocket");
    CHECK(reason("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" + acc + "\r\n") ==
          "response lacks Upgrade: websocket");
    CHECK(reason("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" + acc + "\r\n") ==
          "response lacks Connection: Upgrade");
    CHECK(reason("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n" + acc +
                 "\r\n") == "response lacks Connection: Upgrade");
    auto run = run_client("HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
                          "sec-websocket-accept: " + std::string(rfc_accept) + "\r\n\r\n");
    CHECK(run.hs.state() == handshake_state::done);
  }
  SUBCASE("a subprotocol only from those offered, exactly one") {
    client_options o = fixed_key();
    o.protocols = {"chat", "superchat"};
    CHECK(reason(ok_101("Sec-WebSocket-Protocol: other\r\n"), o) == "server chose a subprotocol that was not offered");
    CHECK(reason(ok_101("Sec-WebSocket-Protocol: Chat\r\n"), o) == "server chose a subprotocol that was not offered");
    CHECK(reason(ok_101("Sec-WebSocket-Protocol: chat, superchat\r\n"), o) ==
          "Sec-WebSocket-Protocol in response is not one token");
    CHECK(reason(ok_101("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n"), o) ==
          "several Sec-WebSocket-Protocol headers in response");
    CHECK(reason(ok_101("Sec-WebSocket-Protocol: chat\r\n")) == "server chose a subprotocol that was not offered");
    auto none = run_client(ok_101(), o);  // offered, none chosen: allowed by the RFC
    CHECK(none.hs.state() == handshake_state::done);
    CHECK(none.hs.protocol().empty());
    auto second = run_client(ok_101("Sec-WebSocket-Protocol: superchat\r\n"), o);
    CHECK(second.hs.protocol() == "superchat");
  }
  SUBCASE("extensions only from those offered") {
    CHECK(reason(ok_101("Sec-WebSocket-Extensions: permessage-deflate\r\n")) ==
          "server accepted an extension that was not offered");
    client_options o = fixed_key();
    o.extensions = "permessage-deflate; client_max_window_bits, x-foo";
    CHECK(reason(ok_101("Sec-WebSocket-Extensions: x-bar\r\n"), o) ==
          "server accepted an extension that was not offered");
    CHECK(reason(ok_101("Sec-WebSocket-Extensions: permessage-deflate, x-bar\r\n"), o) ==
          "server accepted an extension that was not offered");
    CHECK(reason(ok_101("Sec-WebSocket-Extensions: ; x=1\r\n"), o) == "malformed Sec-WebSocket-Extensions in response");
    auto run = run_client(ok_101("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
                                 "Sec-WebSocket-Extensions: X-Foo; q=\"a,b\"\r\n"),
                          o);
    CHECK(run.hs.state() == handshake_state::done);
    CHECK(run.hs.extensions() == "permessage-deflate; server_no_context_takeover, X-Foo; q=\"a,b\"");
  }
  SUBCASE("HTTP/1.1 and a well-formed status line") {
    std::string r = ok_101();
    CHECK(reason("HTTP/1.0" + r.substr(8)).starts_with("101 response is not HTTP/1.1"));
    CHECK(reason("HTTP/1.1 1O1 Switching\r\n\r\n") == "malformed response: malformed status code");
    CHECK(reason("HTTP/1.1 101\r\n\r\n") == "response lacks Upgrade: websocket");  // empty reason tolerated
    CHECK(reason("HTTP/1.1  101 x\r\n\r\n") == "malformed response: malformed status code");
    CHECK(reason("ICY 200 OK\r\n\r\n") == "malformed response: malformed status line");
    CHECK(reason("HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n") ==
          "line ending other than CRLF in response head");
    CHECK(reason("HTTP/1.1 101 Switching\r\n X: folded\r\n\r\n") == "malformed response: obsolete line folding in header");
  }
}

TEST_CASE("RFC 6455 §4.1: a non-101 answer keeps status, headers and a small body") {
  const std::string unauthorized =
      "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 13\r\n\r\ntoken missing";
  const std::string not_found = "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope";
  auto a = run_client(unauthorized);
  CHECK(a.hs.state() == handshake_state::failed);
  CHECK(a.hs.status() == 401);
  CHECK(a.hs.reason() == "server answered 401 Unauthorized");
  CHECK(a.hs.response().header("WWW-Authenticate") == "Bearer");
  CHECK(a.hs.body() == "token missing");
  CHECK(a.consumed == unauthorized.size());
  auto b = run_client(not_found);
  CHECK(b.hs.status() == 404);
  CHECK(b.hs.body() == "nope");
  CHECK(b.hs.reason() == "server answered 404 Not Found");

  // Status known as soon as the head is in, while the body is still coming.
  client_handshake partial(*parse_ws_url("ws://h/"), fixed_key());
  partial.feed(std::string_view(unauthorized).substr(0, unauthorized.size() - 3));
  CHECK(partial.state() == handshake_state::need_more);
  CHECK(partial.status() == 401);
  partial.feed(std::string_view(unauthorized).substr(unauthorized.size() - 3));
  CHECK(partial.state() == handshake_state::failed);

  // Over the bound, chunked, or without a length: the body is the caller's to read.
  client_options small = fixed_key();
  small.max_body_bytes = 5;
  auto big = run_client(unauthorized, small);
  CHECK(big.hs.state() == handshake_state::failed);
  CHECK(big.hs.body().empty());
  CHECK(big.consumed == unauthorized.size() - 13);
  const std::string chunked = "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
  auto c = run_client(chunked);
  CHECK(c.hs.status() == 500);
  CHECK(c.hs.body().empty());
  CHECK(c.consumed == chunked.find("4\r\n"));
  auto d = run_client("HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n");
  CHECK(d.hs.state() == handshake_state::failed);
  CHECK(d.hs.status() == 302);
  CHECK(d.hs.response().header("Location") == "/x");
  auto e = run_client("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nabc");
  CHECK(e.hs.status() == 200);
  CHECK(e.hs.body().empty());
}

TEST_CASE("RFC 9110 §15.2: interim 1xx responses before the 101 are skipped") {
  const std::string in = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" + ok_101();
  auto run = run_client(in);
  CHECK(run.hs.state() == handshake_state::done);
  CHECK(run.consumed == in.size());
  CHECK_FALSE(run.hs.response().header("Link").has_value());
  // They count against the byte bound.
  client_options o = fixed_key();
  o.limits.max_header_bytes = 150;
  std::string many;
  for (int i = 0; i < 10; ++i) many += "HTTP/1.1 100 Continue\r\n\r\n";
  auto flood = run_client(many + ok_101(), o);
  CHECK(flood.hs.state() == handshake_state::failed);
  CHECK(flood.hs.reason() == "response head too large");
}

TEST_CASE("RFC 6455 §4.1: bytes after the 101 are the server's first frames") {
  const std::string head = ok_101();
  const std::string frames = "\x81\x05Hello\x89\x00"s;
  auto run = run_client(head + frames);
  CHECK(run.hs.state() == handshake_state::done);
  CHECK(run.consumed == head.size());
  client_handshake hs(*parse_ws_url("ws://h/"), fixed_key());
  const std::string all = head + frames;
  const std::size_t n = hs.feed(all);
  CHECK(std::string_view(all).substr(n) == frames);
  CHECK(hs.feed(std::string_view(all).substr(n)) == 0);
}

TEST_CASE("Handshakes copy and move in the middle of a head (the scanner is held in place)") {
  const std::string request = req().str();
  const std::size_t half = request.size() / 2;
  server_handshake a;
  CHECK(a.feed(std::string_view(request).substr(0, half)) == half);
  server_handshake copy(a);
  server_handshake moved(std::move(a));
  server_handshake assigned;
  assigned = copy;
  server_handshake move_assigned;
  move_assigned = std::move(assigned);
  for (server_handshake* hs : {&copy, &moved, &move_assigned}) {
    CHECK(hs->feed(std::string_view(request).substr(half)) == request.size() - half);
    CHECK(hs->state() == handshake_state::request_ready);
    CHECK(hs->request().target() == "/chat");
  }
  const std::string response = ok_101();
  client_handshake c(*parse_ws_url("ws://server.example.com/chat"), fixed_key());
  CHECK(c.feed(std::string_view(response).substr(0, 20)) == 20);
  client_handshake c2(c);
  client_handshake c3(std::move(c));
  for (client_handshake* hs : {&c2, &c3}) {
    CHECK(hs->feed(std::string_view(response).substr(20)) == response.size() - 20);
    CHECK(hs->state() == handshake_state::done);
  }
}

TEST_CASE("Client limits") {
  client_options o = fixed_key();
  o.limits.max_headers = 3;
  CHECK(run_client(ok_101(), o).hs.state() == handshake_state::done);
  auto run = run_client(ok_101("X: 1\r\n"), o);
  CHECK(run.hs.reason() == "too many header fields in response");
  o.limits = {};
  auto big = run_client(ok_101("X: " + std::string(9000, 'a') + "\r\n"), o);
  CHECK(big.hs.reason() == "response head too large");
  CHECK(big.consumed == 8192);
}

TEST_CASE("Round trip: our client against our server") {
  for (const subprotocol_policy policy : {subprotocol_policy::prefer_client, subprotocol_policy::prefer_server}) {
    client_options co;
    co.protocols = {"v1.chat", "v2.chat"};
    co.extensions = "permessage-deflate; client_max_window_bits";
    co.headers = {{"Origin", "https://app.example"}};
    client_handshake client(*parse_ws_url("ws://[::1]:9001/socket?user=al%20ice"), co);
    REQUIRE(client.state() == handshake_state::need_more);

    auto srv = run_server(client.request());
    REQUIRE(srv.hs.state() == handshake_state::request_ready);
    CHECK(srv.hs.request().header("Host") == "[::1]:9001");
    CHECK(srv.hs.request().query_param("user") == "al ice");
    CHECK(srv.hs.request().header("Origin") == "https://app.example");
    accept_options ao;
    ao.policy = policy;
    ao.protocols = {"v2.chat", "v1.chat"};
    ao.extensions = "permessage-deflate";
    REQUIRE(srv.hs.accept(ao));

    CHECK(client.feed(srv.hs.response()) == srv.hs.response().size());
    CHECK(client.state() == handshake_state::done);
    CHECK(client.protocol() == (policy == subprotocol_policy::prefer_client ? "v1.chat" : "v2.chat"));
    CHECK(client.extensions() == "permessage-deflate");
  }
}

TEST_CASE("Random requests and responses split every way agree (chunk invariance)") {
  std::mt19937 rng(1234);
  const std::vector<std::string> pieces = {"GET ", "/", "x", " ", "HTTP/1.1", "\r\n", "Host: a", ":", " ",
                                           "\r", "\n", "Upgrade", "websocket", ", ", "\t", "\x01", "\xff"};
  for (int i = 0; i < 300; ++i) {
    std::string in;
    const int n = static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) in += pieces[rng() % pieces.size()];
    if (rng() % 2) in += "\r\n\r\n";
    CAPTURE(in);
    run_server(in);
    run_client(in);
  }
}

// ---------------------------------------------------------------------------------
// The README's handshake example, extracted from README.md by the build (tests/meson.build),
// so the documentation cannot drift from what is tested.
namespace doc_example {
#include "readme_handshake_example.hpp"
}  // namespace doc_example

TEST_CASE("README example: authenticate, then accept or reject") {
  auto answer = [](const req& r, std::string_view tail = "") {
    server_handshake hs;
    const std::string in = r.str() + std::string(tail);
    std::string_view frames;
    std::string out = doc_example::on_read(hs, in, frames);
    CHECK(frames == tail);
    return out.substr(0, out.find("\r\n"));
  };
  req good;
  good.start("GET /chat?token=s3cret HTTP/1.1").add("Origin", "https://app.example").add("Sec-WebSocket-Protocol", "chat.v1, chat.v2");
  CHECK(answer(good, "\x81\x80xxxx") == "HTTP/1.1 101 Switching Protocols");
  req bearer = good;
  bearer.start("GET /chat HTTP/1.1").add("Authorization", "Bearer s3cret");
  CHECK(answer(bearer) == "HTTP/1.1 101 Switching Protocols");
  req no_token = good;
  no_token.start("GET /chat HTTP/1.1");
  CHECK(answer(no_token) == "HTTP/1.1 401 Unauthorized");
  req evil = good;
  evil.set("Origin", "https://evil.example");
  CHECK(answer(evil) == "HTTP/1.1 403 Forbidden");
  req elsewhere = good;
  elsewhere.start("GET /other?token=s3cret HTTP/1.1");
  CHECK(answer(elsewhere) == "HTTP/1.1 404 Not Found");
  CHECK(answer(good.set("Sec-WebSocket-Version", "8")) == "HTTP/1.1 426 Upgrade Required");
  server_handshake partial;
  std::string_view frames;
  CHECK(doc_example::on_read(partial, "GET /chat HTTP/1.1\r\n", frames).empty());
}
