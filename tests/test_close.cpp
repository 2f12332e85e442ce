// The closing handshake (RFC 6455 §5.5.1, §7), close codes (§7.4), ping/pong (§5.5.2,
// §5.5.3), transport EOF and should_close_transport(). Receive tests run under every
// chunking (see harness.hpp).
#include "harness.hpp"

using namespace wst;

namespace {

constexpr role both_roles[] = {role::server, role::client};
const char* role_name(role r) { return r == role::server ? "server" : "client"; }

bool masked_output(role r) { return r == role::client; }

std::vector<parsed_frame> frames_of(const connection& c) {
  std::size_t rest = 0;
  auto f = parse_frames(c.pending_output(), &rest);
  CHECK(rest == 0);
  return f;
}

void drain(connection& c) { c.consume_output(c.pending_output().size()); }

std::size_t count_op(const std::vector<parsed_frame>& frames, std::uint8_t op) {
  std::size_t n = 0;
  for (auto& f : frames) n += f.opcode == op;
  return n;
}

}  // namespace

// ======================================================================================
// §5.5.1 / §7.1 a close from the peer

TEST_CASE("RFC 6455 §5.5.1 a peer close: close event, the code echoed, state closed") {
  for (role r : both_roles) {
    INFO(role_name(r));
    auto res = check_all_chunkings(r, peer_frame(r, OP_CLOSE, close_body(1000, "bye")), {ev_close(1000, "bye")});
    CHECK(res.state == connection_state::closed);
    auto frames = check_output_ends_with_close(res.output, 1000, masked_output(r));
    CHECK(frames.size() == 1);
    connection c(r);
    run(c, peer_frame(r, OP_CLOSE, close_body(1001, "going")));
    CHECK(c.closed_cleanly());
    CHECK(c.peer_close_code() == 1001);
    CHECK(!c.want_read());
    CHECK(c.want_write());
  }
}

TEST_CASE("RFC 6455 §5.5.1 an empty close is reported as 1005 and answered with an empty close") {
  for (role r : both_roles) {
    INFO(role_name(r));
    auto res = check_all_chunkings(r, peer_frame(r, OP_CLOSE, {}), {ev_close(1005)});
    CHECK(res.state == connection_state::closed);
    auto frames = parse_frames(res.output);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].opcode == OP_CLOSE);
    CHECK(frames[0].masked == masked_output(r));
    CHECK(frames[0].payload.empty());  // never 1005 on the wire
    connection c(r);
    run(c, peer_frame(r, OP_CLOSE, {}));
    CHECK(c.peer_close_code() == 1005);
  }
}

TEST_CASE("RFC 6455 §7.4.1 valid received close codes are reported and echoed") {
  for (role r : both_roles) {
    for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
                               4000, 4999}) {
      INFO(role_name(r) << " code " << code);
      auto res = check_all_chunkings(r, peer_frame(r, OP_CLOSE, close_body(code, "r")), {ev_close(code, "r")});
      CHECK(res.state == connection_state::closed);
      check_output_ends_with_close(res.output, code, masked_output(r));
      // Without a reason as well.
      res = check_all_chunkings(r, peer_frame(r, OP_CLOSE, close_body(code)), {ev_close(code)});
      check_output_ends_with_close(res.output, code, masked_output(r));
    }
  }
}

TEST_CASE("RFC 6455 §7.4 invalid received close codes are 1002") {
  for (role r : both_roles) {
    for (std::uint16_t code : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
      INFO(role_name(r) << " code " << code);
      check_fails(r, peer_frame(r, OP_CLOSE, close_body(code)), protocol_error::bad_close_code);
      check_fails(r, peer_frame(r, OP_CLOSE, close_body(code, "reason")), protocol_error::bad_close_code);
    }
  }
}

TEST_CASE("RFC 6455 §5.5.1 a 1-byte close payload is 1002") {
  for (role r : both_roles) {
    INFO(role_name(r));
    check_fails(r, peer_frame(r, OP_CLOSE, hex("03")), protocol_error::bad_close_payload);
    check_fails(r, peer_frame(r, OP_CLOSE, hex("e8")), protocol_error::bad_close_payload);
  }
}

TEST_CASE("RFC 6455 §5.5.1 a 123-byte close reason is accepted; a 126-byte close payload is 1002") {
  for (role r : both_roles) {
    INFO(role_name(r));
    const std::string reason123(123, 'r');
    auto res = check_all_chunkings(r, peer_frame(r, OP_CLOSE, close_body(1000, reason123)), {ev_close(1000, reason123)});
    check_output_ends_with_close(res.output, 1000, masked_output(r));
    // A multi-byte UTF-8 reason filling the frame.
    const std::string mb = utf8_text(123);
    check_all_chunkings(r, peer_frame(r, OP_CLOSE, close_body(3000, mb)), {ev_close(3000, mb)});
    check_fails(r, peer_frame(r, OP_CLOSE, close_body(1000, std::string(124, 'r'))), protocol_error::control_too_long);
  }
}

TEST_CASE("RFC 6455 §5.5.1 a close reason that is not UTF-8 is 1007") {
  for (role r : both_roles) {
    for (const char* h : {"ff", "61 62 ed a0 80", "e2 82", "c0 80", "f4 90 80 80", "80"}) {
      INFO(role_name(r) << " reason " << h);
      check_fails(r, peer_frame(r, OP_CLOSE, cat(close_body(1000), hex(h))), protocol_error::invalid_close_reason);
    }
    // Valid non-ASCII reason.
    check_all_chunkings(r, peer_frame(r, OP_CLOSE, close_body(1000, "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5")),
                        {ev_close(1000, "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5")});
  }
}

TEST_CASE("RFC 6455 §7.1.4 after the peer's close, data, pings and a second close are ignored (Autobahn 7.1.2-7.1.4)") {
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes wire = cat(peer_frame(r, OP_TEXT, str("before")), peer_frame(r, OP_CLOSE, close_body(1000)),
                           peer_frame(r, OP_TEXT, str("after")), peer_frame(r, OP_PING, str("p")),
                           peer_frame(r, OP_CLOSE, close_body(1001)), peer_frame(r, 5, {}), hex("ff ff ff"));
    auto res = check_all_chunkings(r, wire, {ev_text("before"), ev_close(1000)});
    auto frames = check_output_ends_with_close(res.output, 1000, masked_output(r));
    CHECK(frames.size() == 1);  // no pong after the close (7.1.3)
    CHECK(res.state == connection_state::closed);
    // A later feed call takes everything and reports nothing.
    connection c(r);
    run(c, peer_frame(r, OP_CLOSE, {}));
    const bytes out = as_bytes(c.pending_output());
    bytes more = cat(peer_frame(r, OP_TEXT, str("x")), peer_frame(r, OP_PING, {}));
    std::array<event, 4> ev;
    auto fr = c.feed(more, ev);
    CHECK(fr.consumed == more.size());
    CHECK(fr.events == 0);
    CHECK(as_bytes(c.pending_output()) == out);
  }
}

TEST_CASE("RFC 6455 §7.1.5 a close in the middle of a fragmented message is answered with an echo (Autobahn 7.1.5)") {
  for (role r : both_roles) {
    INFO(role_name(r));
    const bytes wire = cat(peer_frame(r, OP_TEXT, str("Hel"), false), peer_frame(r, OP_CLOSE, close_body(1000)),
                           peer_frame(r, OP_CONT, str("lo")));
    auto res = check_all_chunkings(r, wire, {ev_close(1000)});
    CHECK(res.state == connection_state::closed);
    check_output_ends_with_close(res.output, 1000, masked_output(r));
    config sc;
    sc.mode = delivery::streaming;
    res = check_all_chunkings(sc, r, wire, {ev_close(1000)});
    check_output_ends_with_close(res.output, 1000, masked_output(r));
  }
}

// ======================================================================================
// §7.1.2 a close we start

TEST_CASE("RFC 6455 §7.1.2 close(): closing, then the peer's close completes the handshake") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r);
    REQUIRE(c.close(1000, "bye") == send_result::ok);
    CHECK(c.state() == connection_state::closing);
    CHECK(c.want_read());
    CHECK(c.want_write());
    auto frames = frames_of(c);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].opcode == OP_CLOSE);
    CHECK(frames[0].masked == masked_output(r));
    CHECK(frames[0].payload == close_body(1000, "bye"));
    CHECK(!c.should_close_transport());

    auto ev = run(c, peer_frame(r, OP_CLOSE, close_body(1000, "ok")));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0] == ev_close(1000, "ok"));
    CHECK(c.state() == connection_state::closed);
    CHECK(c.closed_cleanly());
    CHECK(c.peer_close_code() == 1000);
    CHECK(frames_of(c).size() == 1);  // no second close frame
    CHECK(!c.want_read());
  }
}

TEST_CASE("RFC 6455 §7.1.2 close() answered with an empty close, or a different code") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r);
    REQUIRE(c.close(4000, "x") == send_result::ok);
    drain(c);
    auto ev = run(c, peer_frame(r, OP_CLOSE, {}));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0] == ev_close(1005));
    CHECK(c.state() == connection_state::closed);
    CHECK(c.pending_output().empty());

    connection d(r);
    REQUIRE(d.close() == send_result::ok);
    auto ev2 = run(d, peer_frame(r, OP_CLOSE, close_body(1001)));
    REQUIRE(ev2.size() == 1);
    CHECK(ev2[0] == ev_close(1001));
    CHECK(count_op(frames_of(d), OP_CLOSE) == 1);
  }
}

TEST_CASE("RFC 6455 §7.1.2 while closing, the peer's data and pings before its close are still reported") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r);
    REQUIRE(c.close(1000) == send_result::ok);
    drain(c);
    auto ev = run(c, cat(peer_frame(r, OP_TEXT, str("late")), peer_frame(r, OP_PONG, str("q")),
                         peer_frame(r, OP_CLOSE, close_body(1000))));
    REQUIRE(ev.size() == 3);
    CHECK(ev[0] == ev_text("late"));
    CHECK(ev[1] == ev_pong(str("q")));
    CHECK(ev[2] == ev_close(1000));
    CHECK(c.state() == connection_state::closed);
  }
}

TEST_CASE("RFC 6455 §7.1.7 a protocol error while closing fails without a second close frame") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r);
    REQUIRE(c.close(1000) == send_result::ok);
    auto ev = run(c, peer_frame(r, 4, {}));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].type == event_type::fail);
    CHECK(ev[0].error == protocol_error::reserved_opcode);
    CHECK(c.state() == connection_state::failed);
    CHECK(count_op(frames_of(c), OP_CLOSE) == 1);
  }
}

// ======================================================================================
// §7.1.7 failing

TEST_CASE("RFC 6455 §7.1.7 a failure queues exactly one close with the code and the event's reason") {
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r);
    auto ev = run(c, cat(peer_frame(r, OP_TEXT, str("ok")), peer_frame(r, OP_TEXT, hex("ff")),
                         peer_frame(r, 3, {}), peer_frame(r, OP_CLOSE, close_body(1000))));
    REQUIRE(ev.size() == 2);
    CHECK(ev[0] == ev_text("ok"));
    CHECK(ev[1].type == event_type::fail);
    CHECK(ev[1].code == 1007);
    CHECK(ev[1].error == protocol_error::invalid_utf8);
    CHECK(c.state() == connection_state::failed);
    CHECK(c.last_error() == protocol_error::invalid_utf8);
    CHECK(!c.want_read());
    auto frames = frames_of(c);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].opcode == OP_CLOSE);
    CHECK(frames[0].masked == masked_output(r));
    CHECK(close_code_of(frames[0]) == 1007);
    REQUIRE(frames[0].payload.size() >= 2);
    CHECK(frames[0].payload.size() <= 125);
    const std::string wire_reason(reinterpret_cast<const char*>(frames[0].payload.data()) + 2,
                                  frames[0].payload.size() - 2);
    CHECK(ev[1].reason == wire_reason);
    event e;
    CHECK(!c.feed_eof(e));  // nothing more to report
  }
}

// ======================================================================================
// §7.1.1 closing the transport

TEST_CASE("RFC 6455 §7.1.1 should_close_transport: a server after the handshake and drained output") {
  connection c(role::server);
  CHECK(!c.should_close_transport());
  run(c, frame(OP_CLOSE, close_body(1000), true, K));
  CHECK(c.state() == connection_state::closed);
  CHECK(!c.should_close_transport());  // the reply is not written yet
  c.consume_output(1);
  CHECK(!c.should_close_transport());
  drain(c);
  CHECK(c.pending_output().empty());
  CHECK(!c.want_write());
  CHECK(c.should_close_transport());

  // Started by us.
  connection d(role::server);
  REQUIRE(d.close(1001) == send_result::ok);
  drain(d);
  CHECK(!d.should_close_transport());  // still waiting for the client's close
  run(d, frame(OP_CLOSE, close_body(1001), true, K));
  CHECK(d.should_close_transport());
}

TEST_CASE("RFC 6455 §7.1.1 should_close_transport: a server after a failure and drained output") {
  connection c(role::server);
  run(c, frame(OP_TEXT, str("unmasked")));
  CHECK(c.state() == connection_state::failed);
  CHECK(!c.should_close_transport());
  drain(c);
  CHECK(c.should_close_transport());
}

TEST_CASE("RFC 6455 §7.1.1 should_close_transport: a client waits for the server's EOF after a clean close") {
  connection c(role::client);
  run(c, frame(OP_CLOSE, close_body(1000)));
  CHECK(c.state() == connection_state::closed);
  drain(c);
  CHECK(!c.should_close_transport());

  connection d(role::client);
  REQUIRE(d.close() == send_result::ok);
  drain(d);
  run(d, frame(OP_CLOSE, close_body(1000)));
  CHECK(d.state() == connection_state::closed);
  CHECK(!d.should_close_transport());
}

TEST_CASE("RFC 6455 §7.1.1 should_close_transport: a client after a failure") {
  connection c(role::client);
  run(c, frame(OP_TEXT, str("masked"), true, K));
  CHECK(c.state() == connection_state::failed);
  drain(c);
  CHECK(c.should_close_transport());
}

TEST_CASE("RFC 6455 §7.1.1 should_close_transport is false while open") {
  for (role r : both_roles) {
    connection c(r);
    CHECK(!c.should_close_transport());
    run(c, peer_frame(r, OP_PING, str("x")));
    drain(c);
    CHECK(!c.should_close_transport());
  }
}

// ======================================================================================
// §7.1.5 transport EOF

TEST_CASE("RFC 6455 §7.1.5 EOF without a close frame is the abnormal closure 1006") {
  for (role r : both_roles) {
    INFO(role_name(r));
    // Open and idle, mid-message, mid-header, mid-payload.
    const bytes big = peer_frame(r, OP_BINARY, pattern(300));
    for (const bytes& before : {bytes{}, peer_frame(r, OP_TEXT, str("Hel"), false), bytes(big.begin(), big.begin() + 3),
                                bytes(big.begin(), big.begin() + 100)}) {
      INFO("after " << before.size() << " bytes");
      auto res = check_all_chunkings(config{}, r, before, {ev_close(1006)}, true);
      CHECK(res.state == connection_state::failed);
      connection c(r);
      run(c, before);
      event e;
      REQUIRE(c.feed_eof(e));
      CHECK(e.type == event_type::close);
      CHECK(e.code == 1006);
      CHECK(c.peer_close_code() == 1006);
      CHECK(!c.closed_cleanly());
      CHECK(!c.feed_eof(e));  // only once
      // Nothing 1006 goes on the wire.
      for (auto& f : frames_of(c))
        if (f.opcode == OP_CLOSE) CHECK(close_code_of(f) != 1006);
    }
  }
}

TEST_CASE("RFC 6455 §7.1.5 EOF after a clean close reports nothing") {
  for (role r : both_roles) {
    connection c(r);
    run(c, peer_frame(r, OP_CLOSE, close_body(1000)));
    event e;
    CHECK(!c.feed_eof(e));
    CHECK(c.state() == connection_state::closed);
    CHECK(c.peer_close_code() == 1000);
  }
}

TEST_CASE("RFC 6455 §7.1.5 EOF while closing (our close unanswered) is 1006") {
  for (role r : both_roles) {
    connection c(r);
    REQUIRE(c.close(1000) == send_result::ok);
    event e;
    REQUIRE(c.feed_eof(e));
    CHECK(e.type == event_type::close);
    CHECK(e.code == 1006);
    CHECK(!c.closed_cleanly());
  }
}

// ======================================================================================
// §5.5.2 / §5.5.3 ping and pong

TEST_CASE("RFC 6455 §5.5.2 a ping is reported and answered with an identical pong (Autobahn 2.1-2.6)") {
  bytes all125(125);
  for (std::size_t i = 0; i < 125; ++i) all125[i] = static_cast<std::byte>(255 - i);
  for (role r : both_roles) {
    for (const bytes& p : {bytes{}, str("Hello"), all125, hex("00 ff fe 80 c0")}) {
      INFO(role_name(r) << " payload " << to_hex(p));
      auto res = check_all_chunkings(r, peer_frame(r, OP_PING, p), {ev_ping(p)});
      CHECK(res.state == connection_state::open);
      auto frames = parse_frames(res.output);
      REQUIRE(frames.size() == 1);
      CHECK(frames[0].opcode == OP_PONG);
      CHECK(frames[0].fin);
      CHECK(frames[0].rsv == 0);
      CHECK(frames[0].masked == masked_output(r));
      CHECK(frames[0].payload == p);
    }
  }
}

TEST_CASE("RFC 6455 §5.5.2 ten pings give ten pongs, in order (Autobahn 2.10)") {
  for (role r : both_roles) {
    INFO(role_name(r));
    bytes wire;
    std::vector<recorded_event> expect;
    for (int i = 0; i < 10; ++i) {
      const bytes p = str("ping " + std::to_string(i));
      wire = cat(wire, peer_frame(r, OP_PING, p));
      expect.push_back(ev_ping(p));
    }
    auto res = check_all_chunkings(r, wire, expect);
    auto frames = parse_frames(res.output);
    REQUIRE(frames.size() == 10);
    for (int i = 0; i < 10; ++i) CHECK(frames[i].payload == str("ping " + std::to_string(i)));
  }
}

TEST_CASE("ws6455 limits: automatic pongs are capped at max_queued_pongs until the output drains") {
  config cfg;
  cfg.max_queued_pongs = 3;
  for (role r : both_roles) {
    INFO(role_name(r));
    bytes wire;
    std::vector<recorded_event> expect;
    for (int i = 0; i < 10; ++i) {
      wire = cat(wire, peer_frame(r, OP_PING, str(std::to_string(i))));
      expect.push_back(ev_ping(str(std::to_string(i))));
    }
    auto res = check_all_chunkings(cfg, r, wire, expect);  // every ping is still reported
    auto frames = parse_frames(res.output);
    // RFC 6455 §5.5.3: three pongs at most, the last one for the latest ping.
    REQUIRE(frames.size() == 3);
    for (auto& f : frames) CHECK(f.opcode == OP_PONG);
    CHECK(frames[0].payload == str("0"));
    CHECK(frames[1].payload == str("1"));
    CHECK(frames[2].payload == str("9"));
    // Draining makes room again.
    connection c(r, cfg);
    run(c, wire);
    drain(c);
    auto ev = run(c, peer_frame(r, OP_PING, str("again")));
    REQUIRE(ev.size() == 1);
    auto after = frames_of(c);
    REQUIRE(after.size() == 1);
    CHECK(after[0].payload == str("again"));
  }
  SUBCASE("default cap (16) against a flood of 1000 pings") {
    connection c(role::server);
    bytes wire;
    const bytes one = frame(OP_PING, str("flood"), true, K);
    for (int i = 0; i < 1000; ++i) wire.insert(wire.end(), one.begin(), one.end());
    auto ev = run(c, wire, random_chunks(4, 7));
    CHECK(ev.size() == 1000);
    CHECK(frames_of(c).size() <= 16);
    CHECK(c.state() == connection_state::open);
  }
}

TEST_CASE("RFC 6455 §5.5.2 auto_pong off: the ping is reported, nothing is queued") {
  config cfg;
  cfg.auto_pong = false;
  for (role r : both_roles) {
    auto res = check_all_chunkings(cfg, r, peer_frame(r, OP_PING, str("x")), {ev_ping(str("x"))});
    CHECK(res.output.empty());
  }
}

TEST_CASE("RFC 6455 §5.5.3 an unsolicited pong is reported and otherwise ignored (Autobahn 2.7-2.9)") {
  for (role r : both_roles) {
    INFO(role_name(r));
    auto res = check_all_chunkings(r, cat(peer_frame(r, OP_PONG, str("unsolicited")), peer_frame(r, OP_PONG, {}),
                                          peer_frame(r, OP_PING, str("p"))),
                                   {ev_pong(str("unsolicited")), ev_pong({}), ev_ping(str("p"))});
    auto frames = parse_frames(res.output);
    REQUIRE(frames.size() == 1);  // only the pong for the ping
    CHECK(frames[0].payload == str("p"));
    CHECK(res.state == connection_state::open);
  }
}

TEST_CASE("RFC 6455 §5.5.3 past max_queued_pongs the newest ping replaces the last pong not yet going out") {
  config cfg;
  cfg.max_queued_pongs = 2;
  for (role r : both_roles) {
    INFO(role_name(r));
    auto payloads = [](const connection& c) {
      std::vector<std::string> v;
      for (auto& f : frames_of(c)) {
        std::string s(f.payload.size(), '\0');
        if (!f.payload.empty()) std::memcpy(s.data(), f.payload.data(), f.payload.size());
        v.push_back((f.opcode == OP_PONG ? "pong " : f.opcode == OP_TEXT ? "text " : "other ") + s);
      }
      return v;
    };
    SUBCASE("frames the application queued after the pong stay, in order") {
      connection c(r, cfg);
      run(c, cat(peer_frame(r, OP_PING, str("1")), peer_frame(r, OP_PING, str("2"))));
      REQUIRE(c.send_text("data") == send_result::ok);
      run(c, peer_frame(r, OP_PING, str("3")));
      CHECK(payloads(c) == std::vector<std::string>{"pong 1", "text data", "pong 3"});
      run(c, cat(peer_frame(r, OP_PING, str("4")), peer_frame(r, OP_PING, str("5"))));
      CHECK(payloads(c) == std::vector<std::string>{"pong 1", "text data", "pong 5"});
    }
    SUBCASE("a pong partly written is not taken back") {
      connection c(r, cfg);
      run(c, cat(peer_frame(r, OP_PING, str("1")), peer_frame(r, OP_PING, str("2"))));
      const std::size_t first = frames_of(c)[0].header_bytes.size() + 1;
      c.consume_output(first + 1);  // pong 1 gone, one byte of pong 2 written
      run(c, peer_frame(r, OP_PING, str("3")));
      CHECK(c.pending_output().size() == first - 1);  // the rest of pong 2 only
      drain(c);
      run(c, peer_frame(r, OP_PING, str("4")));
      CHECK(payloads(c) == std::vector<std::string>{"pong 4"});
    }
    SUBCASE("a pinned pong (an asynchronous write reads it) is not taken back") {
      connection c(r, cfg);
      run(c, cat(peer_frame(r, OP_PING, str("1")), peer_frame(r, OP_PING, str("2"))));
      c.pin_output();
      run(c, peer_frame(r, OP_PING, str("3")));
      CHECK(payloads(c) == std::vector<std::string>{"pong 1", "pong 2"});
    }
    SUBCASE("max_queued_pongs 0: no automatic pongs at all") {
      config none = cfg;
      none.max_queued_pongs = 0;
      connection c(r, none);
      auto ev = run(c, cat(peer_frame(r, OP_PING, str("1")), peer_frame(r, OP_PING, str("2"))));
      CHECK(ev.size() == 2);
      CHECK(c.pending_output().empty());
    }
  }
}

// ======================================================================================
// The order rule: the application's answers to earlier events come before the engine's
// close reply and pongs

TEST_CASE("ws6455 order: a message then a close in one buffer: the echo is written before the close reply") {
  for (role r : both_roles) {
    for (delivery m : {delivery::whole_messages, delivery::streaming}) {
      INFO(role_name(r) << (m == delivery::streaming ? " streaming" : " whole"));
      config cfg;
      cfg.mode = m;
      check_echo_order(cfg, r, cat(peer_frame(r, OP_TEXT, str("last words")), peer_frame(r, OP_CLOSE, close_body(1000, "bye"))),
                       {ev_text("last words"), ev_close(1000, "bye")});
      // Fragmented, split across reads, and an empty close.
      check_echo_order(cfg, r,
                       cat(peer_frame(r, OP_BINARY, pattern(300), false), peer_frame(r, OP_CONT, pattern(5, 2)),
                           peer_frame(r, OP_CLOSE, {})),
                       {ev_binary(cat(pattern(300), pattern(5, 2))), ev_close(1005)});
      // A message, then a ping, then a close: echo, pong, close reply.
      check_echo_order(cfg, r,
                       cat(peer_frame(r, OP_TEXT, str("a")), peer_frame(r, OP_PING, str("p")), peer_frame(r, OP_TEXT, str("b")),
                           peer_frame(r, OP_CLOSE, close_body(1001))),
                       {ev_text("a"), ev_ping(str("p")), ev_text("b"), ev_close(1001)});
    }
  }
}

TEST_CASE("ws6455 auto_close_reply off: the application answers the peer's close with its own code and reason") {
  config cfg;
  cfg.auto_close_reply = false;
  for (role r : both_roles) {
    INFO(role_name(r));
    connection c(r, cfg);
    auto ev = run(c, cat(peer_frame(r, OP_TEXT, str("last")), peer_frame(r, OP_CLOSE, close_body(1001, "going"))));
    REQUIRE(ev.size() == 2);
    CHECK(ev[1] == ev_close(1001, "going"));
    CHECK(c.pending_output().empty());  // no automatic reply
    CHECK(c.state() == connection_state::close_received);
    CHECK(!c.want_read());
    CHECK(!c.should_close_transport());
    CHECK(c.peer_close_code() == 1001);
    // §5.5.1: it may still finish what it is sending, then closes with its own code.
    CHECK(c.send_text("the echo of last") == send_result::ok);
    CHECK(c.close(4000, "my reason") == send_result::ok);
    CHECK(c.state() == connection_state::closed);
    CHECK(c.closed_cleanly());
    auto frames = frames_of(c);
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].opcode == OP_TEXT);
    CHECK(close_code_of(frames[1]) == 4000);
    CHECK(frames[1].payload == close_body(4000, "my reason"));
    CHECK(frames[1].masked == masked_output(r));
    CHECK(c.close(1000) == send_result::closed);  // one close only
    CHECK(c.send_text("more") == send_result::closed);
    drain(c);
    CHECK(c.should_close_transport() == (r == role::server));
  }
  SUBCASE("on (the default): the close is echoed at once, and close() is refused") {
    connection c(role::server);
    auto ev = run(c, frame(OP_CLOSE, close_body(1001, "going"), true, K));
    REQUIRE(ev.size() == 1);
    CHECK(c.state() == connection_state::closed);
    auto frames = frames_of(c);
    REQUIRE(frames.size() == 1);
    CHECK(close_code_of(frames[0]) == 1001);
    CHECK(c.close(4000, "mine") == send_result::closed);
  }
  SUBCASE("off, after our own close: the peer's close completes the handshake, nothing more to send") {
    connection c(role::server, cfg);
    REQUIRE(c.close(1000) == send_result::ok);
    run(c, frame(OP_CLOSE, close_body(1000), true, K));
    CHECK(c.state() == connection_state::closed);
    CHECK(frames_of(c).size() == 1);
  }
}
