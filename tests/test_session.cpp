// server_session and client_session: the handshake and the frame layer behind one feed().
//
// Most tests run a server and a client session against each other in memory. Each
// direction's bytes are delivered whole, byte by byte, or in seeded random chunks (each
// chunk in its own buffer, poisoned once fed), with event arrays of 1 to 16 slots; the
// events of both sides and the server's output must be the same whatever the split.
#include <random>

#include "harness.hpp"
#include "ws6455/client_session.hpp"
#include "ws6455/server_session.hpp"

namespace {

using namespace wst;
using ws6455::client_session;
using ws6455::server_session;
using ws6455::session_event;
using ws6455::session_event_type;
using ws6455::session_state;

constexpr std::string_view test_key = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 §1.3

std::string describe(const session_event& e) {
  switch (e.type) {
    case session_event_type::text: return "text " + std::to_string(e.data.size()) + " " + std::to_string(fnv(e.data));
    case session_event_type::binary: return "binary " + std::to_string(e.data.size()) + " " + std::to_string(fnv(e.data));
    case session_event_type::ping: return "ping " + to_hex(e.data);
    case session_event_type::pong: return "pong " + to_hex(e.data);
    case session_event_type::close: return "close " + std::to_string(e.code) + " " + std::string(e.reason);
    case session_event_type::fail: return "fail " + std::to_string(e.code) + " " + std::string(e.reason);
    case session_event_type::request: return "request";
    case session_event_type::open: return "open";
    case session_event_type::handshake_failed:
      return "handshake_failed " + std::to_string(e.code) + " " + std::string(e.reason);
  }
  return "?";
}

std::string text_of(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// Everything pending on a session, drained.
template <class Session>
bytes drain(Session& s) {
  bytes out;
  while (s.want_write()) {
    const auto p = s.pending_output();
    out.insert(out.end(), p.begin(), p.end());
    s.consume_output(p.size());
  }
  return out;
}

// How one direction's bytes are cut into reads.
struct split {
  enum kind_t { whole, bytewise, random } kind = whole;
  std::uint32_t seed = 0;
  std::size_t cap = 16;  // event slots per feed call
};

std::string name(const split& s) {
  const char* k = s.kind == split::whole ? "whole" : s.kind == split::bytewise ? "byte by byte" : "random";
  return std::string(k) + " seed " + std::to_string(s.seed) + " cap " + std::to_string(s.cap);
}

// Feeds `data` to `s` under `how`, calling on_event for each event. Each read gets its own
// buffer, poisoned after use: an event kept past its read would show garbage.
template <class Session, class Handler>
void deliver(Session& s, const bytes& data, const split& how, std::mt19937& rng, Handler&& on_event) {
  std::vector<session_event> events(how.cap);
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t n = data.size() - pos;
    if (how.kind == split::bytewise) n = 1;
    if (how.kind == split::random) n = std::min<std::size_t>(n, 1 + rng() % 700);
    bytes chunk(data.begin() + static_cast<std::ptrdiff_t>(pos), data.begin() + static_cast<std::ptrdiff_t>(pos + n));
    std::span<std::byte> in(chunk);
    int stalls = 0;
    while (!in.empty()) {
      const auto r = s.feed(in, events);
      for (std::size_t i = 0; i < r.events; ++i) on_event(events[i]);
      in = in.subspan(r.consumed);
      if (r.consumed == 0 && r.events == 0) REQUIRE(++stalls < 3);  // a request left undecided
    }
    std::fill(chunk.begin(), chunk.end(), std::byte{0xEE});
    pos += n;
  }
}

struct conversation {
  std::vector<std::string> server_log, client_log;
  std::uint64_t server_wire = 0;  // hash of everything the server wrote
  std::uint64_t client_wire = 0;
  bool server_clean = false, client_clean = false;
  std::optional<ws6455::deflate_params> server_deflate, client_deflate;
};

// The messages the client sends; the server echoes each; after the last echo the client
// closes with 1000.
std::vector<std::pair<bool, bytes>> script() {
  std::vector<std::pair<bool, bytes>> m;
  m.emplace_back(true, str("hello"));
  m.emplace_back(false, bytes{});
  m.emplace_back(false, pattern(125, 2));
  m.emplace_back(true, str(utf8_text(126)));
  m.emplace_back(false, pattern(65536, 3));
  m.emplace_back(true, str(utf8_text(70000)));
  m.emplace_back(false, filled(20000, 'a'));  // compressible
  return m;
}

struct pair_options {
  ws6455::server_session_options server;
  ws6455::client_session_options client;
  std::string url = "ws://example.com/echo?room=1";
};

conversation converse(const split& how, pair_options o) {
  counting_random rnd;  // deterministic masking keys: the client's output is comparable
  rnd.install(o.client.frames);
  o.client.handshake.key = std::string(test_key);
  server_session server(o.server);
  client_session client(*ws6455::parse_ws_url(o.url), o.client);
  std::mt19937 rng(how.seed);
  conversation c;
  const auto messages = script();
  std::size_t echoes = 0;
  std::uint64_t server_hash = 1469598103934665603ull, client_hash = server_hash;
  auto hash_into = [](std::uint64_t& h, const bytes& b) {
    for (auto x : b) { h ^= static_cast<std::uint8_t>(x); h *= 1099511628211ull; }
  };

  auto on_server = [&](const session_event& e) {
    c.server_log.push_back(describe(e));
    switch (e.type) {
      case session_event_type::request:
        CHECK(server.state() == session_state::request_ready);
        CHECK(server.request().path() == "/echo");
        CHECK(server.request().query_param("room") == "1");
        CHECK(server.accept());
        break;
      case session_event_type::text: CHECK(server.send_text(e.text(), true) == ws6455::send_result::ok); break;
      case session_event_type::binary: CHECK(server.send_binary(e.data) == ws6455::send_result::ok); break;
      default: break;
    }
  };
  auto on_client = [&](const session_event& e) {
    c.client_log.push_back(describe(e));
    switch (e.type) {
      case session_event_type::open:
        CHECK(client.state() == session_state::open);
        for (const auto& [is_text, body] : messages) {
          const auto r = is_text ? client.send_text(text_of(body)) : client.send_binary(body);
          CHECK(r == ws6455::send_result::ok);
        }
        break;
      case session_event_type::text:
      case session_event_type::binary:
        REQUIRE(echoes < messages.size());
        CHECK((e.type == session_event_type::text) == messages[echoes].first);
        CHECK(as_bytes(e.data) == messages[echoes].second);
        if (++echoes == messages.size()) CHECK(client.close(1000, "done") == ws6455::send_result::ok);
        break;
      default: break;
    }
  };

  bool server_gone = false;
  for (int round = 0; round < 100; ++round) {
    const bytes up = drain(client);
    hash_into(client_hash, up);
    deliver(server, up, how, rng, on_server);
    const bytes down = drain(server);
    hash_into(server_hash, down);
    deliver(client, down, how, rng, on_client);
    if (server.should_close_transport()) {
      // §7.1.1: the server closes TCP first; the client sees EOF.
      server_gone = true;
      // A client keeps reading after a clean close, for that EOF.
      CHECK(client.state() == session_state::closed);
      CHECK(client.want_read());
      CHECK_FALSE(client.should_close_transport());
      session_event e;
      if (client.feed_eof(e)) c.client_log.push_back(describe(e));
      CHECK_FALSE(client.want_read());
      break;
    }
  }
  CHECK(server_gone);
  CHECK(echoes == messages.size());
  c.server_wire = server_hash;
  c.client_wire = client_hash;
  c.server_clean = server.websocket() && server.websocket()->closed_cleanly();
  c.client_clean = client.websocket() && client.websocket()->closed_cleanly();
  if (server.websocket()) c.server_deflate = server.websocket()->settings().deflate;
  if (client.websocket()) c.client_deflate = client.websocket()->settings().deflate;
  return c;
}

std::vector<split> splits() {
  std::vector<split> v{{split::whole, 0, 16}, {split::whole, 0, 1}, {split::bytewise, 0, 16}, {split::bytewise, 0, 2}};
  for (std::uint32_t seed = 1; seed <= 6; ++seed) v.push_back({split::random, seed, 1 + seed * 3 % 16});
  return v;
}

void check_invariant(const pair_options& o) {
  const conversation first = converse({split::whole, 0, 16}, o);
  CHECK(first.server_clean);
  CHECK(first.client_clean);
  CHECK(first.server_log.front() == "request");
  CHECK(first.client_log.front() == "open");
  CHECK(first.server_log.back() == "close 1000 done");
  CHECK(first.client_log.back() == "close 1000 ");  // the reply echoes the code, not the reason
  for (const split& s : splits()) {
    INFO(name(s));
    const conversation c = converse(s, o);
    CHECK(c.server_log == first.server_log);
    CHECK(c.client_log == first.client_log);
    CHECK(c.server_wire == first.server_wire);
    CHECK(c.client_wire == first.client_wire);
    CHECK(c.server_clean);
    CHECK(c.client_clean);
  }
}

// A valid upgrade request as a client_session writes it, for tests that script the server.
bytes request_bytes(std::string_view url = "ws://example.com/echo", ws6455::client_session_options o = {}) {
  o.handshake.key = std::string(test_key);
  client_session c(*ws6455::parse_ws_url(url), o);
  return drain(c);
}

std::vector<session_event> feed_all(server_session& s, bytes& data, std::size_t cap = 16) {
  std::vector<session_event> out, events(cap);
  std::span<std::byte> in(data);
  while (!in.empty()) {
    const auto r = s.feed(in, events);
    out.insert(out.end(), events.begin(), events.begin() + static_cast<std::ptrdiff_t>(r.events));
    in = in.subspan(r.consumed);
    if (r.consumed == 0 && r.events == 0) break;
  }
  return out;
}

}  // namespace

TEST_CASE("session: client and server talk in memory, identically under every split") {
  check_invariant({});
}

TEST_CASE("session: permessage-deflate negotiated end to end, identically under every split") {
  pair_options o;
  o.server.deflate = ws6455::permessage_deflate::server_options{};
  o.client.deflate = ws6455::permessage_deflate::client_options{};
  check_invariant(o);
  const conversation c = converse({}, o);
  REQUIRE(c.server_deflate.has_value());
  REQUIRE(c.client_deflate.has_value());
  CHECK(c.server_deflate->server_max_window_bits == 12);
  CHECK(c.client_deflate->client_max_window_bits == 12);
}

TEST_CASE("session: permessage-deflate compresses on the wire (RSV1, fewer bytes)") {
  ws6455::server_session_options so;
  so.deflate = ws6455::permessage_deflate::server_options{};
  ws6455::client_session_options co;
  co.deflate = ws6455::permessage_deflate::client_options{};
  co.handshake.key = std::string(test_key);
  server_session s(so);
  client_session c(*ws6455::parse_ws_url("ws://h/"), co);
  bytes up = drain(c);
  auto ev = feed_all(s, up);
  REQUIRE(ev.size() == 1);
  REQUIRE(s.accept());
  const bytes head = drain(s);
  CHECK(text_of(head).find("Sec-WebSocket-Extensions: permessage-deflate") != std::string::npos);
  const bytes big = filled(100000, 'x');
  REQUIRE(s.send_binary(big) == ws6455::send_result::ok);
  const auto frames = parse_frames(drain(s));
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].rsv == RSV1);  // RFC 7692 §6: RSV1 marks a compressed message
  CHECK(frames[0].payload.size() < 1000);
}

TEST_CASE("session: deflate enabled on one side only is simply not used") {
  for (int side = 0; side < 2; ++side) {
    pair_options o;
    if (side == 0) o.server.deflate = ws6455::permessage_deflate::server_options{};
    else o.client.deflate = ws6455::permessage_deflate::client_options{};
    const conversation c = converse({}, o);
    CHECK(c.server_clean);
    CHECK(c.client_clean);
    CHECK_FALSE(c.server_deflate.has_value());
    CHECK_FALSE(c.client_deflate.has_value());
  }
}

TEST_CASE("session: early frames behind the request head reach the frame layer after accept()") {
  const bytes wire = cat(request_bytes(), peer_frame(role::server, OP_TEXT, str("early")),
                         peer_frame(role::server, OP_PING, str("p")));
  const std::size_t head = request_bytes().size();
  for (const split& how : splits()) {
    INFO(name(how));
    server_session s;
    std::mt19937 rng(how.seed);
    std::vector<std::string> log;
    deliver(s, wire, how, rng, [&](const session_event& e) {
      log.push_back(describe(e));
      if (e.type == session_event_type::request) CHECK(s.accept());
      if (e.type == session_event_type::text) CHECK(e.text() == "early");
    });
    CHECK(log == std::vector<std::string>{"request", describe(session_event{session_event_type::text, true, 0, {},
                                                                             str("early"), {}}),
                                          "ping 70"});
    // The 101 goes out first, then the automatic pong (RFC 6455 §5.5.3).
    const auto first = s.pending_output();
    CHECK(text_of(first).starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    CHECK(text_of(first).ends_with("\r\n\r\n"));
    s.consume_output(first.size());
    CHECK(as_bytes(s.pending_output()) == frame(OP_PONG, str("p")));
  }
  // feed() stops exactly at the end of the head, and takes nothing until a decision.
  server_session s;
  bytes data = wire;
  std::array<session_event, 4> events;
  const auto r = s.feed(data, events);
  CHECK(r.consumed == head);
  CHECK(r.events == 1);
  CHECK(events[0].type == session_event_type::request);
  CHECK_FALSE(s.want_read());
  const auto again = s.feed(std::span<std::byte>(data).subspan(head), events);
  CHECK(again.consumed == 0);
  CHECK(again.events == 0);
  CHECK(s.send_text("too soon") == ws6455::send_result::closed);
}

TEST_CASE("session: frames behind the 101 reach the client in the same feed() as open") {
  for (std::size_t cap : {1u, 2u, 8u}) {
    INFO("cap " << cap);
    server_session s;
    client_session c(*ws6455::parse_ws_url("ws://h/"), {});
    bytes up = drain(c);
    REQUIRE(feed_all(s, up).size() == 1);
    REQUIRE(s.accept());
    REQUIRE(s.send_text("first") == ws6455::send_result::ok);
    REQUIRE(s.send_binary(str("second")) == ws6455::send_result::ok);
    bytes down = drain(s);
    std::vector<session_event> events(cap);
    std::vector<std::string> log;
    std::span<std::byte> in(down);
    std::size_t calls = 0;
    while (!in.empty()) {
      const auto r = c.feed(in, events);
      for (std::size_t i = 0; i < r.events; ++i) log.push_back(describe(events[i]));
      in = in.subspan(r.consumed);
      ++calls;
    }
    CHECK(log.size() == 3);
    CHECK(log[0] == "open");
    if (cap >= 3) CHECK(calls == 1);
  }
}

TEST_CASE("session: a bad request is answered 400/405/426 on pending_output, then should_close_transport") {
  struct row { std::string head; int status; };
  const std::vector<row> rows = {
      {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 405},
      {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426},
      {"GET / HTTP/1.1\nHost: h\n\n", 400},
  };
  for (const row& rw : rows) {
    INFO(rw.head);
    server_session s;
    bytes data = cat(str(rw.head), str("whatever follows"));
    std::array<session_event, 4> events;
    const auto r = s.feed(data, events);
    CHECK(r.consumed == data.size());
    REQUIRE(r.events == 1);
    CHECK(events[0].type == session_event_type::handshake_failed);
    CHECK(events[0].code == rw.status);
    CHECK_FALSE(events[0].reason.empty());
    CHECK(s.state() == session_state::handshake_failed);
    CHECK(s.status() == rw.status);
    CHECK_FALSE(s.want_read());
    CHECK(s.want_write());
    CHECK_FALSE(s.should_close_transport());  // the answer is not written yet
    CHECK(text_of(s.pending_output()).starts_with("HTTP/1.1 " + std::to_string(rw.status) + " "));
    CHECK(s.websocket() == nullptr);
    CHECK(s.send_text("x") == ws6455::send_result::closed);
    CHECK_FALSE(s.accept());
    // Written in two pieces: nothing past the response.
    const std::size_t total = s.pending_output().size();
    s.consume_output(3);
    CHECK(s.pending_output().size() == total - 3);
    s.consume_output(total - 3);
    CHECK_FALSE(s.want_write());
    CHECK(s.should_close_transport());
    // Later input is not ours: taken and ignored.
    const auto later = s.feed(data, events);
    CHECK(later.consumed == data.size());
    CHECK(later.events == 0);
    session_event eof;
    CHECK_FALSE(s.feed_eof(eof));
  }
}

TEST_CASE("session: the application rejects with 403; the client session reports status and body") {
  for (const split& how : splits()) {
    INFO(name(how));
    ws6455::client_session_options co;
    co.handshake.headers = {{"Origin", "https://evil.example"}};
    client_session c(*ws6455::parse_ws_url("ws://h/chat"), co);
    server_session s;
    std::mt19937 rng(how.seed);
    deliver(s, drain(c), how, rng, [&](const session_event& e) {
      REQUIRE(e.type == session_event_type::request);
      CHECK(s.request().header("origin") == "https://evil.example");
      s.reject(403, "origin not allowed\n");
      CHECK_FALSE(s.accept());  // decided already
    });
    CHECK(s.state() == session_state::handshake_failed);
    CHECK(s.status() == 403);
    CHECK_FALSE(s.should_close_transport());
    const bytes answer = drain(s);
    CHECK(s.should_close_transport());
    CHECK(text_of(answer).starts_with("HTTP/1.1 403 "));
    std::vector<std::string> log;
    deliver(c, answer, how, rng, [&](const session_event& e) { log.push_back(describe(e)); });
    REQUIRE(log.size() == 1);
    CHECK(log[0].starts_with("handshake_failed 403 "));
    CHECK(c.state() == session_state::handshake_failed);
    CHECK(c.status() == 403);
    CHECK(c.body() == "origin not allowed\n");
    CHECK(c.response().header("Content-Length") == "19");
    CHECK(c.should_close_transport());
    CHECK_FALSE(c.want_read());
    CHECK(c.websocket() == nullptr);
  }
}

TEST_CASE("session: subprotocol policy comes from the server options; accept(options) overrides it") {
  pair_options o;
  o.client.handshake.protocols = {"chat.v1", "chat.v2"};
  o.server.accept.policy = ws6455::subprotocol_policy::prefer_server;
  o.server.accept.protocols = {"chat.v2", "chat.v1"};
  {
    server_session s(o.server);
    bytes up = request_bytes("ws://h/", o.client);
    REQUIRE(feed_all(s, up).size() == 1);
    CHECK(s.request().offered_protocols().size() == 2);
    REQUIRE(s.accept());
    CHECK(s.protocol() == "chat.v2");
    client_session c(*ws6455::parse_ws_url("ws://h/"), [&] {
      auto co = o.client;
      co.handshake.key = std::string(test_key);
      return co;
    }());
    bytes down = drain(s);
    std::array<session_event, 4> events;
    const auto r = c.feed(down, events);
    CHECK(r.consumed == down.size());
    REQUIRE(r.events == 1);
    CHECK(events[0].type == session_event_type::open);
    CHECK(c.protocol() == "chat.v2");
  }
  {
    server_session s(o.server);
    bytes up = request_bytes("ws://h/", o.client);
    REQUIRE(feed_all(s, up).size() == 1);
    ws6455::accept_options mine;
    mine.policy = ws6455::subprotocol_policy::prefer_client;
    mine.protocols = {"chat.v2", "chat.v1"};
    REQUIRE(s.accept(mine));
    CHECK(s.protocol() == "chat.v1");
  }
  {
    // require_protocol without a match: the handshake answers 400 and accept() says false.
    ws6455::server_session_options so;
    so.accept.policy = ws6455::subprotocol_policy::prefer_server;
    so.accept.protocols = {"other"};
    so.accept.require_protocol = true;
    server_session s(so);
    bytes up = request_bytes("ws://h/", o.client);
    REQUIRE(feed_all(s, up).size() == 1);
    CHECK_FALSE(s.accept());
    CHECK(s.state() == session_state::handshake_failed);
    CHECK(text_of(drain(s)).starts_with("HTTP/1.1 400 "));
    CHECK(s.should_close_transport());
  }
}

TEST_CASE("session: the client fails on an invalid 101 and on a bad deflate answer") {
  {
    client_session c(*ws6455::parse_ws_url("ws://h/"), {});
    (void)drain(c);
    bytes bad = str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
    std::array<session_event, 2> events;
    const auto r = c.feed(bad, events);
    CHECK(r.consumed == bad.size());
    REQUIRE(r.events == 1);
    CHECK(events[0].type == session_event_type::handshake_failed);
    CHECK(events[0].code == 101);
    CHECK_FALSE(c.reason().empty());
    CHECK(c.should_close_transport());
  }
  {
    // The server answers with deflate parameters the offer did not allow
    // (client_max_window_bits was not offered): RFC 7692 §7.1.2.2.
    ws6455::client_session_options co;
    co.handshake.key = std::string(test_key);
    co.deflate = ws6455::permessage_deflate::client_options{};
    co.deflate->offer_client_max_window_bits = false;
    client_session c(*ws6455::parse_ws_url("ws://h/"), co);
    (void)drain(c);
    bytes answer = str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                       "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n");
    std::array<session_event, 2> events;
    const auto r = c.feed(answer, events);
    REQUIRE(r.events == 1);
    CHECK(events[0].type == session_event_type::handshake_failed);
    CHECK(c.reason().starts_with("invalid permessage-deflate response: "));
    CHECK(events[0].reason == c.reason());
    CHECK(c.websocket() == nullptr);
  }
}

TEST_CASE("session: invalid client options fail at construction, nothing to write") {
  ws6455::client_session_options co;
  co.handshake.protocols = {"not a token"};
  client_session c(*ws6455::parse_ws_url("ws://h/"), co);
  CHECK(c.state() == session_state::handshake_failed);
  CHECK_FALSE(c.reason().empty());
  CHECK_FALSE(c.want_write());
  CHECK(c.pending_output().empty());
  CHECK(c.should_close_transport());
}

TEST_CASE("session: EOF during the handshake is handshake_failed; after open it is 1006") {
  {
    server_session s;
    bytes part = str("GET / HTTP/1.1\r\nHost:");
    CHECK(feed_all(s, part).empty());
    session_event e;
    REQUIRE(s.feed_eof(e));
    CHECK(e.type == session_event_type::handshake_failed);
    CHECK(e.code == 0);
    CHECK(s.should_close_transport());
    CHECK_FALSE(s.feed_eof(e));
  }
  {
    client_session c(*ws6455::parse_ws_url("ws://h/"), {});
    session_event e;
    REQUIRE(c.feed_eof(e));
    CHECK(e.type == session_event_type::handshake_failed);
    CHECK(c.should_close_transport());
  }
  {
    server_session s;
    bytes up = request_bytes();
    REQUIRE(feed_all(s, up).size() == 1);
    REQUIRE(s.accept());
    session_event e;
    REQUIRE(s.feed_eof(e));
    CHECK(e.type == session_event_type::close);
    CHECK(e.code == 1006);
    CHECK(s.state() == session_state::failed);
  }
}

TEST_CASE("session: a moved session keeps its queued head and its WebSocket") {
  server_session s;
  bytes up = cat(request_bytes(), peer_frame(role::server, OP_TEXT, str("hi")));
  std::array<session_event, 4> events;
  auto r = s.feed(up, events);
  REQUIRE(r.events == 1);
  REQUIRE(s.accept());
  server_session moved = std::move(s);
  r = moved.feed(std::span<std::byte>(up).subspan(r.consumed), events);
  REQUIRE(r.events == 1);
  CHECK(events[0].text() == "hi");
  REQUIRE(moved.send_text("back") == ws6455::send_result::ok);
  const bytes out = drain(moved);
  CHECK(text_of(out).starts_with("HTTP/1.1 101 "));
  CHECK(text_of(out).ends_with("back"));
  CHECK(moved.state() == session_state::open);
}

TEST_CASE("session: feed() with no event slots does nothing") {
  server_session s;
  bytes up = request_bytes();
  const auto r = s.feed(up, {});
  CHECK(r.consumed == 0);
  CHECK(r.events == 0);
  CHECK(s.state() == session_state::handshake);
}
