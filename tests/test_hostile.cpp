// Hostile input that the other suites do not cover yet, and the reproducers of the fuzz
// targets' findings (fuzz/, docs/fuzzing.md). The README's hostile-input table cites these by name.
//
// Every receive test runs under every chunking (harness.hpp check_all_chunkings): the
// same verdict for the input fed whole, byte by byte, and in random splits.
#include <zlib.h>

#include "harness.hpp"

using namespace wst;

namespace {

// Raw deflate as permessage-deflate sends it (RFC 7692 §7.2.1): sync flush, tail removed.
bytes deflate_raw(const bytes& in, int window_bits = 15) {
  z_stream s{};
  REQUIRE(deflateInit2(&s, Z_BEST_COMPRESSION, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  bytes out(deflateBound(&s, in.size()) + 16);
  s.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&s, Z_SYNC_FLUSH) == Z_OK);
  const std::size_t produced = out.size() - s.avail_out;
  deflateEnd(&s);
  REQUIRE(produced >= 4);
  return bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(produced - 4));  // without 00 00 ff ff
}

config deflate_config(std::size_t max_message = 64u << 20) {
  config cfg;
  cfg.deflate = deflate_params{};
  cfg.max_message_size = max_message;
  return cfg;
}

// Fewer chunkings for inputs of a few KiB: every split size would take long under ASan.
std::vector<chunking> some_chunkings() {
  std::vector<chunking> v{whole_input(16), whole_input(1), byte_by_byte(1)};
  for (std::size_t s : {3, 7, 13, 100}) v.push_back({chunking::fixed, s, 0, 2});
  for (std::uint32_t seed = 1; seed <= 4; ++seed) v.push_back(random_chunks(seed, seed));
  return v;
}

}  // namespace

TEST_SUITE("hostile: permessage-deflate") {
  TEST_CASE("an inflating bomb (16 MiB of zeros in ~16 KiB) is 1009 once the output passes max_message_size") {
    const bytes plain = filled(16u << 20, 0);
    const bytes z = deflate_raw(plain);
    CHECK(z.size() < 20000);
    for (role r : {role::server, role::client}) {
      INFO("role " << (r == role::server ? "server" : "client"));
      const bytes input = peer_frame(r, OP_BINARY, z, true, RSV1);
      check_fails(deflate_config(64u << 10), r, input, {}, protocol_error::message_too_large);
    }
  }

  TEST_CASE("a bomb split over many fragments is stopped the same way") {
    const bytes z = deflate_raw(filled(4u << 20, 'a'));
    bytes input;
    const std::size_t step = z.size() / 5 + 1;
    for (std::size_t i = 0; i < z.size(); i += step) {
      const bytes piece(z.begin() + i, z.begin() + std::min(z.size(), i + step));
      const bool first = i == 0, last = i + step >= z.size();
      input = cat(input, peer_frame(role::server, first ? OP_TEXT : OP_CONT, piece, last, first ? RSV1 : 0));
    }
    check_fails(deflate_config(1u << 20), role::server, input, {}, protocol_error::message_too_large);
  }

  TEST_CASE("a message inflating to exactly max_message_size is delivered") {
    bytes plain;  // compressible: the wire size stays far below the limit
    for (int i = 0; i < 50; ++i) plain = cat(plain, pattern(100, 7));
    const bytes input = peer_frame(role::server, OP_BINARY, deflate_raw(plain), true, RSV1);
    check_all_chunkings(deflate_config(5000), role::server, input, {ev_binary(plain)}, false, some_chunkings());
    check_fails(deflate_config(4999), role::server, input, {}, protocol_error::message_too_large);
  }

  TEST_CASE("RSV1 on a continuation frame or a control frame is 1002 even with deflate negotiated (RFC 7692 §6.1)") {
    const bytes z = deflate_raw(str("Hello"));
    SUBCASE("continuation") {
      const bytes input = cat(peer_frame(role::server, OP_TEXT, bytes(z.begin(), z.begin() + 2), false, RSV1),
                              peer_frame(role::server, OP_CONT, bytes(z.begin() + 2, z.end()), true, RSV1));
      check_fails(deflate_config(), role::server, input, {}, protocol_error::reserved_bits);
    }
    SUBCASE("ping") {
      check_fails(deflate_config(), role::server, peer_frame(role::server, OP_PING, str("x"), true, RSV1), {},
                  protocol_error::reserved_bits);
    }
    SUBCASE("close") {
      check_fails(deflate_config(), role::client, peer_frame(role::client, OP_CLOSE, close_body(1000), true, RSV1), {},
                  protocol_error::reserved_bits);
    }
    SUBCASE("RSV2 / RSV3 are never claimed") {
      check_fails(deflate_config(), role::server, peer_frame(role::server, OP_TEXT, z, true, RSV1 | RSV2), {},
                  protocol_error::reserved_bits);
    }
  }

  TEST_CASE("a compressed text message that inflates to invalid UTF-8 is 1007") {
    const bytes input = peer_frame(role::server, OP_TEXT, deflate_raw(hex("48 69 f4 90 80 80")), true, RSV1);
    check_fails(deflate_config(), role::server, input, {}, protocol_error::invalid_utf8);
  }

  TEST_CASE("a corrupt deflate stream is 1007") {
    // A reserved block type (BTYPE=11) right away.
    check_fails(deflate_config(), role::server, peer_frame(role::server, OP_BINARY, hex("07 00"), true, RSV1), {},
                protocol_error::bad_compressed_data);
    // A stored block whose LEN/NLEN do not match.
    check_fails(deflate_config(), role::server, peer_frame(role::server, OP_BINARY, hex("00 05 00 00 00"), true, RSV1),
                {}, protocol_error::bad_compressed_data);
  }

  TEST_CASE("RSV1 without deflate negotiated is 1002") {
    check_fails(config{}, role::server, peer_frame(role::server, OP_TEXT, deflate_raw(str("Hello")), true, RSV1), {},
                protocol_error::reserved_bits);
  }
}

// Finding F1 of fuzz_connection_chunks (docs/fuzzing.md): in a compressed text message,
// inflated bytes that are invalid UTF-8 followed, in the same deflate stream, by corrupt
// data (or by output past max_message_size) gave invalid_utf8 (1007) when the bad bytes
// arrived in an earlier feed than the corrupt spot, but bad_compressed_data (1007, another
// reason) or message_too_large (1009) when both arrived in one feed: on_compressed()
// acted on the codec status before validating the bytes inflated in that call. Fixed in
// lib/connection.cpp (the inflated bytes are validated first); these are the reproducers.
TEST_SUITE("hostile: fuzz findings") {
  TEST_CASE("F1a: invalid UTF-8 inflated before a corrupt block is 1007 invalid_utf8 for every split") {
    // Stored block (BFINAL=0) of one byte, ff, then a block of the reserved type 11.
    const bytes input = peer_frame(role::server, OP_TEXT, hex("00 01 00 fe ff ff 07"), true, RSV1);
    check_fails(deflate_config(), role::server, input, {}, protocol_error::invalid_utf8);
  }

  TEST_CASE("F1b: invalid UTF-8 inflated up to max_message_size is 1007 for every split, not 1009 when whole") {
    // 100 bytes of ff compress to a few bytes (under the limit on the wire) and inflate
    // past max_message_size 10: fed whole, the output limit is hit before anything is
    // validated (1009); fed in pieces, the first ff fails UTF-8 (1007).
    const bytes z = deflate_raw(filled(100, 0xff));
    REQUIRE(z.size() <= 10);
    const bytes input = peer_frame(role::server, OP_TEXT, z, true, RSV1);
    check_fails(deflate_config(10), role::server, input, {}, protocol_error::invalid_utf8);
  }
}

// Finding F2 of fuzz_deflate (docs/fuzzing.md), decided: zlib checks a match distance
// against the inflate window only for the part that reaches back before the output of
// the current inflate() call. A peer whose stream uses distances past the negotiated
// window (here: 2000 bytes back under server_max_window_bits=9, a 512-byte window) is
// inflated when the frame arrives in one feed, and failed with 1007 when it arrives in
// pieces. RFC 7692 §7.1.2 lets the receiver fail such a peer, and does not require it.
// We keep the negotiated (small) window, which is what negotiating it saves in memory,
// rather than inflate every peer with 32 KiB: the guarantee is that such a stream gives
// the intact message or 1007 (bad_compressed_data), never anything else, under any split.
TEST_SUITE("hostile: decided findings") {
  TEST_CASE("F2: a deflate distance past the negotiated window gives the message or 1007, under every split") {
    const bytes x = pattern(2000, 3);
    const bytes z = deflate_raw(cat(x, x), 15);  // the peer compresses with a 32 KiB window
    config cfg = deflate_config();
    cfg.deflate->server_max_window_bits = 9;      // but negotiated 9 for its messages
    const bytes input = peer_frame(role::client, OP_BINARY, z, true, RSV1);
    for (const chunking& ch : {whole_input(16), byte_by_byte(16), chunking{chunking::fixed, 100, 0, 4}}) {
      INFO("chunking: " << ch.name());
      connection c(role::client, cfg);
      const auto got = run(c, input, ch);
      REQUIRE(got.size() == 1);
      if (got[0].type == event_type::binary) {
        CHECK(got[0].data == cat(x, x));
      } else {
        CHECK(got[0].type == event_type::fail);
        CHECK(got[0].error == protocol_error::bad_compressed_data);
        CHECK(got[0].code == 1007);
      }
    }
  }
}

TEST_SUITE("hostile: frame layer") {
  TEST_CASE("a header trickled one byte per feed still fails at the first impossible byte") {
    // 0x83: reserved opcode; the failure must not wait for the rest of the header.
    connection c(role::server);
    std::vector<event> ev(4);
    bytes b0 = hex("83");
    auto r = c.feed(b0, ev);
    REQUIRE(r.consumed == 1);
    CHECK(r.events == 0);  // the second byte (mask bit, length) is still needed for the check
    bytes b1 = hex("80");
    r = c.feed(b1, ev);
    REQUIRE(r.events == 1);
    CHECK(ev[0].type == event_type::fail);
    CHECK(ev[0].error == protocol_error::reserved_opcode);
  }

  TEST_CASE("a declared 2^63-1 byte frame with a few bytes behind it fails at once, without buffering") {
    const bytes input = cat(header(OP_BINARY, 0x7FFFFFFFFFFFFFFFull, true, K), filled(64, 1));
    check_fails(role::server, input, protocol_error::frame_too_large);
  }

  TEST_CASE("a never-draining peer: a ping flood queues at most max_queued_pongs pongs") {
    bytes input;
    for (int i = 0; i < 500; ++i) input = cat(input, peer_frame(role::server, OP_PING, str("p")));
    config cfg;
    cfg.max_queued_pongs = 4;
    connection c(role::server, cfg);
    auto res = run_ex(c, input, whole_input(64));
    CHECK(res.events.size() == 500);
    CHECK(parse_frames(res.output).size() == 4);
  }

  TEST_CASE("after a failure nothing more is reported, whatever follows") {
    const bytes input = cat(peer_frame(role::server, OP_TEXT, hex("ff")), peer_frame(role::server, OP_TEXT, str("late")),
                            peer_frame(role::server, OP_CLOSE, close_body(1000)));
    check_fails(role::server, input, protocol_error::invalid_utf8);
  }
}
