// The connection object itself: construction from a config (validation, clamping,
// settings()), moves, storage release and memory use, read-only input in the client
// role, std::error_code interop, and its size.
#include <system_error>
#include <type_traits>

#include "harness.hpp"

using namespace wst;

namespace {

constexpr role both_roles[] = {role::server, role::client};
const char* role_name(role r) { return r == role::server ? "server" : "client"; }

std::vector<recorded_event> feed_all(connection& c, bytes wire) { return run(c, wire); }

}  // namespace

// ======================================================================================
// Size

TEST_CASE("ws6455 connection: an idle connection object is small") {
  // Idle footprint of an adapter: the object itself, no heap until needed.
  CHECK(sizeof(connection) <= 128);
  connection c(role::server);
  CHECK(c.memory_usage() == 0);
}

// ======================================================================================
// Moves (a moved-from connection is a valid, empty object)

TEST_CASE("ws6455 connection: a moved-from connection is empty and safe to use") {
  for (role r : both_roles) {
    INFO(role_name(r));
    config cfg;
    cfg.deflate = deflate_params{};
    connection a(r, cfg);
    // Pending output, a message half reassembled, a pong queued.
    REQUIRE(a.send_text("queued") == send_result::ok);
    feed_all(a, cat(peer_frame(r, OP_TEXT, str("half"), false), peer_frame(r, OP_PING, str("p"))));
    const bytes out = as_bytes(a.pending_output());
    REQUIRE(!out.empty());

    connection b(std::move(a));
    CHECK(as_bytes(b.pending_output()) == out);
    auto ev = feed_all(b, peer_frame(r, OP_CONT, str("-done")));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0] == ev_text("half-done"));

    // The source: failed, nothing pending, input ignored, sends refused, no crash.
    CHECK(a.state() == connection_state::failed);
    CHECK(a.pending_output().empty());
    CHECK(!a.want_write());
    CHECK(!a.want_read());
    CHECK(a.memory_usage() == 0);
    CHECK(a.send_text("x") == send_result::closed);
    CHECK(a.send_ping() == send_result::closed);
    CHECK(a.close() == send_result::closed);
    a.consume_output(100);
    a.pin_output();
    a.release_storage();
    bytes more = peer_frame(r, OP_TEXT, str("ignored"));
    std::array<event, 4> evs;
    auto fr = a.feed(more, evs);
    CHECK(fr.consumed == more.size());
    CHECK(fr.events == 0);
    event e;
    CHECK(!a.feed_eof(e));

    // Move assignment, both ways, and self-move.
    connection c(r);
    c = std::move(b);
    CHECK(as_bytes(c.pending_output()).size() >= out.size());
    CHECK(b.pending_output().empty());
    CHECK(b.send_binary(str("x")) == send_result::closed);
    b = std::move(c);
    CHECK(b.state() == connection_state::open);
    CHECK(b.send_text("again") == send_result::ok);
    connection& self = b;
    b = std::move(self);
    CHECK(b.state() == connection_state::open);
    // A moved-from object can be assigned a live one again.
    a = connection(r);
    CHECK(a.state() == connection_state::open);
    CHECK(a.send_text("new") == send_result::ok);
  }
}

// ======================================================================================
// Configuration: validated up front, never a silently dead connection

TEST_CASE("ws6455 config: validate() names what cannot work") {
  CHECK(validate(config{}) == config_error::none);
  config c;
  c.deflate = deflate_params{};
  CHECK(validate(c) == config_error::none);
  for (int bits : {0, 7, 16, 255}) {
    INFO(bits);
    config s = c, t = c;
    s.deflate->server_max_window_bits = static_cast<std::uint8_t>(bits);
    t.deflate->client_max_window_bits = static_cast<std::uint8_t>(bits);
    CHECK(validate(s) == config_error::deflate_window_bits);
    CHECK(validate(t) == config_error::deflate_window_bits);
  }
  for (int bits : {8, 9, 15}) {
    config s = c;
    s.deflate->server_max_window_bits = s.deflate->client_max_window_bits = static_cast<std::uint8_t>(bits);
    CHECK(validate(s) == config_error::none);
  }
  config m = c;
  m.deflate->mem_level = 0;
  CHECK(validate(m) == config_error::deflate_mem_level);
  m.deflate->mem_level = 10;
  CHECK(validate(m) == config_error::deflate_mem_level);
  config w;
  w.max_write_buffer_size = 0;
  CHECK(validate(w) == config_error::zero_write_buffer);
  // Zero frame/message/fragment limits and no pongs are strict, not broken: allowed.
  config z;
  z.max_frame_size = z.max_message_size = 0;
  z.max_fragments = 0;
  z.max_queued_pongs = 0;
  CHECK(validate(z) == config_error::none);
}

TEST_CASE("ws6455 config: make() refuses an invalid config; the constructor fails loudly with 1011") {
  config bad;
  bad.deflate = deflate_params{};
  bad.deflate->client_max_window_bits = 16;
  for (role r : both_roles) {
    INFO(role_name(r));
    auto made = connection::make(r, bad);
    REQUIRE(!made);
    CHECK(made.error() == config_error::deflate_window_bits);
    auto good = connection::make(r, config{});
    REQUIRE(good.has_value());
    CHECK(good->state() == connection_state::open);
    CHECK(good->send_text("hi") == send_result::ok);

    // Constructed directly: failed at once, the 1011 close queued, the fail reported by
    // the first feed() (whatever the input), once.
    connection c(r, bad);
    CHECK(c.state() == connection_state::failed);
    CHECK(c.last_error() == protocol_error::internal_error);
    auto frames = check_output_ends_with_close(c.pending_output(), 1011, r == role::client);
    CHECK(frames.back().payload == close_body(1011, describe(config_error::deflate_window_bits)));
    auto ev = run(c, peer_frame(r, OP_TEXT, str("swallowed")));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].type == event_type::fail);
    CHECK(ev[0].code == 1011);
    CHECK(ev[0].error == protocol_error::internal_error);
    CHECK(ev[0].reason == describe(config_error::deflate_window_bits));
    CHECK(run(c, peer_frame(r, OP_TEXT, str("more"))).empty());
    CHECK(c.send_text("x") == send_result::closed);
    c.consume_output(c.pending_output().size());
    CHECK(c.should_close_transport());

    // feed_eof() reports it too when no input came first.
    connection d(r, bad);
    event e;
    REQUIRE(d.feed_eof(e));
    CHECK(e.type == event_type::fail);
    CHECK(e.code == 1011);
    CHECK(!d.feed_eof(e));
    // With an empty input, too.
    connection f(r, bad);
    std::array<event, 2> evs;
    auto fr = f.feed(std::span<std::byte>{}, evs);
    CHECK(fr.events == 1);
    CHECK(evs[0].type == event_type::fail);
  }
  SUBCASE("max_write_buffer_size 0") {
    config w;
    w.max_write_buffer_size = 0;
    CHECK(connection::make(role::server, w).error() == config_error::zero_write_buffer);
    connection c(role::server, w);
    CHECK(c.state() == connection_state::failed);
  }
}

TEST_CASE("ws6455 config: sizes past the 32-bit caps are clamped; settings() reports what is in effect") {
  config cfg;
  cfg.max_frame_size = SIZE_MAX;
  cfg.max_message_size = std::size_t{1} << 40;
  cfg.max_write_buffer_size = SIZE_MAX;
  cfg.write_buffer_size = SIZE_MAX;
  cfg.max_queued_pongs = 1u << 20;
  cfg.max_fragments = 7;
  cfg.auto_close_reply = false;
  cfg.mode = delivery::streaming;
  cfg.deflate = deflate_params{};
  cfg.deflate->server_max_window_bits = 10;
  cfg.deflate->compress_threshold = 99;
  counting_random rnd;
  rnd.install(cfg);
  connection c(role::client, cfg);
  REQUIRE(c.state() == connection_state::open);
  const config s = c.settings();
  CHECK(s.max_frame_size == config::max_size_limit);
  CHECK(s.max_message_size == config::max_size_limit);
  CHECK(s.max_write_buffer_size == config::max_output_limit);
  CHECK(s.write_buffer_size == config::max_output_limit);
  CHECK(s.max_queued_pongs == 0xFFFF);
  CHECK(s.max_fragments == 7);
  CHECK(!s.auto_close_reply);
  CHECK(s.mode == delivery::streaming);
  REQUIRE(s.deflate.has_value());
  CHECK(s.deflate->server_max_window_bits == 10);
  CHECK(s.deflate->compress_threshold == 99);
  CHECK((s.random == cfg.random));
  CHECK(s.random_context == cfg.random_context);
  // The injected random source is the one used.
  REQUIRE(c.send_text("x") == send_result::ok);
  CHECK(rnd.calls == 1);
  // A frame a little over 4 GiB is refused at its header (1009).
  auto ev = run(c, header(OP_BINARY, (std::uint64_t{1} << 32) + 5));
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].error == protocol_error::frame_too_large);
}

// ======================================================================================
// release_storage(): the caller is done with the events, storage goes back now

TEST_CASE("ws6455 release_storage: a large message's storage is given back without another feed") {
  for (role r : both_roles) {
    for (delivery m : {delivery::whole_messages, delivery::streaming}) {
      INFO(role_name(r) << (m == delivery::streaming ? " streaming" : " whole"));
      config cfg;
      cfg.mode = m;
      connection c(r, cfg);
      // 2 MiB in 4 fragments (whole mode reassembles), then nothing more from the peer.
      bytes wire;
      for (int i = 0; i < 4; ++i) wire = cat(wire, peer_frame(r, i ? OP_CONT : OP_BINARY, pattern(512u << 10, i), i == 3));
      std::array<event, 16> evs;
      std::size_t off = 0, got = 0;
      while (off < wire.size()) {
        auto fr = c.feed(std::span<std::byte>(wire).subspan(off), evs);
        off += fr.consumed;
        for (std::size_t i = 0; i < fr.events; ++i) got += evs[i].data.size();
      }
      CHECK(got == (2u << 20));
      if (m == delivery::whole_messages) CHECK(c.memory_usage() >= (2u << 20));
      c.release_storage();
      CHECK(c.memory_usage() <= 4096 + 512);
      c.release_storage();  // idempotent
      // Still works afterwards.
      auto ev = run(c, peer_frame(r, OP_TEXT, str("next"), false));
      CHECK(ev.size() == (m == delivery::streaming ? 1u : 0u));
      ev = run(c, peer_frame(r, OP_CONT, str("!")));
      REQUIRE(!ev.empty());
      CHECK(ev.back().fin);
    }
  }
}

TEST_CASE("ws6455 retain_storage: reassembly and output capacity stay across messages until release_storage") {
  for (bool retain : {false, true}) {
    INFO("retain_storage " << retain);
    config cfg;
    cfg.retain_storage = retain;
    connection c(role::server, cfg);
    // Two 2 MiB fragmented messages, each echoed and drained, as an echo server does.
    std::size_t after_first = 0;
    for (int msg = 0; msg < 2; ++msg) {
      bytes wire;
      for (int i = 0; i < 4; ++i) wire = cat(wire, frame(i ? OP_CONT : OP_BINARY, pattern(512u << 10, i), i == 3, K));
      std::array<event, 4> evs;
      std::size_t off = 0;
      while (off < wire.size()) {
        auto fr = c.feed(std::span<std::byte>(wire).subspan(off), evs);
        off += fr.consumed;
        for (std::size_t i = 0; i < fr.events; ++i) REQUIRE(c.send_binary(evs[i].data) == send_result::ok);
      }
      c.consume_output(c.pending_output().size());
      // The next feed (or, here, nothing) would reuse what the first message grew.
      std::array<event, 1> none;
      (void)c.feed(std::span<std::byte>(), none);
      if (msg == 0) after_first = c.memory_usage();
    }
    if (retain) {
      // Kept: 2 MiB of reassembly and 2 MiB of output, no allocation for the second message.
      CHECK(after_first >= (4u << 20));
      CHECK(c.memory_usage() == after_first);
      c.release_storage();  // the caller's "idle": given back
      CHECK(c.memory_usage() <= (128u << 10) + 4096 + 512);
    } else {
      // Given back after each message: past 1 MiB of reassembly, past write_buffer_size of output.
      CHECK(after_first < (1u << 20));
    }
  }
}

TEST_CASE("ws6455 release_storage: the drained output buffer goes, however small, and comes back on the next send") {
  connection c(role::server);
  REQUIRE(c.send_text("welcome") == send_result::ok);
  CHECK(c.memory_usage() > 0);
  c.release_storage();  // not drained yet: kept
  CHECK(as_bytes(c.pending_output()) == cat(bytes{std::byte{0x81}, std::byte{7}}, str("welcome")));
  c.consume_output(c.pending_output().size());
  c.release_storage();
  CHECK(c.memory_usage() == 0);
  REQUIRE(c.send_text("again") == send_result::ok);
  CHECK(as_bytes(c.pending_output()) == cat(bytes{std::byte{0x81}, std::byte{5}}, str("again")));
}

TEST_CASE("ws6455 release_storage: a message still being reassembled is kept") {
  connection c(role::server);
  run(c, frame(OP_TEXT, str(utf8_text(10000)), false, K));
  const std::size_t before = c.memory_usage();
  CHECK(before >= 10000);
  c.release_storage();
  CHECK(c.memory_usage() == before);
  auto ev = run(c, frame(OP_CONT, str("end"), true, K));
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].data.size() == 10003);
  CHECK(ev[0] == ev_text(utf8_text(10000) + "end"));
}

// ======================================================================================
// feed() with read-only input

TEST_CASE("ws6455 feed: read-only input in the client role") {
  // Nothing is unmasked on the client side: the input is only read.
  const bytes wire = cat(frame(OP_TEXT, str("Hello")), frame(OP_BINARY, pattern(300), false), frame(OP_PING, str("p")),
                         frame(OP_CONT, pattern(3, 2)), frame(OP_CLOSE, close_body(1000)));
  const std::vector<recorded_event> want = {ev_text("Hello"), ev_ping(str("p")), ev_binary(cat(pattern(300), pattern(3, 2))),
                                            ev_close(1000)};
  for (const auto& ch : all_chunkings(wire.size())) {
    INFO(ch.name());
    connection c(role::client);
    std::vector<event> evbuf(ch.event_capacity);
    std::vector<recorded_event> got;
    std::size_t base = 0;
    for (std::size_t sz : chunk_sizes(ch, wire.size())) {
      const bytes piece(wire.begin() + base, wire.begin() + base + sz);
      const std::span<const std::byte> in(piece);
      std::size_t off = 0;
      while (off < in.size()) {
        auto fr = c.feed(in.subspan(off), std::span<event>(evbuf));
        off += fr.consumed;
        for (std::size_t i = 0; i < fr.events; ++i) got.push_back(record(evbuf[i]));
        REQUIRE((fr.consumed || fr.events));
      }
      base += sz;
    }
    CHECK_EQ(describe(got), describe(want));
  }
  // A const vector picks the read-only overload; a writable one the writable overload.
  const bytes cw = frame(OP_TEXT, str("const"));
  connection c(role::client);
  std::array<event, 2> evs;
  auto fr = c.feed(cw, evs);
  REQUIRE(fr.events == 1);
  CHECK(evs[0].text() == "const");
}

TEST_CASE("ws6455 feed: read-only input in the server role fails the connection with 1011") {
  connection c(role::server);
  const bytes wire = frame(OP_TEXT, str("Hello"), true, K);
  std::array<event, 2> evs;
  auto fr = c.feed(std::span<const std::byte>(wire), evs);
  CHECK(fr.consumed == wire.size());
  REQUIRE(fr.events == 1);
  CHECK(evs[0].type == event_type::fail);
  CHECK(evs[0].code == 1011);
  CHECK(evs[0].error == protocol_error::internal_error);
  CHECK(evs[0].reason == "read-only input in the server role");
  CHECK(wire == frame(OP_TEXT, str("Hello"), true, K));  // not written
  CHECK(c.state() == connection_state::failed);
  check_output_ends_with_close(c.pending_output(), 1011, false);
  // With no room for the event, it is reported by the next call.
  connection d(role::server);
  auto fr2 = d.feed(std::span<const std::byte>(wire), std::span<event>{});
  CHECK(fr2.events == 0);
  auto fr3 = d.feed(std::span<const std::byte>{}, evs);
  REQUIRE(fr3.events == 1);
  CHECK(evs[0].code == 1011);
}

// ======================================================================================
// std::error_code

TEST_CASE("ws6455 errors: protocol_error, send_result and config_error are std::error_code enums") {
  static_assert(std::is_error_code_enum_v<protocol_error>);
  static_assert(std::is_error_code_enum_v<send_result>);
  static_assert(std::is_error_code_enum_v<config_error>);
  std::error_code ec = protocol_error::invalid_utf8;
  CHECK(ec);
  CHECK(ec.category() == protocol_error_category());
  CHECK(ec.message() == "invalid UTF-8 in text message");
  CHECK(std::string(ec.category().name()) == "ws6455.protocol_error");
  CHECK(ec == protocol_error::invalid_utf8);
  CHECK(ec != send_result::invalid_utf8);  // same value, another category
  CHECK(!std::error_code(protocol_error::none));

  connection c(role::server);
  std::error_code sent = c.send_text("ok");
  CHECK(!sent);  // ok is success
  sent = c.send_text("\xff");
  CHECK(sent == send_result::invalid_utf8);
  CHECK(sent.category() == send_result_category());
  CHECK(sent.message() == "text is not valid UTF-8");
  CHECK(std::error_code(send_result::compression_failed).message() == "compression failed");
  CHECK(send_result::compression_failed != send_result::closed);
  CHECK(std::error_code(config_error::deflate_window_bits).message() ==
        "invalid config: deflate window bits outside 8-15");
  CHECK(std::error_code(config_error::deflate_window_bits).category() == config_error_category());
}
