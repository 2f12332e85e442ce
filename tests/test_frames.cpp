// Receive-side framing: RFC 6455 §5.1-§5.7 and §8.1, plus ws6455's limits (§10.4) and
// streaming delivery. Every receive test runs whole, byte by byte, at every split point
// (small inputs), in fixed and seeded random chunks, with event buffers of 1..16 slots.
#include "harness.hpp"

using namespace wst;

namespace {

constexpr role both_roles[] = {role::server, role::client};

const char* role_name(role r) { return r == role::server ? "server" : "client"; }

config streaming_cfg() {
  config c;
  c.mode = delivery::streaming;
  return c;
}


std::size_t find_byte(const bytes& b, std::uint8_t v, std::size_t from = 0) {
  for (std::size_t i = from; i < b.size(); ++i)
    if (b[i] == std::byte{v}) return i;
  FAIL("byte not found");
  return 0;
}

}  // namespace

// ======================================================================================
// §5.7 examples, byte for byte

TEST_CASE("RFC 6455 §5.7 single-frame unmasked text 'Hello' (client receives)") {
  auto res = check_all_chunkings(role::client, hex("81 05 48 65 6c 6c 6f"), {ev_text("Hello")});
  CHECK(res.output.empty());
  CHECK(res.state == connection_state::open);
}

TEST_CASE("RFC 6455 §5.7 single-frame masked text 'Hello' (server receives)") {
  const bytes wire = hex("81 85 37 fa 21 3d 7f 9f 4d 51 58");
  CHECK(frame(OP_TEXT, str("Hello"), true, K) == wire);  // the builder agrees with the RFC
  auto res = check_all_chunkings(role::server, wire, {ev_text("Hello")});
  CHECK(res.output.empty());
  CHECK(res.state == connection_state::open);
}

TEST_CASE("RFC 6455 §5.7 fragmented unmasked text 'Hel' + 'lo'") {
  const bytes wire = hex("01 03 48 65 6c 80 02 6c 6f");
  check_all_chunkings(role::client, wire, {ev_text("Hello")});
  SUBCASE("streaming: one piece per frame when fed whole, fin only on the last") {
    check_all_chunkings(streaming_cfg(), role::client, wire, {ev_text("Hello")});
    connection c(role::client, streaming_cfg());
    auto ev = run(c, wire);
    REQUIRE(ev.size() == 2);
    CHECK(ev[0] == ev_text("Hel", false));
    CHECK(ev[1] == ev_text("lo", true));
  }
}

TEST_CASE("RFC 6455 §5.7 unmasked ping: the client reports it and queues a masked pong") {
  auto res = check_all_chunkings(role::client, hex("89 05 48 65 6c 6c 6f"), {ev_ping(str("Hello"))});
  auto frames = parse_frames(res.output);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].opcode == OP_PONG);
  CHECK(frames[0].fin);
  CHECK(frames[0].masked);
  CHECK(frames[0].payload == str("Hello"));
}

TEST_CASE("RFC 6455 §5.7 masked pong (server receives): reported, nothing sent") {
  auto res = check_all_chunkings(role::server, hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"), {ev_pong(str("Hello"))});
  CHECK(res.output.empty());
}

TEST_CASE("RFC 6455 §5.7 256-byte binary in a single unmasked frame (16-bit length)") {
  const bytes payload = pattern(256);
  const bytes wire = cat(hex("82 7E 01 00"), payload);
  CHECK(frame(OP_BINARY, payload) == wire);
  check_all_chunkings(role::client, wire, {ev_binary(payload)});
  check_all_chunkings(role::server, frame(OP_BINARY, payload, true, K), {ev_binary(payload)});
}

TEST_CASE("RFC 6455 §5.7 64 KiB binary in a single unmasked frame (64-bit length)") {
  const bytes payload = pattern(65536);
  const bytes wire = cat(hex("82 7F 00 00 00 00 00 01 00 00"), payload);
  CHECK(frame(OP_BINARY, payload) == wire);
  check_all_chunkings(role::client, wire, {ev_binary(payload)});
  check_all_chunkings(role::server, frame(OP_BINARY, payload, true, K), {ev_binary(payload)});
}

// ======================================================================================
// §5.2 base framing: lengths

TEST_CASE("RFC 6455 §5.2 payload lengths around the 7/16/64-bit length forms") {
  for (role r : both_roles) {
    for (std::size_t n : {0, 1, 2, 3, 4, 5, 125, 126, 127, 128, 65535, 65536, 65537}) {
      INFO(role_name(r) << " length " << n);
      const bytes b = pattern(n, static_cast<std::uint32_t>(n));
      check_all_chunkings(r, peer_frame(r, OP_BINARY, b), {ev_binary(b)});
      const std::string t = utf8_text(n);
      check_all_chunkings(r, peer_frame(r, OP_TEXT, str(t)), {ev_text(t)});
    }
  }
}

TEST_CASE("RFC 6455 §5.2 a 16 MiB frame at the default max_frame_size is accepted") {
  const bytes b = pattern(16u << 20);
  for (role r : both_roles) {
    INFO(role_name(r));
    check_all_chunkings(config{}, r, peer_frame(r, OP_BINARY, b), {ev_binary(b)}, false,
                        {whole_input(), random_chunks(1), random_chunks(2)});
  }
}

TEST_CASE("RFC 6455 §5.2 several frames in one input are all reported, in order") {
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes wire = cat(peer_frame(r, OP_TEXT, str("one")), peer_frame(r, OP_BINARY, pattern(300)),
                           peer_frame(r, OP_PING, str("p")), peer_frame(r, OP_TEXT, str("")),
                           peer_frame(r, OP_PONG, {}), peer_frame(r, OP_BINARY, {}));
    check_all_chunkings(r, wire,
                        {ev_text("one"), ev_binary(pattern(300)), ev_ping(str("p")), ev_text(""), ev_pong({}),
                         ev_binary({})});
  }
}

TEST_CASE("RFC 6455 §5.2 non-minimal 16-bit length is 1002") {
  for (role r : both_roles) {
    for (std::size_t n : {0, 1, 5, 125}) {
      INFO(role_name(r) << " length " << n);
      check_fails(r, peer_frame(r, OP_BINARY, pattern(n), true, 0, length_form::len16),
                  protocol_error::non_minimal_length);
      check_fails(r, peer_frame(r, OP_TEXT, str(utf8_text(n)), true, 0, length_form::len16),
                  protocol_error::non_minimal_length);
    }
  }
}

TEST_CASE("RFC 6455 §5.2 non-minimal 64-bit length is 1002") {
  for (role r : both_roles) {
    for (std::size_t n : {0, 1, 125, 126, 1000, 65535}) {
      INFO(role_name(r) << " length " << n);
      check_fails(r, peer_frame(r, OP_BINARY, pattern(n), true, 0, length_form::len64),
                  protocol_error::non_minimal_length);
    }
  }
}

TEST_CASE("RFC 6455 §5.2 minimal 16/64-bit lengths at the boundary are accepted") {
  for (role r : both_roles) {
    INFO(role_name(r));
    check_all_chunkings(r, peer_frame(r, OP_BINARY, pattern(126), true, 0, length_form::len16),
                        {ev_binary(pattern(126))});
    check_all_chunkings(r, peer_frame(r, OP_BINARY, pattern(65536), true, 0, length_form::len64),
                        {ev_binary(pattern(65536))});
  }
}

TEST_CASE("RFC 6455 §5.2 64-bit length with the most significant bit set is 1002 (not 1009)") {
  config cfg;
  cfg.max_frame_size = SIZE_MAX;
  cfg.max_message_size = SIZE_MAX;
  for (role r : both_roles) {
    for (std::uint64_t len : {0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull, 0x8000000000000005ull}) {
      INFO(role_name(r) << " length " << len);
      check_fails(cfg, r, peer_header(r, OP_BINARY, len), {}, protocol_error::length_msb_set);
      check_fails(config{}, r, peer_header(r, OP_BINARY, len), {}, protocol_error::length_msb_set);
    }
  }
}

TEST_CASE("RFC 6455 §5.2 a frame header split anywhere is reassembled (14-byte header)") {
  // 64-bit length + mask key: the longest header. all_chunkings includes every split.
  const bytes payload = pattern(70000);
  check_all_chunkings(role::server, frame(OP_BINARY, payload, true, mask_key{1, 2, 3, 4}), {ev_binary(payload)});
  // Small frames: every two-chunk split of the whole input.
  check_all_chunkings(role::server, cat(frame(OP_TEXT, str("ab"), true, K), frame(OP_PING, str("xyz"), true, K)),
                      {ev_text("ab"), ev_ping(str("xyz"))});
}

// ======================================================================================
// §5.2 reserved bits and opcodes

TEST_CASE("RFC 6455 §5.2 RSV1/RSV2/RSV3 without a negotiated extension are 1002") {
  for (role r : both_roles) {
    for (std::uint8_t rsv : {RSV1, RSV2, RSV3, static_cast<std::uint8_t>(RSV1 | RSV2 | RSV3)}) {
      INFO(role_name(r) << " rsv " << int(rsv));
      check_fails(r, peer_frame(r, OP_TEXT, str("Hello"), true, rsv), protocol_error::reserved_bits);
      check_fails(r, peer_frame(r, OP_BINARY, pattern(10), true, rsv), protocol_error::reserved_bits);
      check_fails(r, peer_frame(r, OP_PING, str("p"), true, rsv), protocol_error::reserved_bits);
      check_fails(r, peer_frame(r, OP_PONG, str("p"), true, rsv), protocol_error::reserved_bits);
      check_fails(r, peer_frame(r, OP_CLOSE, close_body(1000), true, rsv), protocol_error::reserved_bits);
      // On a continuation: the first fragment is fine, the second fails.
      check_fails(config{}, r,
                  cat(peer_frame(r, OP_TEXT, str("Hel"), false), peer_frame(r, OP_CONT, str("lo"), true, rsv)),
                  {}, protocol_error::reserved_bits);
    }
  }
}

TEST_CASE("RFC 6455 §5.2 reserved data opcodes 3-7 are 1002") {
  for (role r : both_roles)
    for (std::uint8_t op = 3; op <= 7; ++op) {
      INFO(role_name(r) << " opcode " << int(op));
      check_fails(r, peer_frame(r, op, str("x")), protocol_error::reserved_opcode);
      check_fails(r, peer_frame(r, op, {}), protocol_error::reserved_opcode);
    }
}

TEST_CASE("RFC 6455 §5.2 reserved control opcodes 0xB-0xF are 1002") {
  for (role r : both_roles)
    for (std::uint8_t op = 0xB; op <= 0xF; ++op) {
      INFO(role_name(r) << " opcode " << int(op));
      check_fails(r, peer_frame(r, op, str("x")), protocol_error::reserved_opcode);
      check_fails(r, peer_frame(r, op, {}), protocol_error::reserved_opcode);
    }
}

TEST_CASE("RFC 6455 §5.2 reserved opcode after a valid message: message delivered, no pong afterwards (Autobahn 4.1.3)") {
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes wire =
        cat(peer_frame(r, OP_TEXT, str("Hello")), peer_frame(r, 5, str("x")), peer_frame(r, OP_PING, str("p")));
    auto res = check_all_chunkings(config{}, r, wire, {ev_text("Hello"), ev_fail(protocol_error::reserved_opcode)});
    auto frames = check_output_ends_with_close(res.output, 1002, r == role::client);
    CHECK(frames.size() == 1);  // no pong
  }
}

// ======================================================================================
// §5.1 / §5.3 masking

TEST_CASE("RFC 6455 §5.1 a server fails an unmasked frame with 1002") {
  check_fails(role::server, frame(OP_TEXT, str("Hello")), protocol_error::unmasked_frame);
  check_fails(role::server, frame(OP_BINARY, {}), protocol_error::unmasked_frame);
  check_fails(role::server, frame(OP_PING, str("p")), protocol_error::unmasked_frame);
  check_fails(role::server, frame(OP_CLOSE, close_body(1000)), protocol_error::unmasked_frame);
  // Unmasked continuation after a masked first fragment.
  check_fails(config{}, role::server, cat(frame(OP_TEXT, str("a"), false, K), frame(OP_CONT, str("b"))), {},
              protocol_error::unmasked_frame);
}

TEST_CASE("RFC 6455 §5.1 a client fails a masked frame with 1002") {
  check_fails(role::client, frame(OP_TEXT, str("Hello"), true, K), protocol_error::masked_frame);
  check_fails(role::client, frame(OP_BINARY, {}, true, K), protocol_error::masked_frame);
  check_fails(role::client, frame(OP_PING, str("p"), true, K), protocol_error::masked_frame);
  check_fails(role::client, frame(OP_CLOSE, close_body(1000), true, K), protocol_error::masked_frame);
  check_fails(role::client, frame(OP_TEXT, str("Hello"), true, mask_key{0, 0, 0, 0}), protocol_error::masked_frame);
}

TEST_CASE("RFC 6455 §5.1 accept_unmasked_frames lets a server take unmasked (and masked) frames") {
  config cfg;
  cfg.accept_unmasked_frames = true;
  const bytes wire = cat(frame(OP_TEXT, str("plain")), frame(OP_TEXT, str("masked"), true, K),
                         frame(OP_BINARY, pattern(300)), frame(OP_PING, str("p")));
  auto res = check_all_chunkings(cfg, role::server, wire,
                                 {ev_text("plain"), ev_text("masked"), ev_binary(pattern(300)), ev_ping(str("p"))});
  auto frames = parse_frames(res.output);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].opcode == OP_PONG);
  CHECK(!frames[0].masked);
}

TEST_CASE("RFC 6455 §5.3 masked payloads are unmasked in place in the caller's input") {
  bytes wire = hex("81 85 37 fa 21 3d 7f 9f 4d 51 58");
  connection c(role::server);
  std::array<event, 4> ev;
  auto r = c.feed(wire, ev);
  REQUIRE(r.consumed == wire.size());
  REQUIRE(r.events == 1);
  CHECK(ev[0].type == event_type::text);
  CHECK(ev[0].text() == "Hello");
  CHECK(bytes(wire.begin() + 6, wire.end()) == str("Hello"));
  // Single-frame message in whole-message mode: zero-copy, the span is inside the input.
  CHECK(ev[0].data.data() == wire.data() + 6);
}

TEST_CASE("RFC 6455 §5.3 mask phase carries across chunks of any length") {
  for (mask_key key : {mask_key{1, 2, 3, 4}, mask_key{0, 0, 0, 0}, mask_key{0xff, 0x00, 0xaa, 0x55}}) {
    for (std::size_t n : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 200, 1000, 4099}) {
      INFO("length " << n);
      const bytes payload = pattern(n, 7);
      check_all_chunkings(role::server, frame(OP_BINARY, payload, true, key), {ev_binary(payload)});
    }
  }
}

// ======================================================================================
// §5.4 fragmentation

TEST_CASE("RFC 6455 §5.4 fragmented text and binary messages are reassembled, empty fragments included") {
  for (role r : both_roles) {
    INFO(role_name(r));
    check_all_chunkings(r,
                        cat(peer_frame(r, OP_TEXT, str("He"), false), peer_frame(r, OP_CONT, str("l"), false),
                            peer_frame(r, OP_CONT, str("lo"))),
                        {ev_text("Hello")});
    check_all_chunkings(r,
                        cat(peer_frame(r, OP_TEXT, {}, false), peer_frame(r, OP_CONT, str("Hello"), false),
                            peer_frame(r, OP_CONT, {}, false), peer_frame(r, OP_CONT, {})),
                        {ev_text("Hello")});
    check_all_chunkings(r, cat(peer_frame(r, OP_TEXT, {}, false), peer_frame(r, OP_CONT, {})), {ev_text("")});
    const bytes a = pattern(1000, 1), b = pattern(70000, 2);
    check_all_chunkings(r, cat(peer_frame(r, OP_BINARY, a, false), peer_frame(r, OP_CONT, b)),
                        {ev_binary(cat(a, b))});
    // Two fragmented messages back to back.
    check_all_chunkings(r,
                        cat(peer_frame(r, OP_BINARY, a, false), peer_frame(r, OP_CONT, a),
                            peer_frame(r, OP_TEXT, str("x"), false), peer_frame(r, OP_CONT, str("y"))),
                        {ev_binary(cat(a, a)), ev_text("xy")});
  }
}

TEST_CASE("RFC 6455 §5.4 a code point split across fragments is valid") {
  for (role r : both_roles) {
    INFO(role_name(r));
    // U+20AC (E2 82 AC) and U+1F600 (F0 9F 98 80) split at every position.
    check_all_chunkings(r,
                        cat(peer_frame(r, OP_TEXT, hex("E2"), false), peer_frame(r, OP_CONT, hex("82"), false),
                            peer_frame(r, OP_CONT, hex("AC"))),
                        {ev_text("\xE2\x82\xAC")});
    check_all_chunkings(r, cat(peer_frame(r, OP_TEXT, hex("F0 9F"), false), peer_frame(r, OP_CONT, hex("98 80"))),
                        {ev_text("\xF0\x9F\x98\x80")});
  }
}

TEST_CASE("RFC 6455 §5.4 continuation with no message open is 1002") {
  for (role r : both_roles) {
    INFO(role_name(r));
    check_fails(r, peer_frame(r, OP_CONT, str("x"), true), protocol_error::unexpected_continuation);
    check_fails(r, peer_frame(r, OP_CONT, str("x"), false), protocol_error::unexpected_continuation);
    check_fails(r, peer_frame(r, OP_CONT, {}, true), protocol_error::unexpected_continuation);
    // After a complete message (Autobahn 5.9-5.17 variants).
    check_fails(config{}, r, cat(peer_frame(r, OP_TEXT, str("a")), peer_frame(r, OP_CONT, str("b"))),
                {ev_text("a")}, protocol_error::unexpected_continuation);
    check_fails(config{}, r,
                cat(peer_frame(r, OP_TEXT, str("a"), false), peer_frame(r, OP_CONT, str("b")),
                    peer_frame(r, OP_CONT, str("c"))),
                {ev_text("ab")}, protocol_error::unexpected_continuation);
  }
}

TEST_CASE("RFC 6455 §5.4 a new data frame while a message is open is 1002") {
  for (role r : both_roles) {
    INFO(role_name(r));
    check_fails(r, cat(peer_frame(r, OP_TEXT, str("a"), false), peer_frame(r, OP_TEXT, str("b"))),
                protocol_error::expected_continuation);
    check_fails(r, cat(peer_frame(r, OP_TEXT, str("a"), false), peer_frame(r, OP_BINARY, str("b"), false)),
                protocol_error::expected_continuation);
    check_fails(r, cat(peer_frame(r, OP_BINARY, str("a"), false), peer_frame(r, OP_TEXT, {}, true)),
                protocol_error::expected_continuation);
    check_fails(config{}, r,
                cat(peer_frame(r, OP_BINARY, str("a"), false), peer_frame(r, OP_BINARY, str("b"), true)), {},
                protocol_error::expected_continuation);
  }
  SUBCASE("streaming mode too") {
    const role r = role::server;
    check_fails(streaming_cfg(), r, cat(peer_frame(r, OP_TEXT, str("a"), false), peer_frame(r, OP_TEXT, str("b"))),
                {}, protocol_error::expected_continuation);
  }
}

TEST_CASE("RFC 6455 §5.4 control frames between fragments are handled (Autobahn 5.6-5.8, 5.19)") {
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes wire = cat(peer_frame(r, OP_TEXT, str("Hel"), false), peer_frame(r, OP_PING, str("P1")),
                           peer_frame(r, OP_CONT, {}, false), peer_frame(r, OP_PONG, str("Q")),
                           peer_frame(r, OP_PING, str("P2")), peer_frame(r, OP_CONT, str("lo")));
    auto res = check_all_chunkings(r, wire, {ev_ping(str("P1")), ev_pong(str("Q")), ev_ping(str("P2")), ev_text("Hello")});
    auto frames = parse_frames(res.output);
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].opcode == OP_PONG);
    CHECK(frames[0].payload == str("P1"));
    CHECK(frames[1].payload == str("P2"));
    check_all_chunkings(streaming_cfg(), r, wire,
                        {ev_ping(str("P1")), ev_pong(str("Q")), ev_ping(str("P2")), ev_text("Hello")});
  }
}

TEST_CASE("RFC 6455 §5.4 a ping between fragments is answered before the message ends") {
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes part1 = cat(peer_frame(r, OP_TEXT, str("Hel"), false), peer_frame(r, OP_PING, str("now")));
    const bytes part2 = peer_frame(r, OP_CONT, str("lo"));
    for (auto ch : {whole_input(), byte_by_byte(1)}) {
      INFO(ch.name());
      connection c(r);
      auto ev1 = run(c, part1, ch);
      REQUIRE(ev1.size() == 1);
      CHECK(ev1[0] == ev_ping(str("now")));
      auto frames = parse_frames(c.pending_output());
      REQUIRE(frames.size() == 1);
      CHECK(frames[0].opcode == OP_PONG);
      CHECK(frames[0].payload == str("now"));
      c.consume_output(c.pending_output().size());
      auto ev2 = run(c, part2, ch);
      REQUIRE(ev2.size() == 1);
      CHECK(ev2[0] == ev_text("Hello"));
    }
  }
}

// ======================================================================================
// §5.5 control frames

TEST_CASE("RFC 6455 §5.5 control payloads of 125 bytes are accepted") {
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes p = pattern(125);
    check_all_chunkings(r, peer_frame(r, OP_PING, p), {ev_ping(p)});
    check_all_chunkings(r, peer_frame(r, OP_PONG, p), {ev_pong(p)});
  }
}

TEST_CASE("RFC 6455 §5.5 control payloads over 125 bytes are 1002") {
  for (role r : both_roles) {
    for (std::size_t n : {126, 127, 200, 65536}) {
      INFO(role_name(r) << " length " << n);
      check_fails(r, peer_frame(r, OP_PING, pattern(n)), protocol_error::control_too_long);
      check_fails(r, peer_frame(r, OP_PONG, pattern(n)), protocol_error::control_too_long);
      check_fails(r, peer_frame(r, OP_CLOSE, cat(close_body(1000), str(std::string(n - 2, 'a')))),
                  protocol_error::control_too_long);
    }
  }
}

TEST_CASE("RFC 6455 §5.5 control length is checked on the 7-bit field, before the extended length") {
  for (role r : both_roles) {
    for (std::uint8_t op : {OP_PING, OP_PONG, OP_CLOSE}) {
      for (std::uint8_t l7 : {126, 127}) {
        INFO(role_name(r) << " opcode " << int(op) << " 7-bit length " << int(l7));
        // Just the first two header bytes: no extended length, no mask, no payload.
        const bytes two{static_cast<std::byte>(0x80 | op),
                        static_cast<std::byte>((r == role::server ? 0x80 : 0) | l7)};
        check_fails(r, two, protocol_error::control_too_long);
        CHECK(fail_position(config{}, r, two) == 2);
      }
    }
  }
}

TEST_CASE("RFC 6455 §5.5 fragmented control frames are 1002") {
  for (role r : both_roles) {
    INFO(role_name(r));
    check_fails(r, peer_frame(r, OP_PING, str("p"), false), protocol_error::control_fragmented);
    check_fails(r, peer_frame(r, OP_PONG, str("p"), false), protocol_error::control_fragmented);
    check_fails(r, peer_frame(r, OP_CLOSE, close_body(1000), false), protocol_error::control_fragmented);
    check_fails(r, peer_frame(r, OP_PING, {}, false), protocol_error::control_fragmented);
    // Inside a fragmented message too.
    check_fails(r, cat(peer_frame(r, OP_TEXT, str("a"), false), peer_frame(r, OP_PING, str("p"), false)),
                protocol_error::control_fragmented);
  }
}

// ======================================================================================
// §8.1 UTF-8

TEST_CASE("RFC 6455 §8.1 valid UTF-8 text messages") {
  const std::vector<std::string> valid = {
      "",
      "Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!",  // Autobahn 6.2.x
      "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",                              // kosme
      "\xEF\xBB\xBF" "BOM",                                                         // a BOM is valid
      std::string(1, '\0'),                                                        // U+0000
      "\x7F",
      "\xC2\x80",
      "\xDF\xBF",
      "\xE0\xA0\x80",
      "\xED\x9F\xBF",  // U+D7FF, just below the surrogates
      "\xEE\x80\x80",  // U+E000, just above
      "\xEF\xBF\xBF",  // U+FFFF
      "\xF0\x90\x80\x80",
      "\xF4\x8F\xBF\xBF",  // U+10FFFF
  };
  for (role r : both_roles) {
    for (const std::string& s : valid) {
      INFO(role_name(r) << " text " << to_hex(str(s)));
      check_all_chunkings(r, peer_frame(r, OP_TEXT, str(s)), {ev_text(s)});
      check_all_chunkings(streaming_cfg(), r, peer_frame(r, OP_TEXT, str(s)), {ev_text(s)});
    }
  }
}

TEST_CASE("RFC 6455 §8.1 invalid UTF-8 is 1007 (overlongs, surrogates, > U+10FFFF, F5..FF, stray bytes)") {
  const char* invalid[] = {
      "80", "BF", "C0 80", "C1 BF", "C2", "C2 41", "E0 80 80", "E0 9F BF", "ED A0 80", "ED BF BF",
      "ED A0 80 ED B0 80", "F0 80 80 80", "F0 8F BF BF", "F4 90 80 80", "F7 BF BF BF", "F5", "F8 88 80 80 80",
      "FC 84 80 80 80 80", "FE", "FF", "E2 82 41", "CE BA E1 BD B9 CF 83 CE BC CE B5 ED A0 80 65 64 69 74 65 64",
  };
  for (role r : both_roles) {
    for (const char* h : invalid) {
      INFO(role_name(r) << " text " << h);
      const bytes payload = cat(str("ok "), hex(h), str(" tail"));
      check_fails(r, peer_frame(r, OP_TEXT, payload), protocol_error::invalid_utf8);
      check_fails(streaming_cfg(), r, peer_frame(r, OP_TEXT, payload), {}, protocol_error::invalid_utf8);
      // Split across fragments as well.
      check_fails(r, cat(peer_frame(r, OP_TEXT, str("ok "), false), peer_frame(r, OP_CONT, hex(h))),
                  protocol_error::invalid_utf8);
      // Binary messages are not validated.
      check_all_chunkings(r, peer_frame(r, OP_BINARY, payload), {ev_binary(payload)});
    }
  }
}

TEST_CASE("RFC 6455 §8.1 fail fast: 'f4 90' fails as soon as 0x90 arrives (Autobahn 6.4.1-6.4.4)") {
  // κόσμε, then F4 90 80 80 (> U+10FFFF), then "edited".
  const bytes bad = hex("ce ba e1 bd b9 cf 83 ce bc ce b5 f4 90 80 80 65 64 69 74 65 64");
  for (const config& cfg : {config{}, streaming_cfg()}) {
    for (role r : both_roles) {
      INFO(role_name(r) << (cfg.mode == delivery::streaming ? " streaming" : " whole messages"));
      // 6.4.1 / 6.4.3: one frame, fed byte by byte.
      const bytes one = peer_frame(r, OP_TEXT, bad);
      check_fails(cfg, r, one, {}, protocol_error::invalid_utf8);
      CHECK(fail_position(cfg, r, one) == peer_header(r, OP_TEXT, bad.size()).size() + find_byte(bad, 0x90) + 1);
      // 6.4.2 / 6.4.4: three frames, the second starting at 0x90; fails at its first payload byte.
      const bytes frames = cat(peer_frame(r, OP_TEXT, bytes(bad.begin(), bad.begin() + 12), false),
                               peer_frame(r, OP_CONT, bytes(bad.begin() + 12, bad.begin() + 15), false),
                               peer_frame(r, OP_CONT, bytes(bad.begin() + 15, bad.end())));
      check_fails(cfg, r, frames, {}, protocol_error::invalid_utf8);
      const std::size_t second = peer_frame(r, OP_TEXT, bytes(bad.begin(), bad.begin() + 12), false).size();
      CHECK(fail_position(cfg, r, frames) == second + peer_header(r, OP_CONT, 3).size() + 1);
      // Not a complete frame at all: the input ends right after 0x90.
      const bytes cut(one.begin(), one.begin() + static_cast<std::ptrdiff_t>(fail_position(cfg, r, one)));
      check_fails(cfg, r, cut, {}, protocol_error::invalid_utf8);
    }
  }
}

TEST_CASE("RFC 6455 §8.1 fail fast deep inside a large frame, before its end arrives") {
  bytes payload = str(utf8_text(100000));
  payload[5000] = std::byte{0xFF};
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes wire = peer_frame(r, OP_TEXT, payload);
    const std::size_t h = peer_header(r, OP_TEXT, payload.size()).size();
    const bytes cut(wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(h + 5001));
    check_fails(config{}, r, cut, {}, protocol_error::invalid_utf8);
    check_fails(streaming_cfg(), r, cut, {}, protocol_error::invalid_utf8);
    CHECK(fail_position(config{}, r, cut) == h + 5001);
  }
}

TEST_CASE("RFC 6455 §8.1 fail fast at the first impossible byte (surrogate ED A0, F5, C0)") {
  for (role r : both_roles) {
    for (const char* h : {"ED A0 80", "F5 80 80 80", "C0 80", "E0 80 80", "F0 80 80 80"}) {
      INFO(role_name(r) << " " << h);
      const bytes payload = cat(str("abc"), hex(h), str("defgh"));
      const bytes wire = peer_frame(r, OP_TEXT, payload);
      const std::size_t hs = peer_header(r, OP_TEXT, payload.size()).size();
      // The second byte of each sequence is already impossible, except F5/C0 which are
      // impossible themselves.
      const std::uint8_t first = static_cast<std::uint8_t>(hex(h)[0]);
      const std::size_t bad_index = hs + 3 + ((first == 0xF5 || first == 0xC0) ? 0 : 1);
      CHECK(fail_position(config{}, r, wire) == bad_index + 1);
      CHECK(fail_position(streaming_cfg(), r, wire) == bad_index + 1);
    }
  }
}

TEST_CASE("RFC 6455 §8.1 a text message ending mid-code-point fails at FIN, not before") {
  for (role r : both_roles) {
    INFO(role_name(r));
    for (const char* h : {"E2 82", "C3", "F0 9F 98", "F4"}) {
      INFO(h);
      const bytes one = peer_frame(r, OP_TEXT, cat(str("ab"), hex(h)));
      check_fails(r, one, protocol_error::invalid_utf8);
      check_fails(streaming_cfg(), r, one, {}, protocol_error::invalid_utf8);
      CHECK(fail_position(config{}, r, one) == one.size());
      // Fragmented: nothing wrong until the (empty) final fragment.
      const bytes frag = cat(peer_frame(r, OP_TEXT, cat(str("ab"), hex(h)), false), peer_frame(r, OP_CONT, {}));
      check_fails(r, frag, protocol_error::invalid_utf8);
      CHECK(fail_position(config{}, r, frag) == frag.size());
      CHECK(fail_position(streaming_cfg(), r, frag) == frag.size());
    }
  }
}

// ======================================================================================
// §10.4 implementation-specific limits

TEST_CASE("RFC 6455 §10.4 max_frame_size: a larger declared length is 1009 from the header alone") {
  config cfg;
  cfg.max_frame_size = 100;
  for (role r : both_roles) {
    INFO(role_name(r));
    check_all_chunkings(cfg, r, peer_frame(r, OP_BINARY, pattern(100)), {ev_binary(pattern(100))});
    check_all_chunkings(cfg, r, peer_frame(r, OP_TEXT, str(utf8_text(100))), {ev_text(utf8_text(100))});
    const bytes h = peer_header(r, OP_BINARY, 101);
    check_fails(cfg, r, h, {}, protocol_error::frame_too_large);
    // With the payload following, the fail still comes by the end of the header.
    CHECK(fail_position(cfg, r, peer_frame(r, OP_BINARY, pattern(101))) <= h.size());
    check_fails(cfg, r, peer_frame(r, OP_TEXT, str(utf8_text(101))), {}, protocol_error::frame_too_large);
    // A continuation fragment too.
    check_fails(cfg, r, cat(peer_frame(r, OP_TEXT, str("a"), false), peer_header(r, OP_CONT, 200)), {},
                protocol_error::frame_too_large);
  }
}

TEST_CASE("RFC 6455 §10.4 a huge declared length fails with 1009 at once (no pre-allocation)") {
  for (role r : both_roles) {
    for (std::uint64_t len : {(16ull << 20) + 1, 1ull << 32, 1ull << 40, (1ull << 63) - 1}) {
      INFO(role_name(r) << " declared " << len);
      const bytes h = peer_header(r, OP_BINARY, len);
      check_fails(r, h, protocol_error::frame_too_large);
    }
  }
}

TEST_CASE("RFC 6455 §10.4 max_message_size: checked on declared lengths, across fragments") {
  for (const config& base : {config{}, streaming_cfg()}) {
    config cfg = base;
    cfg.max_message_size = 100;
    cfg.max_frame_size = 1000;
    for (role r : both_roles) {
      INFO(role_name(r) << (cfg.mode == delivery::streaming ? " streaming" : " whole messages"));
      check_all_chunkings(cfg, r, peer_frame(r, OP_BINARY, pattern(100)), {ev_binary(pattern(100))});
      check_all_chunkings(cfg, r, cat(peer_frame(r, OP_BINARY, pattern(60), false), peer_frame(r, OP_CONT, pattern(40))),
                          {ev_binary(cat(pattern(60), pattern(40)))});
      const bytes h = peer_header(r, OP_BINARY, 101);
      check_fails(cfg, r, h, {}, protocol_error::message_too_large);
      // The second fragment's header pushes the total over: no payload needed.
      const bytes frag = cat(peer_frame(r, OP_BINARY, pattern(60), false), peer_header(r, OP_CONT, 41));
      check_fails(cfg, r, frag, {}, protocol_error::message_too_large);
      CHECK(fail_position(cfg, r, cat(frag, pattern(41))) <= frag.size());
      // Control frames in between do not count.
      check_all_chunkings(cfg, r,
                          cat(peer_frame(r, OP_TEXT, str(std::string(90, 'a')), false),
                              peer_frame(r, OP_PING, pattern(100)), peer_frame(r, OP_CONT, str("0123456789"))),
                          {ev_ping(pattern(100)), ev_text(std::string(90, 'a') + "0123456789")});
    }
  }
}

TEST_CASE("RFC 6455 §10.4 max_fragments counts empty fragments") {
  config cfg;
  cfg.max_fragments = 3;
  for (role r : both_roles) {
    INFO(role_name(r));
    check_all_chunkings(cfg, r,
                        cat(peer_frame(r, OP_TEXT, {}, false), peer_frame(r, OP_CONT, {}, false),
                            peer_frame(r, OP_CONT, str("x"))),
                        {ev_text("x")});
    check_fails(cfg, r,
                cat(peer_frame(r, OP_TEXT, {}, false), peer_frame(r, OP_CONT, {}, false),
                    peer_frame(r, OP_CONT, {}, false), peer_frame(r, OP_CONT, {})),
                {}, protocol_error::too_many_fragments);
    // Fails at the fourth header, even with no more bytes.
    const bytes four = cat(peer_frame(r, OP_BINARY, str("a"), false), peer_frame(r, OP_CONT, str("b"), false),
                           peer_frame(r, OP_CONT, str("c"), false), peer_header(r, OP_CONT, 1, false));
    check_fails(cfg, r, four, {}, protocol_error::too_many_fragments);
    // The count restarts with each message; control frames do not count.
    check_all_chunkings(cfg, r,
                        cat(peer_frame(r, OP_TEXT, str("a"), false), peer_frame(r, OP_PING, {}),
                            peer_frame(r, OP_CONT, str("b"), false), peer_frame(r, OP_PING, {}),
                            peer_frame(r, OP_CONT, str("c")), peer_frame(r, OP_BINARY, {}, false),
                            peer_frame(r, OP_CONT, {}, false), peer_frame(r, OP_CONT, {})),
                        {ev_ping({}), ev_ping({}), ev_text("abc"), ev_binary({})});
  }
  SUBCASE("max_fragments = 1 allows only unfragmented messages") {
    config one;
    one.max_fragments = 1;
    check_all_chunkings(one, role::server, frame(OP_TEXT, str("a"), true, K), {ev_text("a")});
    check_fails(one, role::server, cat(frame(OP_TEXT, str("a"), false, K), frame(OP_CONT, {}, true, K)), {},
                protocol_error::too_many_fragments);
  }
  SUBCASE("an empty-fragment flood hits the default limit") {
    config dflt;
    bytes flood = frame(OP_TEXT, {}, false, K);
    const bytes empty_cont = frame(OP_CONT, {}, false, K);
    for (std::uint32_t i = 1; i <= dflt.max_fragments; ++i) flood.insert(flood.end(), empty_cont.begin(), empty_cont.end());
    connection c(role::server, dflt);
    auto ev = run(c, flood, random_chunks(3, 8));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].type == event_type::fail);
    CHECK(ev[0].code == 1009);
    CHECK(ev[0].error == protocol_error::too_many_fragments);
  }
}

// ======================================================================================
// Streaming delivery

TEST_CASE("ws6455 streaming: pieces concatenate to the message, fin only on the last piece") {
  const std::string t = utf8_text(5000);
  const bytes b = pattern(70000);
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes wire = cat(peer_frame(r, OP_TEXT, str(t)), peer_frame(r, OP_BINARY, b, false),
                           peer_frame(r, OP_CONT, b, false), peer_frame(r, OP_CONT, str("end")));
    check_all_chunkings(streaming_cfg(), r, wire, {ev_text(t), ev_binary(cat(b, b, str("end")))});
    for (auto ch : {whole_input(), byte_by_byte(), random_chunks(5, 3)}) {
      INFO(ch.name());
      connection c(r, streaming_cfg());
      auto ev = run(c, wire, ch);
      REQUIRE(!ev.empty());
      // Pieces of message 1 (text) then message 2 (binary).
      std::size_t i = 0;
      bytes got;
      for (; i < ev.size(); ++i) {
        CHECK(ev[i].type == event_type::text);
        got.insert(got.end(), ev[i].data.begin(), ev[i].data.end());
        if (ev[i].fin) break;
      }
      CHECK(got == str(t));
      got.clear();
      for (++i; i < ev.size(); ++i) {
        CHECK(ev[i].type == event_type::binary);
        got.insert(got.end(), ev[i].data.begin(), ev[i].data.end());
        CHECK(ev[i].fin == (i + 1 == ev.size()));
      }
      CHECK(got == cat(b, b, str("end")));
      if (ch.kind == chunking::bytewise) CHECK(ev.size() > 100);  // really streamed, not reassembled
    }
  }
}

TEST_CASE("ws6455 streaming: a piece is delivered before the frame is complete") {
  connection c(role::server, streaming_cfg());
  const bytes wire = frame(OP_BINARY, pattern(1000), true, K);
  auto ev = run(c, bytes(wire.begin(), wire.begin() + 500));
  REQUIRE(!ev.empty());
  bytes got;
  for (auto& e : ev) {
    CHECK(!e.fin);
    got.insert(got.end(), e.data.begin(), e.data.end());
  }
  const bytes full = pattern(1000);
  REQUIRE(got.size() > 0);
  REQUIRE(got.size() <= full.size());
  CHECK(got == bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(got.size())));
}

TEST_CASE("ws6455 streaming: zero-length frames still end the message with a fin piece") {
  for (role r : both_roles) {
    INFO(role_name(r));
    // Empty single-frame messages.
    for (std::uint8_t op : {OP_TEXT, OP_BINARY}) {
      for (auto ch : all_chunkings(8)) {
        INFO(ch.name());
        connection c(r, streaming_cfg());
        auto ev = run(c, peer_frame(r, op, {}), ch);
        REQUIRE(!ev.empty());
        CHECK(ev.back().fin);
        CHECK(ev.back().type == (op == OP_TEXT ? event_type::text : event_type::binary));
        for (auto& e : ev) CHECK(e.data.empty());
      }
    }
    // Empty final continuation.
    const bytes wire = cat(peer_frame(r, OP_TEXT, str("abc"), false), peer_frame(r, OP_CONT, {}));
    check_all_chunkings(streaming_cfg(), r, wire, {ev_text("abc")});
    connection c(r, streaming_cfg());
    auto ev = run(c, wire);
    REQUIRE(!ev.empty());
    CHECK(ev.back().fin);
    CHECK(ev.back().data.empty());
  }
}

TEST_CASE("ws6455 streaming: zero-length frames, as implemented (non-final ones give no event)") {
  // Documents the current behaviour: an empty non-final frame produces no event; an
  // empty final frame (or empty single-frame message) produces one empty fin piece.
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r, streaming_cfg());
    auto ev = run(c, peer_frame(r, OP_TEXT, {}));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0] == ev_text("", true));
    auto ev2 = run(c, cat(peer_frame(r, OP_BINARY, {}, false), peer_frame(r, OP_CONT, {}, false)));
    CHECK(ev2.empty());
    auto ev3 = run(c, peer_frame(r, OP_CONT, {}));
    REQUIRE(ev3.size() == 1);
    CHECK(ev3[0] == ev_binary({}, true));
  }
}

// ======================================================================================
// The feed() contract

TEST_CASE("ws6455 feed: stops early when the event buffer is full, resumes exactly there") {
  bytes wire = cat(frame(OP_PING, str("1"), true, K), frame(OP_PING, str("2"), true, K), frame(OP_TEXT, str("3"), true, K));
  connection c(role::server);
  std::array<event, 1> ev;
  auto r1 = c.feed(wire, ev);
  CHECK(r1.events == 1);
  CHECK(r1.consumed < wire.size());
  CHECK(ev[0].type == event_type::ping);
  CHECK(ev[0].text() == "1");
  auto rest = std::span<std::byte>(wire).subspan(r1.consumed);
  auto r2 = c.feed(rest, ev);
  CHECK(r2.events == 1);
  CHECK(ev[0].text() == "2");
  auto r3 = c.feed(rest.subspan(r2.consumed), ev);
  CHECK(r3.events == 1);
  CHECK(ev[0].type == event_type::text);
  CHECK(ev[0].text() == "3");
  CHECK(r1.consumed + r2.consumed + r3.consumed == wire.size());
}

TEST_CASE("ws6455 feed: empty input and an empty event buffer") {
  connection c(role::server);
  std::array<event, 2> ev;
  auto r = c.feed(std::span<std::byte>{}, ev);
  CHECK(r.consumed == 0);
  CHECK(r.events == 0);
  // With no room for events, a complete frame cannot be reported; bytes not consumed past it.
  bytes wire = frame(OP_TEXT, str("hi"), true, K);
  auto r2 = c.feed(wire, {});
  CHECK(r2.events == 0);
  auto r3 = c.feed(std::span<std::byte>(wire).subspan(r2.consumed), ev);
  REQUIRE(r3.events == 1);
  CHECK(ev[0].text() == "hi");
  CHECK(r2.consumed + r3.consumed == wire.size());
}

TEST_CASE("ws6455 feed: after a fail, further input is consumed and ignored") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r);
    bytes bad = peer_frame(r, 3, str("x"));
    auto ev = run(c, bad);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].type == event_type::fail);
    const bytes out_before = as_bytes(c.pending_output());
    bytes more = cat(peer_frame(r, OP_TEXT, str("later")), peer_frame(r, OP_PING, str("p")), peer_frame(r, 4, {}));
    std::array<event, 4> buf;
    auto res = c.feed(more, buf);
    CHECK(res.consumed == more.size());
    CHECK(res.events == 0);
    CHECK(as_bytes(c.pending_output()) == out_before);
    CHECK(c.state() == connection_state::failed);
    CHECK(c.last_error() == protocol_error::reserved_opcode);
  }
}

// ======================================================================================
// The order rule (connection.hpp): the application answers the events it was given before
// the engine's own reaction to a later frame is queued

TEST_CASE("ws6455 order: a message, then RSV=2/RSV=3/opcode 5/6/13/14, then a ping: the echo is queued before the 1002") {
  for (role r : both_roles) {
    for (const config& cfg : {config{}, streaming_cfg()}) {
      struct bad_frame {
        const char* name;
        bytes wire;
        protocol_error err;
      };
      const bytes msg = str("Hello, world!");
      const bad_frame cases[] = {
          {"RSV=2", peer_frame(r, OP_TEXT, msg, true, RSV2), protocol_error::reserved_bits},
          {"RSV=3", peer_frame(r, OP_TEXT, msg, true, RSV2 | RSV3), protocol_error::reserved_bits},
          {"opcode 5", peer_frame(r, 5, {}), protocol_error::reserved_opcode},
          {"opcode 6", peer_frame(r, 6, str("reserved opcode payload")), protocol_error::reserved_opcode},
          {"opcode 13", peer_frame(r, 13, {}), protocol_error::reserved_opcode},
          {"opcode 14", peer_frame(r, 14, str("reserved opcode payload")), protocol_error::reserved_opcode},
      };
      for (const auto& c : cases) {
        INFO(role_name(r) << (cfg.mode == delivery::streaming ? " streaming " : " whole ") << c.name);
        const bytes wire = cat(peer_frame(r, OP_TEXT, msg), c.wire, peer_frame(r, OP_PING, msg));
        // Echo, then the 1002 with nothing after it (no pong for the ping behind the violation).
        check_echo_order(cfg, r, wire, {ev_text("Hello, world!"), ev_fail(c.err)});
      }
    }
  }
}

TEST_CASE("ws6455 order: violations found in the header or the payload wait for the application's answers") {
  config small;
  small.max_frame_size = 20;
  for (role r : both_roles) {
    for (config cfg : {config{}, streaming_cfg()}) {
      INFO(role_name(r) << (cfg.mode == delivery::streaming ? " streaming" : " whole"));
      const bytes first = peer_frame(r, OP_BINARY, pattern(7));
      const auto first_ev = ev_binary(pattern(7));
      // Invalid UTF-8 in a whole frame (the fast path), in a fragment, at the end of a
      // message (an empty final fragment), and a length in a non-minimal form.
      check_echo_order(cfg, r, cat(first, peer_frame(r, OP_TEXT, hex("61 ED A0 80 62"))),
                       {first_ev, ev_fail(protocol_error::invalid_utf8)});
      check_echo_order(cfg, r, cat(first, peer_frame(r, OP_TEXT, hex("61 62 FF"), false), peer_frame(r, OP_CONT, str("c"))),
                       {first_ev, ev_fail(protocol_error::invalid_utf8)});
      check_echo_order(cfg, r, cat(first, peer_frame(r, OP_TEXT, hex("61 E2 82"), false), peer_frame(r, OP_CONT, {})),
                       {first_ev, ev_fail(protocol_error::invalid_utf8)});
      check_echo_order(cfg, r, cat(first, peer_frame(r, OP_BINARY, pattern(5), true, 0, length_form::len16)),
                       {first_ev, ev_fail(protocol_error::non_minimal_length)});
      check_echo_order(cfg, r, cat(first, peer_frame(r, OP_CONT, str("x"))),
                       {first_ev, ev_fail(protocol_error::unexpected_continuation)});
      cfg.max_frame_size = small.max_frame_size;
      check_echo_order(cfg, r, cat(first, peer_frame(r, OP_BINARY, pattern(21))),
                       {first_ev, ev_fail(protocol_error::frame_too_large)});
      cfg.max_fragments = 2;
      check_echo_order(cfg, r,
                       cat(peer_frame(r, OP_TEXT, str("a"), false), peer_frame(r, OP_PING, str("p")),
                           peer_frame(r, OP_CONT, str("b"), false), peer_frame(r, OP_CONT, str("c"))),
                       {ev_ping(str("p")), ev_fail(protocol_error::too_many_fragments)});
    }
  }
}

TEST_CASE("ws6455 order: a frame left for the next call is given back as it came (masked again)") {
  // The server unmasks in place; a text frame found invalid behind an event goes back
  // to the caller's buffer unchanged, so that the next feed() reads it again.
  for (bool fragmented : {false, true}) {
    INFO((fragmented ? "fragmented" : "one frame"));
    const bytes second = frame(OP_TEXT, hex("61 62 ED A0 80 63"), !fragmented, K);
    bytes wire = cat(frame(OP_TEXT, str("ok"), true, K), second);
    const bytes original = wire;
    connection c(role::server);
    std::array<event, 8> ev;
    auto r1 = c.feed(wire, ev);
    REQUIRE(r1.events == 1);
    CHECK(ev[0].text() == "ok");
    CHECK(r1.consumed == wire.size() - second.size());
    CHECK(bytes(wire.begin() + r1.consumed, wire.end()) == second);  // as it came
    CHECK(c.pending_output().empty());
    auto r2 = c.feed(std::span<std::byte>(wire).subspan(r1.consumed), ev);
    REQUIRE(r2.events == 1);
    CHECK(ev[0].type == event_type::fail);
    CHECK(ev[0].error == protocol_error::invalid_utf8);
    CHECK(r1.consumed + r2.consumed == original.size());
  }
}

TEST_CASE("ws6455 order: frames without an automatic answer are not held back (pongs, data)") {
  // Only frames the engine answers stop a feed() call: a pong or more data behind a
  // message come in the same call.
  connection c(role::server);
  bytes wire = cat(frame(OP_TEXT, str("a"), true, K), frame(OP_PONG, str("p"), true, K), frame(OP_BINARY, str("b"), false, K),
                   frame(OP_CONT, str("c"), true, K), frame(OP_TEXT, str("d"), true, K));
  std::array<event, 8> ev;
  auto r = c.feed(wire, ev);
  CHECK(r.consumed == wire.size() - frame(OP_TEXT, str("d"), true, K).size());  // "bc" was reassembled: stop after it
  REQUIRE(r.events == 3);
  CHECK(ev[0].text() == "a");
  CHECK(ev[1].type == event_type::pong);
  CHECK(ev[2].text() == "bc");
}
