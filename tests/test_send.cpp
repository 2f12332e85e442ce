// The send side: frame encoding (RFC 6455 §5.2), client masking (§5.3), control frame
// rules (§5.5), close codes (§7.4), UTF-8 (§8.1), fragmentation (§5.4), backpressure,
// prepared messages, and round trips through a peer connection under every chunking.
#include "harness.hpp"

using namespace wst;

namespace {

constexpr role both_roles[] = {role::server, role::client};
const char* role_name(role r) { return r == role::server ? "server" : "client"; }
role peer_of(role r) { return r == role::server ? role::client : role::server; }

std::vector<parsed_frame> frames_of(const connection& c) {
  std::size_t rest = 0;
  auto f = parse_frames(c.pending_output(), &rest);
  CHECK(rest == 0);
  return f;
}
void drain(connection& c) { c.consume_output(c.pending_output().size()); }

// A client config with a deterministic random source.
struct client_setup {
  counting_random rnd;
  config cfg;
  client_setup() { rnd.install(cfg); }
};

}  // namespace

// ======================================================================================
// §5.2 encoding

TEST_CASE("RFC 6455 §5.2 server output is unmasked with minimal length forms (0, 125, 126, 65535, 65536)") {
  struct row { std::size_t n; const char* head; };
  for (const row& rw : {row{0, "82 00"}, row{1, "82 01"}, row{125, "82 7D"}, row{126, "82 7E 00 7E"},
                        row{127, "82 7E 00 7F"}, row{65535, "82 7E FF FF"},
                        row{65536, "82 7F 00 00 00 00 00 01 00 00"}, row{70000, "82 7F 00 00 00 00 00 01 11 70"}}) {
    INFO("length " << rw.n);
    connection c(role::server);
    const bytes payload = pattern(rw.n);
    REQUIRE(c.send_binary(payload) == send_result::ok);
    CHECK(as_bytes(c.pending_output()) == cat(hex(rw.head), payload));
    CHECK(c.want_write());
  }
}

TEST_CASE("RFC 6455 §5.2 server text, ping, pong and close frames: exact bytes") {
  connection c(role::server);
  REQUIRE(c.send_text("Hello") == send_result::ok);
  REQUIRE(c.send_ping(str("Hello")) == send_result::ok);
  REQUIRE(c.send_pong(str("Hello")) == send_result::ok);
  REQUIRE(c.send_ping() == send_result::ok);
  REQUIRE(c.close(1000, "bye") == send_result::ok);
  CHECK(as_bytes(c.pending_output()) == hex("81 05 48 65 6c 6c 6f"
                                            "89 05 48 65 6c 6c 6f"
                                            "8a 05 48 65 6c 6c 6f"
                                            "89 00"
                                            "88 05 03 e8 62 79 65"));
}

TEST_CASE("ws6455 output: consume_output takes a prefix; want_write follows") {
  connection c(role::server);
  CHECK(!c.want_write());
  CHECK(c.pending_output().empty());
  REQUIRE(c.send_text("abc") == send_result::ok);
  REQUIRE(c.send_text("defg") == send_result::ok);
  const bytes all = as_bytes(c.pending_output());
  CHECK(all == hex("81 03 61 62 63 81 04 64 65 66 67"));
  c.consume_output(3);
  CHECK(as_bytes(c.pending_output()) == bytes(all.begin() + 3, all.end()));
  REQUIRE(c.send_text("h") == send_result::ok);
  CHECK(as_bytes(c.pending_output()) == cat(bytes(all.begin() + 3, all.end()), hex("81 01 68")));
  drain(c);
  CHECK(!c.want_write());
  CHECK(c.pending_output().empty());
}

TEST_CASE("ws6455 output: pinned bytes keep their address while more is queued and the buffer grows") {
  connection c(role::server);
  REQUIRE(c.send_text("first") == send_result::ok);
  c.consume_output(2);  // a partial write before: the pinned range starts mid-buffer
  c.pin_output();
  const auto pinned = c.pending_output();
  const bytes before = as_bytes(pinned);
  // Enough to grow the buffer several times, and to make a slide to the front tempting.
  const std::string big(100'000, 'x');
  for (int i = 0; i < 4; ++i) REQUIRE(c.send_text(big) == send_result::ok);
  // The kernel would still read these addresses: same bytes there (ASan: not freed).
  CHECK(as_bytes(pinned) == before);
  CHECK(bytes(c.pending_output().begin(), c.pending_output().begin() + before.size()) == before);
  c.consume_output(before.size());  // the asynchronous write completed
  CHECK(c.pending_output().size() == 4 * (big.size() + 10));  // 127 + 64-bit length
  // Without a pin, a slide or a grow may move pending bytes: only the contents count.
  drain(c);
  CHECK(c.pending_output().empty());
}

TEST_CASE("ws6455 output: after a short asynchronous write the next write's bytes survive more growth") {
  connection c(role::server);
  const std::string big(100'000, 'x');
  REQUIRE(c.send_text("first frame") == send_result::ok);
  c.pin_output();  // write 1 reads the first buffer
  REQUIRE(c.send_text(big) == send_result::ok);  // grows: the first buffer is kept for write 1
  c.consume_output(5);  // write 1 completed short: bytes of it are still pending
  c.pin_output();  // write 2 reads the rest, from the second buffer
  const auto inflight = c.pending_output();
  const bytes expect = as_bytes(inflight);
  for (int i = 0; i < 4; ++i) REQUIRE(c.send_text(big) == send_result::ok);  // grows again
  // The kernel still reads write 2's addresses (ASan: the second buffer is not freed).
  CHECK(as_bytes(inflight) == expect);
  c.consume_output(inflight.size());
  drain(c);
  CHECK(c.pending_output().empty());
}

TEST_CASE("ws6455 output: an asynchronous writer with retain_storage alternates two buffers, no growth") {
  config cfg;
  cfg.retain_storage = true;
  connection c(role::server, cfg);
  const std::string big(300'000, 'y');
  std::size_t steady = 0;
  // Always one write in flight, as io_uring does: pin, queue the next message, then
  // the write completes; the pinned bytes never move (ASan checks the old buffer).
  for (int round = 0; round < 12; ++round) {
    REQUIRE(c.send_text(big) == send_result::ok);
    c.pin_output();
    const auto inflight = c.pending_output();
    const bytes expect = as_bytes(inflight);
    REQUIRE(c.send_text(big) == send_result::ok);
    CHECK(as_bytes(inflight) == expect);
    c.consume_output(inflight.size());
    if (round == 4) steady = c.memory_usage();
    if (round > 4) CHECK(c.memory_usage() == steady);  // no new buffer, no doubling
  }
  c.release_storage();  // idle: nothing pinned, drained or not, the spare goes
  CHECK(c.memory_usage() < steady);
}

// ======================================================================================
// §8.1 UTF-8 on send

TEST_CASE("RFC 6455 §8.1 send_text refuses invalid UTF-8 unless trusted; nothing is queued") {
  for (const char* h : {"ff", "c0 80", "ed a0 80", "f4 90 80 80", "e2 82", "80", "61 62 f5"}) {
    INFO(h);
    const bytes b = hex(h);
    const std::string_view s(reinterpret_cast<const char*>(b.data()), b.size());
    connection c(role::server);
    CHECK(c.send_text(s) == send_result::invalid_utf8);
    CHECK(c.pending_output().empty());
    CHECK(c.state() == connection_state::open);
    CHECK(c.send_text(s, true) == send_result::ok);
    CHECK(as_bytes(c.pending_output()) == cat(frame(OP_TEXT, b)));
  }
  connection c(role::server);
  const std::string ok = utf8_text(1000);
  CHECK(c.send_text(ok) == send_result::ok);
  CHECK(as_bytes(c.pending_output()) == frame(OP_TEXT, str(ok)));
}

// ======================================================================================
// §5.5 control frames on send

TEST_CASE("RFC 6455 §5.5 ping/pong payloads up to 125 bytes; 126 is control_too_long") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r);
    CHECK(c.send_ping(pattern(125)) == send_result::ok);
    CHECK(c.send_pong(pattern(125)) == send_result::ok);
    const bytes before = as_bytes(c.pending_output());
    CHECK(c.send_ping(pattern(126)) == send_result::control_too_long);
    CHECK(c.send_pong(pattern(126)) == send_result::control_too_long);
    CHECK(c.send_ping(pattern(70000)) == send_result::control_too_long);
    CHECK(as_bytes(c.pending_output()) == before);
    auto frames = frames_of(c);
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].opcode == OP_PING);
    CHECK(frames[0].payload == pattern(125));
    CHECK(frames[1].opcode == OP_PONG);
    CHECK(frames[1].payload == pattern(125));
  }
}

// ======================================================================================
// §7.4 close codes on send

TEST_CASE("RFC 6455 §7.4 close() refuses codes that may not be sent; state and output unchanged") {
  for (std::uint16_t code : {0, 1, 999, 1004, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    INFO("code " << code);
    connection c(role::server);
    CHECK(c.close(code) == send_result::invalid_close_code);
    CHECK(c.state() == connection_state::open);
    CHECK(c.pending_output().empty());
    CHECK(c.send_text("still open") == send_result::ok);
  }
}

TEST_CASE("RFC 6455 §7.4 close() with valid codes puts them on the wire") {
  for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
                             4000, 4999}) {
    INFO("code " << code);
    connection c(role::server);
    CHECK(c.close(code, "why") == send_result::ok);
    CHECK(c.state() == connection_state::closing);
    auto frames = frames_of(c);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].payload == close_body(code, "why"));
  }
}

TEST_CASE("RFC 6455 §7.4 close(1005) sends a close without a body") {
  for (role r : both_roles) {
    connection c(r);
    CHECK(c.close(1005) == send_result::ok);
    CHECK(c.state() == connection_state::closing);
    auto frames = frames_of(c);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].opcode == OP_CLOSE);
    CHECK(frames[0].payload.empty());
  }
}

TEST_CASE("RFC 6455 §5.5.1 close reason must be UTF-8 and needs a code") {
  connection c(role::server);
  CHECK(c.close(1000, "\xff") == send_result::invalid_utf8);
  CHECK(c.close(1000, "\xe2\x82") == send_result::invalid_utf8);
  CHECK(c.close(1005, "reason without a code") == send_result::invalid_close_code);
  CHECK(c.state() == connection_state::open);
  CHECK(c.pending_output().empty());
  CHECK(c.close(1000, "\xe2\x82\xac") == send_result::ok);
}

TEST_CASE("RFC 6455 §5.5.1 close reason: 123 bytes fit, 124 are control_too_long") {
  connection c(role::server);
  CHECK(c.close(1000, std::string(124, 'x')) == send_result::control_too_long);
  CHECK(c.state() == connection_state::open);
  CHECK(c.pending_output().empty());
  CHECK(c.close(1000, std::string(123, 'x')) == send_result::ok);
  auto frames = frames_of(c);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].payload.size() == 125);
  CHECK(frames[0].header_bytes == hex("88 7D"));
}

// ======================================================================================
// §5.5.1 nothing after close

TEST_CASE("RFC 6455 §5.5.1 after close(), data sends are refused with closed") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r);
    REQUIRE(c.close(1000) == send_result::ok);
    const bytes out = as_bytes(c.pending_output());
    CHECK(c.send_text("x") == send_result::closed);
    CHECK(c.send_binary(str("x")) == send_result::closed);
    CHECK(c.send_fragment(opcode::text, str("x"), false) == send_result::closed);
    CHECK(c.send_fragment(opcode::binary, str("x"), true) == send_result::closed);
    CHECK(c.close(1000) == send_result::closed);  // one close only
    if (r == role::server) CHECK(c.send_prepared(prepared_message::text("x")) == send_result::closed);
    CHECK(as_bytes(c.pending_output()) == out);
  }
}

TEST_CASE("RFC 6455 §5.5.1 after the peer's close or a failure, sends are refused with closed") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection a(r);
    run(a, peer_frame(r, OP_CLOSE, close_body(1000)));
    REQUIRE(a.state() == connection_state::closed);
    const bytes out_a = as_bytes(a.pending_output());
    CHECK(a.send_text("x") == send_result::closed);
    CHECK(a.send_binary({}) == send_result::closed);
    CHECK(a.close() == send_result::closed);
    CHECK(as_bytes(a.pending_output()) == out_a);

    connection b(r);
    run(b, peer_frame(r, 3, {}));
    REQUIRE(b.state() == connection_state::failed);
    const bytes out_b = as_bytes(b.pending_output());
    CHECK(b.send_text("x") == send_result::closed);
    CHECK(b.send_ping() == send_result::closed);
    CHECK(b.close() == send_result::closed);
    CHECK(as_bytes(b.pending_output()) == out_b);
  }
}

// ======================================================================================
// §5.4 fragmented sends

TEST_CASE("RFC 6455 §5.4 send_fragment: start, continue, finish; control frames in between") {
  connection c(role::server);
  CHECK(c.send_fragment(opcode::continuation, str("x"), true) == send_result::no_message_open);
  CHECK(c.send_fragment(opcode::continuation, str("x"), false) == send_result::no_message_open);
  // Control opcodes cannot be fragments (§5.5).
  CHECK(c.send_fragment(opcode::ping, str("x"), true) != send_result::ok);
  CHECK(c.send_fragment(opcode::close, str("x"), false) != send_result::ok);
  CHECK(c.pending_output().empty());

  REQUIRE(c.send_fragment(opcode::text, str("Hel"), false) == send_result::ok);
  CHECK(c.send_text("other") == send_result::message_in_progress);
  CHECK(c.send_binary(str("other")) == send_result::message_in_progress);
  REQUIRE(c.send_ping(str("p")) == send_result::ok);
  REQUIRE(c.send_fragment(opcode::continuation, {}, false) == send_result::ok);
  REQUIRE(c.send_fragment(opcode::continuation, str("lo"), true) == send_result::ok);
  CHECK(c.send_fragment(opcode::continuation, str("x"), true) == send_result::no_message_open);
  CHECK(as_bytes(c.pending_output()) == hex("01 03 48 65 6c"
                                            "89 01 70"
                                            "00 00"
                                            "80 02 6c 6f"));
  CHECK(c.send_text("next") == send_result::ok);
  // A one-call fragmented message (fin on the first call) is a plain frame.
  REQUIRE(c.send_fragment(opcode::binary, str("b"), true) == send_result::ok);
  auto frames = frames_of(c);
  REQUIRE(frames.size() == 6);
  CHECK(frames[5].header_bytes == hex("82 01"));
}

TEST_CASE("RFC 6455 §5.4 send_fragment validates UTF-8 across fragments") {
  connection c(role::server);
  REQUIRE(c.send_fragment(opcode::text, hex("e2 82"), false) == send_result::ok);
  CHECK(c.send_fragment(opcode::continuation, hex("41"), false) == send_result::invalid_utf8);
  REQUIRE(c.send_fragment(opcode::continuation, hex("ac"), true) == send_result::ok);
  CHECK(frames_of(c).size() == 2);

  connection d(role::server);
  REQUIRE(d.send_fragment(opcode::text, hex("f0 9f"), false) == send_result::ok);
  CHECK(d.send_fragment(opcode::continuation, hex("98"), true) == send_result::invalid_utf8);  // ends mid-code-point
  CHECK(frames_of(d).size() == 1);
  // Another type while a message is open; the same type continues it.
  CHECK(d.send_fragment(opcode::binary, str("x"), false) == send_result::message_in_progress);
  CHECK(d.send_fragment(opcode::text, hex("98 80"), true) == send_result::ok);
  auto df = frames_of(d);
  REQUIRE(df.size() == 2);
  CHECK(df[1].header_bytes == hex("80 02"));  // sent as a continuation

  connection e(role::server);
  CHECK(e.send_fragment(opcode::text, hex("ff"), false) == send_result::invalid_utf8);
  CHECK(e.pending_output().empty());
  // A refused first fragment opens nothing.
  CHECK(e.send_fragment(opcode::continuation, str("a"), true) == send_result::no_message_open);
  // Binary fragments are not validated.
  CHECK(e.send_fragment(opcode::binary, hex("ff"), false) == send_result::ok);
  CHECK(e.send_fragment(opcode::continuation, hex("fe"), true) == send_result::ok);
}

TEST_CASE("RFC 6455 §5.4 close() during a fragmented send; the message cannot continue") {
  connection c(role::server);
  REQUIRE(c.send_fragment(opcode::binary, str("a"), false) == send_result::ok);
  REQUIRE(c.close(1001) == send_result::ok);
  CHECK(c.send_fragment(opcode::continuation, str("b"), true) == send_result::closed);
  auto frames = frames_of(c);
  REQUIRE(frames.size() == 2);
  CHECK(frames[1].opcode == OP_CLOSE);
}

// ======================================================================================
// Backpressure

TEST_CASE("ws6455 backpressure: past max_write_buffer_size a send is refused and nothing queued") {
  config cfg;
  cfg.max_write_buffer_size = 1000;
  connection c(role::server, cfg);
  REQUIRE(c.send_binary(pattern(600)) == send_result::ok);
  const bytes out = as_bytes(c.pending_output());
  CHECK(out.size() == 604);
  CHECK(c.send_binary(pattern(600)) == send_result::backpressure);
  CHECK(c.send_text(utf8_text(600)) == send_result::backpressure);
  CHECK(c.send_fragment(opcode::binary, pattern(600), false) == send_result::backpressure);
  CHECK(as_bytes(c.pending_output()) == out);
  // A refused fragment opened nothing.
  CHECK(c.send_fragment(opcode::continuation, {}, true) == send_result::no_message_open);
  // Small frames still fit.
  CHECK(c.send_binary(pattern(100)) == send_result::ok);
  // Partially draining is enough once the total fits again.
  c.consume_output(400);
  CHECK(c.send_binary(pattern(600)) == send_result::ok);
  drain(c);
  CHECK(c.send_binary(pattern(900)) == send_result::ok);
}

TEST_CASE("ws6455 backpressure: the limit counts the frame's real header, to the byte") {
  for (role r : both_roles) {
    INFO(role_name(r));
    client_setup cs;
    cs.cfg.max_write_buffer_size = 100;
    connection c(r, cs.cfg);
    const std::size_t header = r == role::server ? 2 : 6;
    // A frame of exactly the limit fits; one byte more does not.
    CHECK(c.send_binary(pattern(100 - header + 1)) == send_result::backpressure);
    CHECK(c.send_binary(pattern(100 - header)) == send_result::ok);
    CHECK(c.pending_output().size() == 100);
    CHECK(c.send_binary({}) == send_result::backpressure);
    drain(c);
    const prepared_message m(opcode::binary, pattern(98));
    if (r == role::server) {
      CHECK(c.send_prepared(m) == send_result::ok);  // 2 + 98: the same rule as send_binary
      CHECK(c.send_prepared(m) == send_result::backpressure);
    }
  }
}

TEST_CASE("ws6455 send_fragment refuses control opcodes with not_a_data_opcode") {
  connection c(role::server);
  for (opcode op : {opcode::ping, opcode::pong, opcode::close}) {
    CHECK(c.send_fragment(op, pattern(3), true) == send_result::not_a_data_opcode);
  }
  CHECK(c.pending_output().empty());
}

TEST_CASE("ws6455 backpressure: the client's masked frames are refused the same way") {
  client_setup cs;
  cs.cfg.max_write_buffer_size = 1000;
  connection c(role::client, cs.cfg);
  REQUIRE(c.send_binary(pattern(600)) == send_result::ok);
  CHECK(c.pending_output().size() == 608);
  CHECK(c.send_binary(pattern(600)) == send_result::backpressure);
  CHECK(c.pending_output().size() == 608);
}

TEST_CASE("ws6455 backpressure: observations on control frames and close when full") {
  config cfg;
  cfg.max_write_buffer_size = 170;
  connection c(role::server, cfg);
  REQUIRE(c.send_binary(pattern(150)) == send_result::ok);  // 152 bytes pending
  const auto ping = c.send_ping(pattern(20));
  const auto cl = c.close(1000);
  MESSAGE("ping when the buffer is full: " << describe(ping) << "; close: " << describe(cl));
  CHECK((ping == send_result::ok || ping == send_result::backpressure));
  // A close must always be possible, or the connection can never end cleanly.
  CHECK(cl == send_result::ok);
  CHECK(c.state() == connection_state::closing);
}

// ======================================================================================
// §5.3 client masking

TEST_CASE("RFC 6455 §5.3 client frames are masked with keys from cfg.random, a fresh key per frame") {
  client_setup cs;
  connection c(role::client, cs.cfg);
  for (int i = 0; i < 20; ++i) REQUIRE(c.send_text("frame " + std::to_string(i)) == send_result::ok);
  REQUIRE(c.send_ping(str("p")) == send_result::ok);
  REQUIRE(c.send_binary({}) == send_result::ok);
  REQUIRE(c.close(1000) == send_result::ok);
  CHECK(cs.rnd.calls > 0);
  CHECK(cs.rnd.bytes_drawn >= 4);
  auto frames = frames_of(c);
  REQUIRE(frames.size() == 23);
  // Every key comes from the injected source: regenerate its stream and find each key.
  counting_random again;
  bytes stream(std::max<std::size_t>(cs.rnd.bytes_drawn, 4));
  counting_random::fill(&again, stream);
  std::vector<mask_key> keys;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    INFO("frame " << i);
    CHECK(frames[i].masked);
    CHECK(frames[i].minimal_length);
    keys.push_back(frames[i].key);
    bool found = false;
    for (std::size_t p = 0; p + 4 <= stream.size() && !found; ++p)
      found = std::equal(frames[i].key.begin(), frames[i].key.end(), stream.begin() + static_cast<std::ptrdiff_t>(p),
                         [](std::uint8_t k, std::byte s) { return k == static_cast<std::uint8_t>(s); });
    CHECK(found);
    if (i < 20) CHECK(frames[i].payload == str("frame " + std::to_string(i)));
  }
  std::sort(keys.begin(), keys.end());
  CHECK(std::adjacent_find(keys.begin(), keys.end()) == keys.end());  // all different
}

TEST_CASE("RFC 6455 §5.3 client output is deterministic with a deterministic source") {
  client_setup a, b;
  connection ca(role::client, a.cfg), cb(role::client, b.cfg);
  for (auto* c : {&ca, &cb}) {
    REQUIRE(c->send_text("Hello") == send_result::ok);
    REQUIRE(c->send_binary(pattern(70000)) == send_result::ok);
    REQUIRE(c->send_pong(str("x")) == send_result::ok);
  }
  CHECK(as_bytes(ca.pending_output()) == as_bytes(cb.pending_output()));
  auto frames = frames_of(ca);
  REQUIRE(frames.size() == 3);
  CHECK(frames[0].header_bytes.size() == 6);
  CHECK(frames[1].header_bytes.size() == 14);
  CHECK(as_bytes(frames[0].header_bytes).size() == 6);
  CHECK((static_cast<std::uint8_t>(frames[0].header_bytes[1]) & 0x80) != 0);
  CHECK(frames[1].payload == pattern(70000));
}

TEST_CASE("RFC 6455 §5.3 client masking with the default (OpenSSL) source") {
  connection c(role::client);
  for (int i = 0; i < 8; ++i) REQUIRE(c.send_binary(pattern(10)) == send_result::ok);
  auto frames = frames_of(c);
  REQUIRE(frames.size() == 8);
  std::vector<mask_key> keys;
  for (auto& f : frames) {
    CHECK(f.masked);
    CHECK(f.payload == pattern(10));
    keys.push_back(f.key);
  }
  std::sort(keys.begin(), keys.end());
  CHECK(std::unique(keys.begin(), keys.end()) - keys.begin() >= 7);
}

TEST_CASE("RFC 6455 §5.3 client frame lengths are minimal with the mask bit set") {
  struct row { std::size_t n; const char* head; };
  for (const row& rw : {row{0, "82 80"}, row{125, "82 FD"}, row{126, "82 FE 00 7E"}, row{65535, "82 FE FF FF"},
                        row{65536, "82 FF 00 00 00 00 00 01 00 00"}}) {
    INFO("length " << rw.n);
    client_setup cs;
    connection c(role::client, cs.cfg);
    REQUIRE(c.send_binary(pattern(rw.n)) == send_result::ok);
    auto frames = frames_of(c);
    REQUIRE(frames.size() == 1);
    const bytes h = hex(rw.head);
    REQUIRE(frames[0].header_bytes.size() == h.size() + 4);
    CHECK(bytes(frames[0].header_bytes.begin(), frames[0].header_bytes.begin() + static_cast<std::ptrdiff_t>(h.size())) == h);
    CHECK(frames[0].payload == pattern(rw.n));
  }
}

// ======================================================================================
// Round trips: what one role sends, the other receives, under every chunking

TEST_CASE("RFC 6455 §5 round trips client->server and server->client (0 B to 1 MiB)") {
  for (role sender : both_roles) {
    for (std::size_t n : {0u, 1u, 125u, 126u, 127u, 65535u, 65536u, 1u << 20}) {
      INFO(role_name(sender) << " sends " << n << " bytes");
      client_setup cs;
      connection tx(sender, sender == role::client ? cs.cfg : config{});
      const bytes b = pattern(n, 3);
      const std::string t = utf8_text(n);
      REQUIRE(tx.send_binary(b) == send_result::ok);
      REQUIRE(tx.send_text(t) == send_result::ok);
      const bytes wire = as_bytes(tx.pending_output());
      std::vector<chunking> chs = all_chunkings(wire.size());
      if (n >= (1u << 20)) chs = {whole_input(), byte_by_byte(), random_chunks(1), random_chunks(2, 1)};
      auto res = check_all_chunkings(config{}, peer_of(sender), wire, {ev_binary(b), ev_text(t)}, false, chs);
      CHECK(res.output.empty());
      config sc;
      sc.mode = delivery::streaming;
      check_all_chunkings(sc, peer_of(sender), wire, {ev_binary(b), ev_text(t)}, false,
                          {whole_input(), random_chunks(3), random_chunks(4, 1)});
    }
  }
}

TEST_CASE("RFC 6455 §5 round trip of fragments, controls and the close handshake") {
  for (role sender : both_roles) {
    INFO(role_name(sender) << " starts");
    client_setup cs;
    const config cli = cs.cfg;
    connection tx(sender, sender == role::client ? cli : config{});
    connection rx(peer_of(sender), peer_of(sender) == role::client ? cli : config{});
    REQUIRE(tx.send_fragment(opcode::text, str("Hel"), false) == send_result::ok);
    REQUIRE(tx.send_ping(str("are you there")) == send_result::ok);
    REQUIRE(tx.send_fragment(opcode::continuation, {}, false) == send_result::ok);
    REQUIRE(tx.send_fragment(opcode::continuation, str("lo"), true) == send_result::ok);
    REQUIRE(tx.send_pong(str("unsolicited")) == send_result::ok);
    REQUIRE(tx.close(1001, "going away") == send_result::ok);
    const bytes wire = as_bytes(tx.pending_output());
    drain(tx);
    auto res = check_all_chunkings(config{}, peer_of(sender), wire,
                                   {ev_ping(str("are you there")), ev_text("Hello"), ev_pong(str("unsolicited")),
                                    ev_close(1001, "going away")});
    auto ev = run(rx, wire, random_chunks(9));
    REQUIRE(ev.size() == 4);
    CHECK(rx.state() == connection_state::closed);
    // The receiver's reply: a pong, then the echoed close.
    const bytes reply = as_bytes(rx.pending_output());
    drain(rx);
    auto back = run(tx, reply, byte_by_byte());
    REQUIRE(back.size() == 2);
    CHECK(back[0] == ev_pong(str("are you there")));
    CHECK(back[1] == ev_close(1001));
    CHECK(tx.state() == connection_state::closed);
    CHECK(tx.closed_cleanly());
    CHECK(rx.closed_cleanly());
    connection& server = sender == role::server ? tx : rx;
    connection& client = sender == role::server ? rx : tx;
    CHECK(server.should_close_transport());
    CHECK(!client.should_close_transport());
  }
}

// ======================================================================================
// prepared_message

TEST_CASE("ws6455 prepared_message: server-role frame bytes, sent as is") {
  for (std::size_t n : {0, 5, 125, 126, 65536}) {
    INFO("length " << n);
    const bytes p = pattern(n);
    prepared_message m(opcode::binary, p);
    CHECK(as_bytes(m.bytes()) == frame(OP_BINARY, p));
    connection c(role::server);
    REQUIRE(c.send_text("first") == send_result::ok);
    REQUIRE(c.send_prepared(m) == send_result::ok);
    REQUIRE(c.send_prepared(m) == send_result::ok);
    CHECK(as_bytes(c.pending_output()) == cat(frame(OP_TEXT, str("first")), frame(OP_BINARY, p), frame(OP_BINARY, p)));
    // A client receives it.
    check_all_chunkings(role::client, m.bytes(), {ev_binary(p)});
  }
  CHECK(as_bytes(prepared_message::text("Hello").bytes()) == hex("81 05 48 65 6c 6c 6f"));
}

TEST_CASE("ws6455 prepared_message: refused on a client (wrong_role), after close, and under backpressure") {
  const auto m = prepared_message::text("Hello");
  client_setup cs;
  connection cl(role::client, cs.cfg);
  CHECK(cl.send_prepared(m) == send_result::wrong_role);
  CHECK(cl.pending_output().empty());

  connection s(role::server);
  REQUIRE(s.close() == send_result::ok);
  const bytes out = as_bytes(s.pending_output());
  CHECK(s.send_prepared(m) == send_result::closed);
  CHECK(as_bytes(s.pending_output()) == out);

  config small;
  small.max_write_buffer_size = 100;
  connection b(role::server, small);
  REQUIRE(b.send_binary(pattern(60)) == send_result::ok);  // 62 bytes pending
  const prepared_message big(opcode::binary, pattern(50));  // 52 bytes
  CHECK(b.send_prepared(big) == send_result::backpressure);
  CHECK(b.pending_output().size() == 62);
  CHECK(b.send_prepared(m) == send_result::ok);

  connection f(role::server);
  REQUIRE(f.send_fragment(opcode::text, str("a"), false) == send_result::ok);
  CHECK(f.send_prepared(m) == send_result::message_in_progress);
}
