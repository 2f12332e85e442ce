// An Autobahn|Testsuite-style conformance record, byte level (fuzzingclient cases against
// our server). Each TEST_CASE is named by its Autobahn case id: the bytes a client sends
// (masked), the events we must report, and the frames our server writes back. The echo
// Autobahn expects is the application's job (not automatic): each case checks the
// automatic replies (pongs and close frames) alone, and then the whole output of an echo
// server, which must answer in the order of the events (a message's echo before the 1002
// or the close reply that a later frame brings: Autobahn's "strict" verdict). Every case
// runs through the shared harness (whole,
// byte by byte, split points, fixed and random chunks, event buffers 1..16) in both
// delivery modes; the "chopped" and "one frame at a time" variants are fed as chops, and
// fail-fast cases check which chop brings the failure.
//
// Case groups: 1 framing (lengths), 2 pings/pongs, 3 reserved bits, 4 reserved opcodes,
// 5 fragmentation, 6 UTF-8 (Markus Kuhn's decoder test as Autobahn uses it), 7 close.
#include <optional>

#include "harness.hpp"

using namespace wst;

namespace {

constexpr delivery both_modes[] = {delivery::whole_messages, delivery::streaming};

// A frame from the fuzzing client: masked with the RFC 6455 §5.7 key. `rsv` is Autobahn's
// 3-bit RSV value (1 = RSV3, 2 = RSV2, 4 = RSV1).
bytes cf(std::uint8_t op, const bytes& payload, bool fin = true, std::uint8_t rsv = 0) {
  return frame(op, payload, fin, K, static_cast<std::uint8_t>(rsv << 4));
}
bytes text_frame(std::string_view s, bool fin = true) { return cf(OP_TEXT, str(s), fin); }
bytes cont_frame(std::string_view s, bool fin = true) { return cf(OP_CONT, str(s), fin); }
bytes ping_frame(std::string_view s) { return cf(OP_PING, str(s)); }

config mode_cfg(delivery m) {
  config c;
  c.mode = m;
  return c;
}

// A frame our server must write back.
struct reply {
  std::uint8_t op = OP_PONG;
  bytes payload;                      // pong
  std::uint16_t close_code = 0;       // close: the code (1005: an empty close)
};
reply pong(std::string_view s) { return {OP_PONG, str(s), 0}; }
reply pong_bytes(const bytes& b) { return {OP_PONG, b, 0}; }
reply close_reply(std::uint16_t code) { return {OP_CLOSE, {}, code}; }

void check_replies(std::span<const std::byte> out, const std::vector<reply>& want) {
  std::size_t rest = 0;
  auto frames = parse_frames(out, &rest);
  CHECK(rest == 0);
  REQUIRE_MESSAGE(frames.size() == want.size(), "output: " << to_hex(out, 64));
  for (std::size_t i = 0; i < frames.size(); ++i) {
    INFO("reply frame " << i);
    const auto& f = frames[i];
    CHECK(!f.masked);  // a server never masks (§5.1)
    CHECK(f.fin);
    CHECK(f.rsv == 0);
    CHECK(f.minimal_length);
    CHECK(f.opcode == want[i].op);
    if (want[i].op == OP_CLOSE) {
      CHECK(close_code_of(f) == want[i].close_code);
      if (want[i].close_code == close_code::no_status) CHECK(f.payload.empty());
    } else {
      CHECK(f.payload == want[i].payload);
    }
  }
}

// Runs a case in both delivery modes under every chunking (plus `extra` chunkings);
// checks the events, the replies and the final state.
void autobahn(const bytes& input, const std::vector<recorded_event>& events, const std::vector<reply>& replies,
              std::vector<chunking> extra = {}) {
  for (delivery m : both_modes) {
    INFO(std::string(m == delivery::streaming ? "streaming" : "whole messages"));
    std::vector<chunking> chs = all_chunkings(input.size());
    chs.insert(chs.end(), extra.begin(), extra.end());
    auto res = check_all_chunkings(mode_cfg(m), role::server, input, events, false, chs);
    check_replies(res.output, replies);
    check_echo_order(mode_cfg(m), role::server, input, events, chs);
    const bool failed = !events.empty() && events.back().type == event_type::fail;
    const bool closed = !events.empty() && events.back().type == event_type::close;
    CHECK(res.state == (failed ? connection_state::failed : closed ? connection_state::closed : connection_state::open));
  }
}

// The case fails the connection with `err` after `before`; the only reply is the close.
void autobahn_fails(const bytes& input, std::vector<recorded_event> before, protocol_error err,
                    std::vector<reply> replies_before = {}, std::vector<chunking> extra = {}) {
  before.push_back(ev_fail(err));
  replies_before.push_back(close_reply(expected_code(err)));
  autobahn(input, before, replies_before, std::move(extra));
}

struct chop_result {
  std::vector<recorded_event> events;
  std::size_t output_frames = 0;  // complete frames in the output after this chop
};

// Feeds `chops` one at a time ("one frame at a time", "in chops") to a fresh server.
std::vector<chop_result> run_chops(delivery m, const std::vector<bytes>& chops) {
  connection c(role::server, mode_cfg(m));
  std::vector<chop_result> out;
  for (const auto& ch : chops) {
    chop_result r;
    r.events = run(c, ch);
    r.output_frames = parse_frames(c.pending_output()).size();
    out.push_back(std::move(r));
  }
  return out;
}

// The index of the chop that brought the fail event (chops.size() if none).
std::size_t fail_chop(const std::vector<chop_result>& r) {
  for (std::size_t i = 0; i < r.size(); ++i)
    for (auto& e : r[i].events)
      if (e.type == event_type::fail) return i;
  return r.size();
}

// Splits `b` into pieces of `n` bytes.
std::vector<bytes> pieces(const bytes& b, std::size_t n) {
  std::vector<bytes> v;
  for (std::size_t i = 0; i < b.size(); i += n) v.emplace_back(b.begin() + i, b.begin() + std::min(b.size(), i + n));
  return v;
}

// Frames of one message, one payload octet per frame (Autobahn 6.2.3, 6.3.2).
std::vector<bytes> octet_frames(const bytes& payload) {
  std::vector<bytes> v;
  for (std::size_t i = 0; i < payload.size(); ++i)
    v.push_back(cf(i == 0 ? OP_TEXT : OP_CONT, bytes{payload[i]}, i + 1 == payload.size()));
  return v;
}

bytes join(const std::vector<bytes>& v) {
  bytes out;
  for (auto& b : v) out.insert(out.end(), b.begin(), b.end());
  return out;
}

// An independent reference for UTF-8 (RFC 3629 / Unicode Table 3-7): nullopt when
// valid, else the index of the first octet after which no valid continuation exists
// (size() when the text only ends too early).
std::optional<std::size_t> utf8_fail_index(const bytes& s) {
  auto u = [&](std::size_t i) { return static_cast<unsigned>(s[i]); };
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned b = u(i);
    unsigned need = 0, lo = 0x80, hi = 0xBF;
    if (b < 0x80) { ++i; continue; }
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b >= 0xE1 && b <= 0xEF) need = 2;
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else return i;  // 80..C1, F5..FF never start a sequence
    for (unsigned k = 1; k <= need; ++k) {
      if (i + k >= s.size()) return s.size();
      const unsigned c = u(i + k);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return i + k;
    }
    i += need + 1;
  }
  return std::nullopt;
}

bytes utf8_encode(std::uint32_t cp) {
  bytes b;
  auto push = [&](unsigned v) { b.push_back(static_cast<std::byte>(v)); };
  if (cp < 0x80) push(cp);
  else if (cp < 0x800) { push(0xC0 | (cp >> 6)); push(0x80 | (cp & 0x3F)); }
  else if (cp < 0x10000) { push(0xE0 | (cp >> 12)); push(0x80 | ((cp >> 6) & 0x3F)); push(0x80 | (cp & 0x3F)); }
  else { push(0xF0 | (cp >> 18)); push(0x80 | ((cp >> 12) & 0x3F)); push(0x80 | ((cp >> 6) & 0x3F)); push(0x80 | (cp & 0x3F)); }
  return b;
}

struct utf8_case {
  std::string id;
  bytes payload;
  bool valid;
};

// One Autobahn 6.x case: the payload in one text frame. Valid: reported, nothing sent
// back. Invalid: 1007, failing as soon as the offending octet arrives (byte by byte),
// or at the end of the frame when the text only ends too early.
void run_utf8_case(const utf8_case& c) {
  INFO("Autobahn " << c.id << ": " << to_hex(c.payload, 80));
  const auto ref = utf8_fail_index(c.payload);
  REQUIRE_MESSAGE(ref.has_value() != c.valid, "the table and the reference validator disagree");
  const bytes wire = cf(OP_TEXT, c.payload);
  if (c.valid) {
    recorded_event e;
    e.type = event_type::text;
    e.data = c.payload;
    autobahn(wire, {e}, {});
    return;
  }
  autobahn_fails(wire, {}, protocol_error::invalid_utf8);
  const std::size_t header = wire.size() - c.payload.size();
  for (delivery m : both_modes) {
    connection conn(role::server, mode_cfg(m));
    auto res = run_ex(conn, wire, byte_by_byte());
    REQUIRE(!res.events.empty());
    CHECK(res.events.back().type == event_type::fail);
    CHECK(res.event_at.back() == header + std::min(*ref + 1, c.payload.size()));
  }
}

const std::string kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";  // κόσμε

}  // namespace

// ======================================================================================
// 1 Framing: text (1.1.x) and binary (1.2.x) messages of every length form

TEST_CASE("Autobahn 1.1.1-1.1.8 text messages of length 0, 125, 126, 127, 128, 65535, 65536, and 65536 in 997-octet chops") {
  const std::size_t lengths[] = {0, 125, 126, 127, 128, 65535, 65536};
  for (std::size_t i = 0; i < 7; ++i) {
    INFO("Autobahn 1.1." << i + 1 << ": " << lengths[i] << " octets");
    const std::string payload(lengths[i], '*');
    const bytes wire = text_frame(payload);
    CHECK(wire.size() == payload.size() + 2 + 4 + (lengths[i] < 126 ? 0 : lengths[i] < 65536 ? 2 : 8));
    std::vector<chunking> extra;
    if (lengths[i] == 65536) extra.push_back({chunking::fixed, 997, 0, 4});  // 1.1.8
    autobahn(wire, {ev_text(payload)}, {}, extra);
  }
}

TEST_CASE("Autobahn 1.2.1-1.2.8 binary messages of length 0, 125, 126, 127, 128, 65535, 65536, and 65536 in 997-octet chops") {
  const std::size_t lengths[] = {0, 125, 126, 127, 128, 65535, 65536};
  for (std::size_t i = 0; i < 7; ++i) {
    INFO("Autobahn 1.2." << i + 1 << ": " << lengths[i] << " octets");
    const bytes payload = filled(lengths[i], 0xfe);
    std::vector<chunking> extra;
    if (lengths[i] == 65536) extra.push_back({chunking::fixed, 997, 0, 4});  // 1.2.8
    autobahn(cf(OP_BINARY, payload), {ev_binary(payload)}, {}, extra);
  }
}

// ======================================================================================
// 2 Pings and pongs

TEST_CASE("Autobahn 2.1 ping without payload: an empty pong") {
  autobahn(cf(OP_PING, {}), {ev_ping({})}, {pong("")});
}

TEST_CASE("Autobahn 2.2 ping with a small text payload") {
  autobahn(ping_frame("Hello, world!"), {ev_ping(str("Hello, world!"))}, {pong("Hello, world!")});
}

TEST_CASE("Autobahn 2.3 ping with a small binary (non UTF-8) payload") {
  const bytes p = hex("00 ff fe fd fc fb 00 ff");
  autobahn(cf(OP_PING, p), {ev_ping(p)}, {pong_bytes(p)});
}

TEST_CASE("Autobahn 2.4 ping with a binary payload of 125 octets") {
  const bytes p = filled(125, 0xfe);
  autobahn(cf(OP_PING, p), {ev_ping(p)}, {pong_bytes(p)});
}

TEST_CASE("Autobahn 2.5 ping with a binary payload of 126 octets: 1002") {
  autobahn_fails(cf(OP_PING, filled(126, 0xfe)), {}, protocol_error::control_too_long);
}

TEST_CASE("Autobahn 2.6 ping with a 125-octet payload, sent in octet-wise chops") {
  const bytes p = filled(125, 0xfe);
  autobahn(cf(OP_PING, p), {ev_ping(p)}, {pong_bytes(p)}, {byte_by_byte(1), {chunking::fixed, 1, 0, 1}});
  for (delivery m : both_modes) {
    auto r = run_chops(m, pieces(cf(OP_PING, p), 1));
    for (std::size_t i = 0; i + 1 < r.size(); ++i) CHECK(r[i].events.empty());
    REQUIRE(r.back().events.size() == 1);
    CHECK(r.back().events[0] == ev_ping(p));
    CHECK(r.back().output_frames == 1);
  }
}

TEST_CASE("Autobahn 2.7 unsolicited pong without payload: reported, nothing sent") {
  autobahn(cf(OP_PONG, {}), {ev_pong({})}, {});
}

TEST_CASE("Autobahn 2.8 unsolicited pong with payload: reported, nothing sent") {
  autobahn(cf(OP_PONG, str("unsolicited pong payload")), {ev_pong(str("unsolicited pong payload"))}, {});
}

TEST_CASE("Autobahn 2.9 unsolicited pong, then a ping: one pong, for the ping") {
  autobahn(cat(cf(OP_PONG, str("unsolicited pong payload")), ping_frame("ping payload")),
           {ev_pong(str("unsolicited pong payload")), ev_ping(str("ping payload"))}, {pong("ping payload")});
}

TEST_CASE("Autobahn 2.10 / 2.11 ten pings: ten pongs in order (2.11: octet-wise chops)") {
  bytes wire;
  std::vector<recorded_event> ev;
  std::vector<reply> rep;
  for (int i = 0; i < 10; ++i) {
    const std::string p = "payload-" + std::to_string(i);
    wire = cat(wire, ping_frame(p));
    ev.push_back(ev_ping(str(p)));
    rep.push_back(pong(p));
  }
  autobahn(wire, ev, rep, {byte_by_byte(1)});
}

// ======================================================================================
// 3 Reserved bits (no extension negotiated)

TEST_CASE("Autobahn 3.1 small text message with RSV=1: 1002") {
  autobahn_fails(cf(OP_TEXT, str("Hello, world!"), true, 1), {}, protocol_error::reserved_bits);
}

TEST_CASE("Autobahn 3.2 small text message, then one with RSV=2, then a ping: the first reported, then 1002, no pong") {
  autobahn_fails(cat(text_frame("Hello, world!"), cf(OP_TEXT, str("Hello, world!"), true, 2), ping_frame("Hello, world!")),
                 {ev_text("Hello, world!")}, protocol_error::reserved_bits);
}

TEST_CASE("Autobahn 3.3 as 3.2 with RSV=3, one frame at a time") {
  const std::vector<bytes> chops = {text_frame("Hello, world!"), cf(OP_TEXT, str("Hello, world!"), true, 3),
                                    ping_frame("Hello, world!")};
  autobahn_fails(join(chops), {ev_text("Hello, world!")}, protocol_error::reserved_bits);
  for (delivery m : both_modes) {
    auto r = run_chops(m, chops);
    REQUIRE(r[0].events.size() == 1);
    CHECK(r[0].events[0] == ev_text("Hello, world!"));
    CHECK(fail_chop(r) == 1);
    CHECK(r[2].events.empty());
    CHECK(r[2].output_frames == 1);  // the close only
  }
}

TEST_CASE("Autobahn 3.4 as 3.2 with RSV=4 (RSV1, no permessage-deflate), in octet-wise chops") {
  autobahn_fails(cat(text_frame("Hello, world!"), cf(OP_TEXT, str("Hello, world!"), true, 4), ping_frame("Hello, world!")),
                 {ev_text("Hello, world!")}, protocol_error::reserved_bits, {}, {byte_by_byte(1)});
}

TEST_CASE("Autobahn 3.5 small binary message with RSV=5: 1002") {
  autobahn_fails(cf(OP_BINARY, hex("00 ff fe fd fc fb 00 ff"), true, 5), {}, protocol_error::reserved_bits);
}

TEST_CASE("Autobahn 3.6 ping with RSV=6: 1002, no pong") {
  autobahn_fails(cf(OP_PING, str("Hello, world!"), true, 6), {}, protocol_error::reserved_bits);
}

TEST_CASE("Autobahn 3.7 close with RSV=7: 1002") {
  autobahn_fails(cf(OP_CLOSE, close_body(1000), true, 7), {}, protocol_error::reserved_bits);
}

// ======================================================================================
// 4 Reserved opcodes

TEST_CASE("Autobahn 4.1.1-4.1.5 reserved non-control opcodes 3-7: 1002") {
  // 4.1.1: opcode 3; 4.1.2: opcode 4 with payload; 4.1.3-4.1.5: a text message, then
  // opcode 5/6/7 (6, 7 with payload), then a ping that must not be answered.
  autobahn_fails(cf(3, {}), {}, protocol_error::reserved_opcode);
  autobahn_fails(cf(4, str("reserved opcode payload")), {}, protocol_error::reserved_opcode);
  for (std::uint8_t op : {5, 6, 7}) {
    INFO("Autobahn 4.1." << op - 2 << ": opcode " << int(op));
    autobahn_fails(cat(text_frame("Hello, world!"), cf(op, op == 5 ? bytes{} : str("reserved opcode payload")),
                       ping_frame("Hello, world!")),
                   {ev_text("Hello, world!")}, protocol_error::reserved_opcode);
  }
}

TEST_CASE("Autobahn 4.2.1-4.2.5 reserved control opcodes 11-15: 1002") {
  autobahn_fails(cf(11, {}), {}, protocol_error::reserved_opcode);
  autobahn_fails(cf(12, str("reserved opcode payload")), {}, protocol_error::reserved_opcode);
  for (std::uint8_t op : {13, 14, 15}) {
    INFO("Autobahn 4.2." << op - 10 << ": opcode " << int(op));
    autobahn_fails(cat(text_frame("Hello, world!"), cf(op, op == 13 ? bytes{} : str("reserved opcode payload")),
                       ping_frame("Hello, world!")),
                   {ev_text("Hello, world!")}, protocol_error::reserved_opcode);
  }
}

// ======================================================================================
// 5 Fragmentation

TEST_CASE("Autobahn 5.1 a ping fragmented into 2 fragments: 1002") {
  autobahn_fails(cat(cf(OP_PING, str("fragment1"), false), cont_frame("fragment2")), {}, protocol_error::control_fragmented);
}

TEST_CASE("Autobahn 5.2 a pong fragmented into 2 fragments: 1002") {
  autobahn_fails(cat(cf(OP_PONG, str("fragment1"), false), cont_frame("fragment2")), {}, protocol_error::control_fragmented);
}

TEST_CASE("Autobahn 5.3 / 5.4 / 5.5 a text message in 2 fragments (whole, octet-wise chops, one frame at a time)") {
  const std::vector<bytes> chops = {text_frame("fragment1", false), cont_frame("fragment2")};
  autobahn(join(chops), {ev_text("fragment1fragment2")}, {}, {byte_by_byte(1)});
  for (delivery m : both_modes) {
    auto r = run_chops(m, chops);
    if (m == delivery::whole_messages) {
      CHECK(r[0].events.empty());
    } else {
      REQUIRE(r[0].events.size() == 1);
      CHECK(r[0].events[0] == ev_text("fragment1", false));
    }
    REQUIRE(!r[1].events.empty());
    CHECK(r[1].events.back().fin);
  }
}

TEST_CASE("Autobahn 5.6 / 5.7 / 5.8 a text message in 2 fragments with a ping in between (whole, octet-wise, frame-wise)") {
  const std::vector<bytes> chops = {text_frame("fragment1", false), ping_frame("pongme!"), cont_frame("fragment2")};
  autobahn(join(chops), {ev_ping(str("pongme!")), ev_text("fragment1fragment2")}, {pong("pongme!")}, {byte_by_byte(1)});
  for (delivery m : both_modes) {
    auto r = run_chops(m, chops);
    // 5.8: the pong goes out before the message's last fragment arrives.
    REQUIRE(!r[1].events.empty());
    CHECK(r[1].events.back() == ev_ping(str("pongme!")));
    CHECK(r[1].output_frames == 1);
  }
}

TEST_CASE("Autobahn 5.9 / 5.10 / 5.11 a continuation (FIN=1) with nothing to continue, then a text message: 1002") {
  const std::vector<bytes> chops = {cont_frame("non-continuation payload"), text_frame("Hello, world!")};
  autobahn_fails(join(chops), {}, protocol_error::unexpected_continuation, {}, {byte_by_byte(1)});
  for (delivery m : both_modes) CHECK(fail_chop(run_chops(m, chops)) == 0);
}

TEST_CASE("Autobahn 5.12 / 5.13 / 5.14 a continuation (FIN=0) with nothing to continue, then a text message: 1002") {
  const std::vector<bytes> chops = {cont_frame("non-continuation payload", false), text_frame("Hello, world!")};
  autobahn_fails(join(chops), {}, protocol_error::unexpected_continuation, {}, {byte_by_byte(1)});
  for (delivery m : both_modes) CHECK(fail_chop(run_chops(m, chops)) == 0);
}

TEST_CASE("Autobahn 5.15 a message in 2 fragments, then a continuation (FIN=0) with nothing to continue: the message, then 1002") {
  autobahn_fails(cat(text_frame("fragment1", false), cont_frame("fragment2"), cont_frame("fragment3", false),
                     text_frame("fragment4")),
                 {ev_text("fragment1fragment2")}, protocol_error::unexpected_continuation);
}

TEST_CASE("Autobahn 5.16 2x (continuation FIN=0 with nothing to continue, then a message in 2 fragments): 1002 at once") {
  const bytes once = cat(cont_frame("fragment1", false), text_frame("fragment2", false), cont_frame("fragment3"));
  autobahn_fails(cat(once, once), {}, protocol_error::unexpected_continuation);
}

TEST_CASE("Autobahn 5.17 2x (continuation FIN=1 with nothing to continue, then a message in 2 fragments): 1002 at once") {
  const bytes once = cat(cont_frame("fragment1"), text_frame("fragment2", false), cont_frame("fragment3"));
  autobahn_fails(cat(once, once), {}, protocol_error::unexpected_continuation);
}

TEST_CASE("Autobahn 5.18 a message in 2 fragments, both with opcode text: 1002") {
  autobahn_fails(cat(text_frame("fragment1", false), text_frame("fragment2")), {}, protocol_error::expected_continuation);
}

TEST_CASE("Autobahn 5.19 / 5.20 a message in 5 fragments with 2 pings between them (whole; 5.20 one frame at a time)") {
  const std::vector<bytes> chops = {text_frame("fragment1", false), cont_frame("fragment2", false),
                                    ping_frame("pongme 1!"),          cont_frame("fragment3", false),
                                    cont_frame("fragment4", false),   ping_frame("pongme 2!"),
                                    cont_frame("fragment5")};
  autobahn(join(chops), {ev_ping(str("pongme 1!")), ev_ping(str("pongme 2!")), ev_text("fragment1fragment2fragment3fragment4fragment5")},
           {pong("pongme 1!"), pong("pongme 2!")});
  for (delivery m : both_modes) {
    INFO(std::string(m == delivery::streaming ? "streaming" : "whole messages"));
    auto r = run_chops(m, chops);
    // Each pong is queued when its ping arrives, while the message is still open.
    REQUIRE(!r[2].events.empty());
    CHECK(r[2].events.back() == ev_ping(str("pongme 1!")));
    CHECK(r[2].output_frames == 1);
    REQUIRE(!r[5].events.empty());
    CHECK(r[5].events.back() == ev_ping(str("pongme 2!")));
    CHECK(r[5].output_frames == 2);
    REQUIRE(!r[6].events.empty());
    CHECK(r[6].events.back().fin);
    if (m == delivery::streaming) {
      // Streaming: each fragment is reported as it arrives.
      for (std::size_t i : {0, 1, 3, 4}) {
        REQUIRE(r[i].events.size() == 1);
        CHECK(!r[i].events[0].fin);
      }
    } else {
      CHECK(r[6].events.back() == ev_text("fragment1fragment2fragment3fragment4fragment5"));
    }
  }
}

// ======================================================================================
// 6 UTF-8

TEST_CASE("Autobahn 6.1.1-6.1.3 empty text messages and empty fragments") {
  autobahn(text_frame(""), {ev_text("")}, {});                                                      // 6.1.1
  autobahn(cat(text_frame("", false), cont_frame("", false), cont_frame("")), {ev_text("")}, {});    // 6.1.2
  autobahn(cat(text_frame("", false), cont_frame("middle frame payload", false), cont_frame("")),   // 6.1.3
           {ev_text("middle frame payload")}, {});
}

TEST_CASE("Autobahn 6.2.1-6.2.4 valid UTF-8 in one frame, in 2 fragments, and in 1-octet fragments") {
  const std::string msg = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!";
  REQUIRE(!utf8_fail_index(str(msg)));
  autobahn(text_frame(msg), {ev_text(msg)}, {});                                                    // 6.2.1
  const std::size_t cut = msg.find("\xc3\xbc");                                                      // a code point boundary
  autobahn(cat(text_frame(msg.substr(0, cut), false), cont_frame(msg.substr(cut))), {ev_text(msg)}, {});  // 6.2.2
  autobahn(join(octet_frames(str(msg))), {ev_text(msg)}, {});                                       // 6.2.3
  autobahn(join(octet_frames(str(kosme))), {ev_text(kosme)}, {});                                   // 6.2.4
}

TEST_CASE("Autobahn 6.3.1 / 6.3.2 invalid UTF-8 (a surrogate) in one frame, and in 1-octet fragments: 1007, fail fast") {
  const bytes bad = str(kosme + "\xed\xa0\x80" + "edited");
  autobahn_fails(cf(OP_TEXT, bad), {}, protocol_error::invalid_utf8);  // 6.3.1
  const auto frames = octet_frames(bad);
  autobahn_fails(join(frames), {}, protocol_error::invalid_utf8);      // 6.3.2
  for (delivery m : both_modes) CHECK(fail_chop(run_chops(m, frames)) == kosme.size() + 1);  // the frame with a0
}

TEST_CASE("Autobahn 6.4.1-6.4.4 fail fast: the connection fails on the part that makes the text invalid") {
  // 6.4.1 / 6.4.3: PART2 is U+110000 in UTF-8's scheme (f4 90 80 80); 6.4.2 / 6.4.4 send
  // only up to and including the octet making the payload invalid (f4 90). 6.4.1 / 6.4.2
  // send 3 frames, 6.4.3 / 6.4.4 one frame in 3 chops. Each must fail on the 2nd part,
  // before the 3rd is sent (Autobahn waits between the parts).
  const std::string part1 = kosme;
  struct variant {
    const char* id;
    std::string part2, part3;
    bool frames;
  } variants[] = {
      {"6.4.1", "\xf4\x90\x80\x80", "edited", true},
      {"6.4.2", "\xf4\x90", "\x80\x80" "edited", true},
      {"6.4.3", "\xf4\x90\x80\x80", "edited", false},
      {"6.4.4", "\xf4\x90", "\x80\x80" "edited", false},
  };
  for (const auto& v : variants) {
    INFO("Autobahn " << v.id);
    std::vector<bytes> chops;
    if (v.frames) {
      chops = {text_frame(part1, false), cont_frame(v.part2, false), cont_frame(v.part3)};
    } else {
      const bytes whole = text_frame(part1 + v.part2 + v.part3);
      const std::size_t h = whole.size() - (part1 + v.part2 + v.part3).size();
      const std::size_t a = h + part1.size(), b = a + v.part2.size();
      chops = {bytes(whole.begin(), whole.begin() + a), bytes(whole.begin() + a, whole.begin() + b),
               bytes(whole.begin() + b, whole.end())};
    }
    autobahn_fails(join(chops), {}, protocol_error::invalid_utf8);
    for (delivery m : both_modes) {
      auto r = run_chops(m, chops);
      CHECK(fail_chop(r) == 1);
      CHECK(r[1].output_frames == 1);  // the close goes out before part 3
      CHECK(r[2].events.empty());
      // Streaming: the valid first part was delivered before.
      if (m == delivery::streaming) {
        REQUIRE(!r[0].events.empty());
        CHECK(r[0].events[0].type == event_type::text);
        CHECK(!r[0].events[0].fin);
      }
    }
  }
}

namespace {

std::vector<utf8_case> kuhn_cases() {
  std::vector<utf8_case> v;
  auto add = [&](std::string id, std::string_view h, bool valid) { v.push_back({std::move(id), hex(h), valid}); };
  // 6.5 a valid sample
  add("6.5.1", "ce ba e1 bd b9 cf 83 ce bc ce b5", true);
  // 6.6 κόσμε cut after every octet: valid only at code point ends
  {
    const bytes k = str(kosme);
    for (std::size_t n = 1; n <= k.size(); ++n) {
      bytes p(k.begin(), k.begin() + n);
      v.push_back({"6.6." + std::to_string(n), p, !utf8_fail_index(p)});
    }
  }
  // 6.7 first possible sequence of a length; 6.8 5- and 6-octet forms
  add("6.7.1", "00", true);
  add("6.7.2", "c2 80", true);
  add("6.7.3", "e0 a0 80", true);
  add("6.7.4", "f0 90 80 80", true);
  add("6.8.1", "f8 88 80 80 80", false);
  add("6.8.2", "fc 84 80 80 80 80", false);
  // 6.9 last possible sequence of a length; 6.10 beyond
  add("6.9.1", "7f", true);
  add("6.9.2", "df bf", true);
  add("6.9.3", "ef bf bf", true);
  add("6.9.4", "f4 8f bf bf", true);
  add("6.10.1", "f7 bf bf bf", false);
  add("6.10.2", "fb bf bf bf bf", false);
  add("6.10.3", "fd bf bf bf bf bf", false);
  // 6.11 other boundary conditions
  add("6.11.1", "ed 9f bf", true);
  add("6.11.2", "ee 80 80", true);
  add("6.11.3", "ef bf bd", true);
  add("6.11.4", "f4 8f bf bf", true);
  add("6.11.5", "f4 90 80 80", false);
  // 6.12 unexpected continuation octets
  add("6.12.1", "80", false);
  add("6.12.2", "bf", false);
  add("6.12.3", "80 bf", false);
  add("6.12.4", "80 bf 80", false);
  add("6.12.5", "80 bf 80 bf", false);
  add("6.12.6", "80 bf 80 bf 80", false);
  add("6.12.7", "80 bf 80 bf 80 bf", false);
  {
    bytes all;
    for (unsigned b = 0x80; b <= 0xbf; ++b) all.push_back(static_cast<std::byte>(b));
    v.push_back({"6.12.8", all, false});
  }
  // 6.13 lonely start octets, each followed by a space
  {
    const std::pair<unsigned, unsigned> ranges[] = {{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}};
    int i = 1;
    for (auto [lo, hi] : ranges) {
      bytes p;
      for (unsigned b = lo; b <= hi; ++b) {
        p.push_back(static_cast<std::byte>(b));
        p.push_back(std::byte{0x20});
      }
      v.push_back({"6.13." + std::to_string(i++), p, false});
    }
  }
  // 6.14 sequences with the last continuation octet missing; 6.15 all of them together
  const char* missing[] = {"c0", "e0 80", "f0 80 80", "f8 80 80 80", "fc 80 80 80 80",
                           "df", "ef bf", "f7 bf bf", "fb bf bf bf", "fd bf bf bf bf"};
  std::string all_missing;
  for (int i = 0; i < 10; ++i) {
    add("6.14." + std::to_string(i + 1), missing[i], false);
    all_missing += std::string(missing[i]) + " ";
  }
  add("6.15.1", all_missing, false);
  // 6.16 impossible octets
  add("6.16.1", "fe", false);
  add("6.16.2", "ff", false);
  add("6.16.3", "fe fe ff ff", false);
  // 6.17 overlong '/'; 6.18 maximum overlong sequences; 6.19 overlong NUL
  add("6.17.1", "c0 af", false);
  add("6.17.2", "e0 80 af", false);
  add("6.17.3", "f0 80 80 af", false);
  add("6.17.4", "f8 80 80 80 af", false);
  add("6.17.5", "fc 80 80 80 80 af", false);
  add("6.18.1", "c1 bf", false);
  add("6.18.2", "e0 9f bf", false);
  add("6.18.3", "f0 8f bf bf", false);
  add("6.18.4", "f8 87 bf bf bf", false);
  add("6.18.5", "fc 83 bf bf bf bf", false);
  add("6.19.1", "c0 80", false);
  add("6.19.2", "e0 80 80", false);
  add("6.19.3", "f0 80 80 80", false);
  add("6.19.4", "f8 80 80 80 80", false);
  add("6.19.5", "fc 80 80 80 80 80", false);
  // 6.20 single UTF-16 surrogates; 6.21 paired surrogates (still invalid in UTF-8)
  const char* single[] = {"ed a0 80", "ed ad bf", "ed ae 80", "ed af bf", "ed b0 80", "ed be 80", "ed bf bf"};
  for (int i = 0; i < 7; ++i) add("6.20." + std::to_string(i + 1), single[i], false);
  const char* paired[] = {"ed a0 80 ed b0 80", "ed a0 80 ed bf bf", "ed ad bf ed b0 80", "ed ad bf ed bf bf",
                          "ed ae 80 ed b0 80", "ed ae 80 ed bf bf", "ed af bf ed b0 80", "ed af bf ed bf bf"};
  for (int i = 0; i < 8; ++i) add("6.21." + std::to_string(i + 1), paired[i], false);
  // 6.22 noncharacters U+nFFFE and U+nFFFF of all 17 planes: valid UTF-8
  for (std::uint32_t plane = 0, i = 1; plane <= 16; ++plane)
    for (std::uint32_t low : {0xFFFEu, 0xFFFFu})
      v.push_back({"6.22." + std::to_string(i++), utf8_encode(plane * 0x10000 + low), true});
  // 6.23 specials U+FFF9..U+FFFF (U+FFFD the replacement character): valid
  for (std::uint32_t cp = 0xFFF9, i = 1; cp <= 0xFFFF; ++cp)
    v.push_back({"6.23." + std::to_string(i++), utf8_encode(cp), true});
  return v;
}

}  // namespace

TEST_CASE("Autobahn 6.5-6.23 Markus Kuhn's UTF-8 decoder test, one text frame per case (invalid: 1007, fail fast)") {
  const auto cases = kuhn_cases();
  CHECK(cases.size() > 120);
  std::size_t valid = 0;
  for (const auto& c : cases) {
    run_utf8_case(c);
    valid += c.valid;
  }
  CHECK(valid > 50);
}

TEST_CASE("Autobahn 6.x the same payloads in 1-octet fragments: invalid fails on the fragment with the offending octet") {
  for (const auto& c : kuhn_cases()) {
    if (c.payload.size() > 16) continue;
    INFO("Autobahn " << c.id << " fragmented: " << to_hex(c.payload));
    const auto frames = octet_frames(c.payload);
    const auto ref = utf8_fail_index(c.payload);
    if (c.valid) {
      recorded_event e;
      e.type = event_type::text;
      e.data = c.payload;
      check_all_chunkings(config{}, role::server, join(frames), {e});
    } else {
      check_all_chunkings(config{}, role::server, join(frames), {ev_fail(protocol_error::invalid_utf8)});
      CHECK(fail_chop(run_chops(delivery::whole_messages, frames)) == std::min(*ref, c.payload.size() - 1));
    }
  }
}

// ======================================================================================
// 7 Close

TEST_CASE("Autobahn 7.1.1 a message, then a close: both reported, the close echoed") {
  autobahn(cat(text_frame("Hello World!"), cf(OP_CLOSE, close_body(1000))), {ev_text("Hello World!"), ev_close(1000)},
           {close_reply(1000)});
}

TEST_CASE("Autobahn 7.1.2 two closes: the second ignored") {
  autobahn(cat(cf(OP_CLOSE, close_body(1000)), cf(OP_CLOSE, close_body(1000))), {ev_close(1000)}, {close_reply(1000)});
}

TEST_CASE("Autobahn 7.1.3 a ping after the close: ignored, no pong") {
  autobahn(cat(cf(OP_CLOSE, close_body(1000)), ping_frame("Hello World!")), {ev_close(1000)}, {close_reply(1000)});
}

TEST_CASE("Autobahn 7.1.4 a text message after the close: ignored") {
  autobahn(cat(cf(OP_CLOSE, close_body(1000)), text_frame("Hello World!")), {ev_close(1000)}, {close_reply(1000)});
}

TEST_CASE("Autobahn 7.1.5 a fragment, the close, the last fragment: the close echoed, the message dropped") {
  autobahn(cat(text_frame("fragment1", false), cf(OP_CLOSE, close_body(1000)), cont_frame("fragment2")), {ev_close(1000)},
           {close_reply(1000)});
}

TEST_CASE("Autobahn 7.1.6 a 256 KiB message, the close, a ping: the message and the close, no pong") {
  std::string big;
  for (int i = 0; i < 26214; ++i) big += "BAsd7&jh23";
  autobahn(cat(text_frame(big), cf(OP_CLOSE, close_body(1000)), ping_frame("Hello World!")),
           {ev_text(big), ev_close(1000)}, {close_reply(1000)});
}

TEST_CASE("Autobahn 7.3.1 a close without payload: reported as 1005, answered with an empty close") {
  autobahn(cf(OP_CLOSE, {}), {ev_close(1005)}, {close_reply(1005)});
}

TEST_CASE("Autobahn 7.3.2 a close with a 1-octet payload: 1002") {
  autobahn_fails(cf(OP_CLOSE, hex("00")), {}, protocol_error::bad_close_payload);
}

TEST_CASE("Autobahn 7.3.3 a close with a code only (1000)") {
  autobahn(cf(OP_CLOSE, close_body(1000)), {ev_close(1000)}, {close_reply(1000)});
}

TEST_CASE("Autobahn 7.3.4 a close with a code and a reason") {
  autobahn(cf(OP_CLOSE, close_body(1000, "Hello World!")), {ev_close(1000, "Hello World!")}, {close_reply(1000)});
}

TEST_CASE("Autobahn 7.3.5 a close with a reason of the maximum length (123)") {
  const std::string reason(123, '*');
  autobahn(cf(OP_CLOSE, close_body(1000, reason)), {ev_close(1000, reason)}, {close_reply(1000)});
}

TEST_CASE("Autobahn 7.3.6 a close with a reason that is too long (124): 1002") {
  autobahn_fails(cf(OP_CLOSE, close_body(1000, std::string(124, '*'))), {}, protocol_error::control_too_long);
}

TEST_CASE("Autobahn 7.5.1 a close with a reason that is not UTF-8: 1007") {
  autobahn_fails(cf(OP_CLOSE, cat(close_body(1000), str(kosme + "\xed\xa0\x80" + "edited"))), {},
                 protocol_error::invalid_close_reason);
}

TEST_CASE("Autobahn 7.7.1-7.7.13 valid close codes: reported and echoed") {
  const std::uint16_t codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
  for (std::size_t i = 0; i < std::size(codes); ++i) {
    INFO("Autobahn 7.7." << i + 1 << ": code " << codes[i]);
    autobahn(cf(OP_CLOSE, close_body(codes[i])), {ev_close(codes[i])}, {close_reply(codes[i])});
  }
}

TEST_CASE("Autobahn 7.9.x invalid close codes: 1002") {
  // 0, 999, 1004-1006, 1015, 1016, 1100, 2000, 2999. (Older Autobahn versions also listed
  // 1012-1014, since registered with IANA, which this library accepts: test_close.cpp.)
  const std::uint16_t codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999};
  for (std::uint16_t code : codes) {
    INFO("code " << code);
    autobahn_fails(cf(OP_CLOSE, close_body(code)), {}, protocol_error::bad_close_code);
  }
}

TEST_CASE("Autobahn 7.13.1 / 7.13.2 close codes 5000 and 65535: 1002") {
  autobahn_fails(cf(OP_CLOSE, close_body(5000)), {}, protocol_error::bad_close_code);
  autobahn_fails(cf(OP_CLOSE, close_body(65535)), {}, protocol_error::bad_close_code);
  autobahn_fails(cf(OP_CLOSE, close_body(5000, "reason")), {}, protocol_error::bad_close_code);
}
