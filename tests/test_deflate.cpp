// permessage-deflate: the zlib codec (RFC 7692 §7.2) and negotiation (§5, §7.1).
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "deflate/deflate_codec.hpp"
#include "ws6455/config.hpp"
#include "ws6455/permessage_deflate.hpp"

using namespace ws6455;
using detail::codec_status;
using bytes = std::vector<std::byte>;

namespace {

bytes hex(std::string_view h) {
  bytes out;
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (std::size_t i = 0; i < h.size();) {
    if (h[i] == ' ') { ++i; continue; }
    out.push_back(static_cast<std::byte>(nib(h[i]) * 16 + nib(h[i + 1])));
    i += 2;
  }
  return out;
}
bytes from(std::string_view s) {
  bytes out(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) out[i] = static_cast<std::byte>(s[i]);
  return out;
}
std::string str(const bytes& b) {
  std::string s(b.size(), '\0');
  for (std::size_t i = 0; i < b.size(); ++i) s[i] = static_cast<char>(b[i]);
  return s;
}

constexpr std::size_t unlimited = SIZE_MAX;

bytes compress(detail::deflater& d, const bytes& in, bool fin = true) {
  bytes out;
  REQUIRE(d.compress(in, fin, out) == codec_status::ok);
  return out;
}

// Inflates one whole message; REQUIREs ok.
bytes inflate(detail::inflater& inf, const bytes& in, std::size_t max_out = unlimited) {
  bytes out;
  std::size_t consumed = 0;
  REQUIRE(inf.inflate(in, true, out, max_out, consumed) == codec_status::ok);
  CHECK(consumed == in.size());
  return out;
}

detail::inflater make_inflater(int bits = 15) {
  detail::inflater i;
  REQUIRE(i.init(bits));
  return i;
}
detail::deflater make_deflater(int bits = 15, int mem = 8) {
  detail::deflater d;
  REQUIRE(d.init(bits, mem));
  return d;
}

bytes text_corpus(std::size_t n, unsigned seed) {
  static const char* words[] = {"websocket ", "frame ", "deflate ", "{\"id\":", "42, ", "\"name\": \"x\", ",
                                "the ", "quick ", "brown ", "fox\n", "permessage ", "window "};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < n) s += words[rng() % std::size(words)];
  s.resize(n);
  return from(s);
}
bytes random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  bytes b(n);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

}  // namespace

// ---------------------------------------------------------------------------------------
TEST_SUITE("RFC 7692 §7.2.3 examples") {
  TEST_CASE("§7.2.3.1 a message compressed in one frame") {
    auto d = make_deflater();
    CHECK(compress(d, from("Hello")) == hex("f2 48 cd c9 c9 07 00"));
    auto i = make_inflater();
    CHECK(str(inflate(i, hex("f2 48 cd c9 c9 07 00"))) == "Hello");
  }

  TEST_CASE("§7.2.3.1 fragmented: f2 48 cd + c9 c9 07 00") {
    auto i = make_inflater();
    bytes out;
    std::size_t consumed = 0;
    CHECK(i.inflate(hex("f2 48 cd"), false, out, unlimited, consumed) == codec_status::ok);
    CHECK(consumed == 3);
    CHECK(i.inflate(hex("c9 c9 07 00"), true, out, unlimited, consumed) == codec_status::ok);
    CHECK(consumed == 4);
    CHECK(str(out) == "Hello");
  }

  TEST_CASE("§7.2.3.2 sharing the LZ77 window: the second Hello is f2 00 11 00 00") {
    auto d = make_deflater();
    auto i = make_inflater();
    const bytes first = compress(d, from("Hello"));
    const bytes second = compress(d, from("Hello"));
    CHECK(first == hex("f2 48 cd c9 c9 07 00"));
    CHECK(second == hex("f2 00 11 00 00"));
    CHECK(str(inflate(i, first)) == "Hello");
    CHECK(str(inflate(i, second)) == "Hello");
  }

  TEST_CASE("no context takeover: reset() makes the second Hello stand alone") {
    auto d = make_deflater();
    auto i = make_inflater();
    CHECK(compress(d, from("Hello")) == hex("f2 48 cd c9 c9 07 00"));
    d.reset();
    CHECK(compress(d, from("Hello")) == hex("f2 48 cd c9 c9 07 00"));
    CHECK(str(inflate(i, hex("f2 48 cd c9 c9 07 00"))) == "Hello");
    i.reset();
    CHECK(str(inflate(i, hex("f2 48 cd c9 c9 07 00"))) == "Hello");
    // Without the reset the window carries over; after it, a back reference fails.
    i.reset();
    bytes out;
    std::size_t consumed = 0;
    CHECK(i.inflate(hex("f2 00 11 00 00"), true, out, unlimited, consumed) == codec_status::error);
  }

  TEST_CASE("§7.2.3.3 a DEFLATE block with no compression") {
    auto i = make_inflater();
    CHECK(str(inflate(i, hex("00 05 00 fa ff 48 65 6c 6c 6f 00"))) == "Hello");
    CHECK(str(inflate(i, hex("f2 00 11 00 00"))) == "Hello");  // the window has it
  }

  TEST_CASE("§7.2.3.4 a DEFLATE block with BFINAL set, then more messages") {
    auto i = make_inflater();
    CHECK(str(inflate(i, hex("f3 48 cd c9 c9 07 00"))) == "Hello");
    // The window survives the stream's end (context takeover).
    CHECK(str(inflate(i, hex("f2 00 11 00 00"))) == "Hello");
    CHECK(str(inflate(i, hex("f2 48 cd c9 c9 07 00"))) == "Hello");
  }

  TEST_CASE("§7.2.3.5 two DEFLATE blocks in one message") {
    auto i = make_inflater();
    CHECK(str(inflate(i, hex("f2 48 05 00 00 00 ff ff ca c9 c9 07 00"))) == "Hello");
  }

  TEST_CASE("§7.2.3.6 empty messages") {
    auto d = make_deflater();
    auto i = make_inflater();
    // The first, and later ones after context: one 0x00 byte (as websockets and wsproto send).
    CHECK(compress(d, {}) == hex("00"));
    CHECK(compress(d, from("Hello")) == hex("f2 48 cd c9 c9 07 00"));
    CHECK(compress(d, {}) == hex("00"));
    CHECK(compress(d, {}) == hex("00"));
    CHECK(inflate(i, hex("00")).empty());
    CHECK(str(inflate(i, hex("f2 48 cd c9 c9 07 00"))) == "Hello");
    CHECK(inflate(i, hex("00")).empty());
    // A zero-byte compressed payload is read as an empty message, and the stream goes on.
    CHECK(inflate(i, {}).empty());
    CHECK(str(inflate(i, hex("f2 00 11 00 00"))) == "Hello");
  }

  TEST_CASE("an empty final fragment after a non-final one") {
    auto d = make_deflater();
    bytes wire;
    REQUIRE(d.compress(from("Hello"), false, wire) == codec_status::ok);  // ends 00 00 ff ff
    CHECK(wire == hex("f2 48 cd c9 c9 07 00 00 00 ff ff"));
    bytes last;
    REQUIRE(d.compress({}, true, last) == codec_status::ok);
    CHECK(last == hex("00"));
    auto i = make_inflater();
    bytes out;
    std::size_t consumed = 0;
    REQUIRE(i.inflate(wire, false, out, unlimited, consumed) == codec_status::ok);
    REQUIRE(i.inflate(last, true, out, unlimited, consumed) == codec_status::ok);
    CHECK(str(out) == "Hello");
    CHECK(str(inflate(i, hex("f2 00 11 00 00"))) == "Hello");
  }
}

TEST_SUITE("inflater") {
  TEST_CASE("whole and byte by byte give the same message") {
    for (const char* h : {"f2 48 cd c9 c9 07 00", "00 05 00 fa ff 48 65 6c 6c 6f 00", "f3 48 cd c9 c9 07 00",
                          "f2 48 05 00 00 00 ff ff ca c9 c9 07 00"}) {
      CAPTURE(h);
      const bytes in = hex(h);
      auto i = make_inflater();
      bytes out;
      for (std::size_t k = 0; k < in.size(); ++k) {
        std::size_t consumed = 0;
        REQUIRE(i.inflate(std::span(in).subspan(k, 1), k + 1 == in.size(), out, unlimited, consumed) ==
                codec_status::ok);
        CHECK(consumed == 1);
      }
      CHECK(str(out) == "Hello");
    }
  }

  TEST_CASE("max_out: exactly the message size is ok, one less is full and continues") {
    const bytes in = hex("f2 48 cd c9 c9 07 00");
    {
      auto i = make_inflater();
      CHECK(str(inflate(i, in, 5)) == "Hello");
    }
    for (std::size_t limit = 0; limit < 5; ++limit) {
      CAPTURE(limit);
      auto i = make_inflater();
      bytes out;
      std::size_t consumed = 0;
      REQUIRE(i.inflate(in, true, out, limit, consumed) == codec_status::full);
      CHECK(out.size() == limit);
      CHECK(consumed <= in.size());
      // Continue with what was not taken, one more byte allowed each time.
      std::size_t off = consumed;
      codec_status st = codec_status::full;
      std::size_t cap = limit;
      while (st == codec_status::full) {
        ++cap;
        REQUIRE(cap <= 5);
        st = i.inflate(std::span(in).subspan(off), true, out, cap, consumed);
        off += consumed;
      }
      CHECK(st == codec_status::ok);
      CHECK(off == in.size());
      CHECK(str(out) == "Hello");
      // And the stream is in step for the next message.
      CHECK(str(inflate(i, hex("f2 00 11 00 00"))) == "Hello");
    }
  }

  TEST_CASE("full in a message's middle, output counted from out.size()") {
    auto d = make_deflater();
    const bytes msg = text_corpus(100000, 7);
    const bytes wire = compress(d, msg);
    auto i = make_inflater();
    bytes out = from("prefix");
    std::size_t off = 0, consumed = 0;
    codec_status st;
    std::size_t rounds = 0;
    do {
      st = i.inflate(std::span(wire).subspan(off), true, out, out.size() + 4096, consumed);
      off += consumed;
      ++rounds;
    } while (st == codec_status::full);
    CHECK(st == codec_status::ok);
    CHECK(rounds >= 100000 / 4096);
    CHECK(bytes(out.begin() + 6, out.end()) == msg);
  }

  TEST_CASE("a bomb stops at max_out") {
    auto d = make_deflater();
    const bytes zeros(1 << 20);
    const bytes wire = compress(d, zeros);
    CHECK(wire.size() < 2048);
    auto i = make_inflater();
    bytes out;
    std::size_t consumed = 0;
    CHECK(i.inflate(wire, true, out, 64 << 10, consumed) == codec_status::full);
    CHECK(out.size() == (64u << 10));
    CHECK(out.capacity() < (256u << 10));  // grew in bounded steps, not to the input's worth
  }

  TEST_CASE("garbage and truncation are errors") {
    {
      auto i = make_inflater();
      bytes out;
      std::size_t consumed = 0;
      CHECK(i.inflate(hex("ff ff ff ff"), true, out, unlimited, consumed) == codec_status::error);  // BTYPE 11
    }
    {
      auto i = make_inflater();
      bytes out;
      std::size_t consumed = 0;
      // A stored block whose NLEN is not ~LEN.
      CHECK(i.inflate(hex("00 05 00 00 00 48 65 6c 6c 6f"), true, out, unlimited, consumed) ==
            codec_status::error);
    }
    {
      // A stored block cut short: the message does not end on a block boundary.
      auto i = make_inflater();
      bytes out;
      std::size_t consumed = 0;
      CHECK(i.inflate(hex("00 05 00 fa ff 48 65"), true, out, unlimited, consumed) == codec_status::error);
    }
    {
      // A distance past the start of the stream.
      auto i = make_inflater();
      bytes out;
      std::size_t consumed = 0;
      CHECK(i.inflate(hex("f2 00 11 00 00"), true, out, unlimited, consumed) == codec_status::error);
    }
  }

  TEST_CASE("init refuses window bits outside 8..15") {
    detail::inflater i;
    CHECK_FALSE(i.init(7));
    CHECK_FALSE(i.init(16));
    CHECK(i.init(8));
    detail::deflater d;
    CHECK_FALSE(d.init(16, 8));
    CHECK_FALSE(d.init(15, 0));
    CHECK(d.init(8, 1));
  }

  TEST_CASE("moved-from and uninitialised codecs report errors, not crashes") {
    detail::inflater i;
    bytes out;
    std::size_t consumed = 0;
    CHECK(i.inflate(hex("00"), true, out, unlimited, consumed) == codec_status::error);
    detail::deflater d;
    CHECK(d.compress(from("x"), true, out) == codec_status::error);
    auto a = make_deflater();
    detail::deflater b = std::move(a);
    CHECK(compress(b, from("Hello")) == hex("f2 48 cd c9 c9 07 00"));
  }
}

TEST_SUITE("round trips") {
  TEST_CASE("window bits 8..15, with and without reset, whole and in pieces") {
    for (int bits = 8; bits <= 15; ++bits) {
      for (bool takeover : {true, false}) {
        CAPTURE(bits);
        CAPTURE(takeover);
        auto d = make_deflater(bits, bits % 9 + 1);
        auto i = make_inflater(bits);
        for (unsigned m = 0; m < 12; ++m) {
          CAPTURE(m);
          const std::size_t n = (m % 4 == 0) ? 0 : (std::size_t{1} << (m + 2)) + m;
          const bytes msg = (m % 3 == 2) ? random_bytes(n, m) : text_corpus(n, m + bits);
          // Compress in pieces of various sizes, as frames.
          const std::size_t piece = m % 2 ? 1000 : n + 1;
          std::vector<bytes> frames;
          for (std::size_t off = 0;;) {
            const std::size_t len = std::min(piece, n - off);
            const bool fin = off + len == n;
            bytes f;
            REQUIRE(d.compress(std::span(msg).subspan(off, len), fin, f) == codec_status::ok);
            frames.push_back(std::move(f));
            off += len;
            if (fin) break;
          }
          bytes out;
          for (std::size_t k = 0; k < frames.size(); ++k) {
            std::size_t consumed = 0;
            REQUIRE(i.inflate(frames[k], k + 1 == frames.size(), out, unlimited, consumed) == codec_status::ok);
            CHECK(consumed == frames[k].size());
          }
          CHECK(out == msg);
          if (!takeover) {
            d.reset();
            i.reset();
          }
        }
      }
    }
  }

  TEST_CASE("a compressor's 9-bit stream (window 8) reads with an 8-bit window's distances") {
    // zlib's 9-bit raw deflate never reaches back more than 250 bytes.
    auto d = make_deflater(8, 8);
    bytes msg = random_bytes(300, 1);
    for (int k = 0; k < 20; ++k) msg.insert(msg.end(), msg.end() - 300, msg.end() - 50);
    const bytes wire = compress(d, msg);
    auto i = make_inflater(8);
    CHECK(inflate(i, wire) == msg);
  }
}

// ---------------------------------------------------------------------------------------
TEST_SUITE("Sec-WebSocket-Extensions parsing") {
  TEST_CASE("extensions, parameters, quoted strings, whitespace, empty elements") {
    auto r = parse_extensions(
        " , foo ,permessage-deflate ;client_max_window_bits; server_max_window_bits = \"10\" ,\t"
        "bar; a=b; c=\"x\\\"y,z;\" ,");
    REQUIRE(r);
    const auto& l = *r;
    REQUIRE(l.size() == 3);
    CHECK(l[0].name == "foo");
    CHECK(l[0].params.empty());
    CHECK(l[1].name == "permessage-deflate");
    REQUIRE(l[1].params.size() == 2);
    CHECK(l[1].params[0].name == "client_max_window_bits");
    CHECK_FALSE(l[1].params[0].value);
    CHECK(l[1].params[1].value == std::optional<std::string>("10"));
    CHECK(l[2].params[1].value == std::optional<std::string>("x\"y,z;"));
  }

  TEST_CASE("malformed values fail with a reason") {
    for (const char* h : {"", " ", ",", "permessage-deflate;", "permessage-deflate; =1", "a; b=", "a; b=\"x",
                          "a; b=\"x\\", "a b", "a;b=c d", "a, ;b", "a; b=\"\x01\"", "\"a\"", "a; b=c=d"}) {
      CAPTURE(h);
      auto r = parse_extensions(h);
      CHECK_FALSE(r);
      if (!r) CHECK_FALSE(r.error().empty());
    }
  }
}

TEST_SUITE("negotiation, server side") {
  using namespace permessage_deflate;

  TEST_CASE("a plain offer gets the default windows") {
    auto a = negotiate("permessage-deflate");
    REQUIRE(a);
    CHECK(a->response == "permessage-deflate; server_max_window_bits=12");
    CHECK(a->params.server_max_window_bits == 12);
    CHECK(a->params.client_max_window_bits == 15);
    CHECK_FALSE(a->params.server_no_context_takeover);
    CHECK_FALSE(a->params.client_no_context_takeover);
    CHECK(a->params.mem_level == 5);
    CHECK(a->params.compress_threshold == server_options{}.compress_threshold);
  }

  TEST_CASE("a value-less client_max_window_bits lets us limit the client (§7.1.2.2)") {
    auto a = negotiate("permessage-deflate; client_max_window_bits");
    REQUIRE(a);
    CHECK(a->response == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12");
    CHECK(a->params.client_max_window_bits == 12);
    server_options o;
    o.client_max_window_bits = 15;
    o.server_max_window_bits = 15;
    a = negotiate("permessage-deflate; client_max_window_bits", o);
    REQUIRE(a);
    CHECK(a->response == "permessage-deflate");
    CHECK(a->params.client_max_window_bits == 15);
  }

  TEST_CASE("requested windows are honoured with the same or a smaller value") {
    auto a = negotiate("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9");
    REQUIRE(a);
    CHECK(a->response == "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9");
    CHECK(a->params.server_max_window_bits == 10);
    CHECK(a->params.client_max_window_bits == 9);
    a = negotiate("permessage-deflate; server_max_window_bits=15; client_max_window_bits=15");
    REQUIRE(a);
    CHECK(a->response == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12");
    a = negotiate("permessage-deflate; server_max_window_bits=8");
    REQUIRE(a);
    CHECK(a->response == "permessage-deflate; server_max_window_bits=8");
    CHECK(a->params.server_max_window_bits == 8);  // the codec runs it as 9 (zlib)
  }

  TEST_CASE("quoted values") {
    auto a = negotiate("permessage-deflate; client_max_window_bits=\"10\"; server_max_window_bits=\"9\"");
    REQUIRE(a);
    CHECK(a->params.client_max_window_bits == 10);
    CHECK(a->params.server_max_window_bits == 9);
    CHECK_FALSE(negotiate("permessage-deflate; client_max_window_bits=\"1 0\""));
    CHECK_FALSE(negotiate("permessage-deflate; server_no_context_takeover=\"\""));
  }

  TEST_CASE("context takeover parameters") {
    auto a = negotiate("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    REQUIRE(a);
    CHECK(a->response ==
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12");
    CHECK(a->params.server_no_context_takeover);
    CHECK(a->params.client_no_context_takeover);
    server_options o;
    o.client_no_context_takeover = true;
    o.server_no_context_takeover = true;
    o.server_max_window_bits = 15;
    a = negotiate("permessage-deflate", o);
    REQUIRE(a);
    CHECK(a->response == "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  }

  TEST_CASE("the first acceptable offer wins; bad ones are skipped") {
    auto a = negotiate(
        "x-webkit-deflate-frame, permessage-deflate; foo, "
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover, "
        "permessage-deflate; client_no_context_takeover=1, "
        "permessage-deflate; server_max_window_bits, "
        "permessage-deflate; server_max_window_bits=16, "
        "permessage-deflate; server_max_window_bits=7, "
        "permessage-deflate; server_max_window_bits=08, "
        "permessage-deflate; client_max_window_bits=abc, "
        "permessage-deflate; client_max_window_bits=10; client_max_window_bits=10, "
        "permessage-deflate; server_max_window_bits=10, "
        "permessage-deflate; server_max_window_bits=9");
    REQUIRE(a);
    CHECK(a->response == "permessage-deflate; server_max_window_bits=10");
  }

  TEST_CASE("nothing acceptable") {
    CHECK_FALSE(negotiate("foo, bar; baz=1"));
    CHECK_FALSE(negotiate("permessage-deflate; server_max_window_bits=16"));
    CHECK_FALSE(negotiate("permessage-deflate; unknown"));
    CHECK_FALSE(negotiate("permessage-deflate; \"bad"));  // malformed header
    server_options off;
    off.enable = false;
    CHECK_FALSE(negotiate("permessage-deflate", off));
    server_options req;
    req.require_client_max_window_bits = true;
    CHECK_FALSE(negotiate("permessage-deflate", req));
    auto a = negotiate("permessage-deflate, permessage-deflate; client_max_window_bits", req);
    REQUIRE(a);
    CHECK(a->params.client_max_window_bits == 12);
  }

  TEST_CASE("names compare without case") {
    auto a = negotiate("PerMessage-Deflate; Client_Max_Window_Bits=11");
    REQUIRE(a);
    CHECK(a->params.client_max_window_bits == 11);
  }
}

TEST_SUITE("negotiation, client side") {
  using namespace permessage_deflate;

  TEST_CASE("offers") {
    CHECK(make_offer() == "permessage-deflate; client_max_window_bits=12");
    client_options o;
    o.client_max_window_bits = 15;
    CHECK(make_offer(o) == "permessage-deflate; client_max_window_bits");
    o.server_max_window_bits = 10;
    o.server_no_context_takeover = true;
    o.client_no_context_takeover = true;
    CHECK(make_offer(o) ==
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; "
          "client_max_window_bits");
    o.offer_client_max_window_bits = false;
    CHECK(make_offer(o) ==
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10");
    o.enable = false;
    CHECK(make_offer(o).empty());
  }

  TEST_CASE("valid responses") {
    auto p = validate_response("permessage-deflate");
    REQUIRE(p);
    REQUIRE(*p);
    CHECK((*p)->server_max_window_bits == 15);
    CHECK((*p)->client_max_window_bits == 12);  // our own window, below the (absent) limit
    CHECK((*p)->mem_level == client_options{}.mem_level);
    CHECK((*p)->compress_threshold == client_options{}.compress_threshold);
    p = validate_response("permessage-deflate; client_max_window_bits=9; server_max_window_bits=10");
    REQUIRE((p && *p));
    CHECK((*p)->client_max_window_bits == 9);
    CHECK((*p)->server_max_window_bits == 10);
    p = validate_response("permessage-deflate;client_no_context_takeover;server_no_context_takeover");
    REQUIRE((p && *p));
    CHECK((*p)->client_no_context_takeover);
    CHECK((*p)->server_no_context_takeover);
    client_options o;
    o.client_no_context_takeover = true;
    p = validate_response("permessage-deflate", o);
    REQUIRE((p && *p));
    CHECK((*p)->client_no_context_takeover);  // our declaration binds us
  }

  TEST_CASE("RFC 7692 §5: no Sec-WebSocket-Extensions in the 101 is no deflate, not an error") {
    // What client_handshake::extensions() gives when the server declined the offer.
    for (const char* absent : {"", " ", "\t "}) {
      CAPTURE(absent);
      auto p = validate_response(absent);
      REQUIRE(p);
      CHECK_FALSE(p->has_value());
      client_options off;
      off.enable = false;  // nothing offered, nothing answered: fine too
      auto q = validate_response(absent, off);
      REQUIRE(q);
      CHECK_FALSE(q->has_value());
      // The result goes straight into config::deflate, unconditionally.
      config cfg;
      cfg.deflate = deflate_params{};
      cfg.deflate = *p;
      CHECK_FALSE(cfg.deflate.has_value());
    }
    // An empty list is still malformed, and an answer to no offer still wrong.
    CHECK_FALSE(validate_response(","));
    client_options off;
    off.enable = false;
    CHECK_FALSE(validate_response("permessage-deflate", off));
  }

  TEST_CASE("one set of defaults: deflate_params and the negotiation options agree") {
    const deflate_params d;
    CHECK(d.mem_level == 5);
    CHECK(d.compress_threshold == 128);
    CHECK(d.mem_level == server_options{}.mem_level);
    CHECK(d.mem_level == client_options{}.mem_level);
    CHECK(d.compress_threshold == server_options{}.compress_threshold);
    CHECK(d.compress_threshold == client_options{}.compress_threshold);
    // Negotiating with default options gives a default deflate_params's tuning.
    auto a = negotiate("permessage-deflate");
    REQUIRE(a);
    CHECK(a->params.mem_level == d.mem_level);
    CHECK(a->params.compress_threshold == d.compress_threshold);
  }

  TEST_CASE("invalid responses, with reasons") {
    client_options asked;
    asked.server_max_window_bits = 10;
    asked.server_no_context_takeover = true;
    client_options no_cmwb;
    no_cmwb.offer_client_max_window_bits = false;
    struct bad {
      const char* response;
      const client_options* opts;
      const char* reason;
    } cases[] = {
        {"permessage-deflate; client_max_window_bits=13", nullptr, "larger than offered"},
        {"permessage-deflate; client_max_window_bits", nullptr, "without a value"},
        {"permessage-deflate; client_max_window_bits=10", &no_cmwb, "not offered"},
        {"permessage-deflate; server_max_window_bits=16", nullptr, "bad server_max_window_bits"},
        {"permessage-deflate; server_max_window_bits", nullptr, "bad server_max_window_bits"},
        {"permessage-deflate; server_no_context_takeover=1", nullptr, "has a value"},
        {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", nullptr, "duplicate"},
        {"permessage-deflate; foo=1", nullptr, "unknown parameter foo"},
        {"permessage-deflate, permessage-deflate", nullptr, "more than one"},
        {"permessage-deflate, x-webkit-deflate-frame", nullptr, "not offered"},
        {"foo", nullptr, "not offered"},
        {"permessage-deflate; ", nullptr, "malformed"},
        {",", nullptr, "malformed"},
        {"permessage-deflate; server_no_context_takeover; server_max_window_bits=11", &asked, "larger than requested"},
        {"permessage-deflate; server_no_context_takeover", &asked, "server_max_window_bits was requested"},
        {"permessage-deflate; server_max_window_bits=10", &asked, "server_no_context_takeover was requested"},
    };
    for (const bad& c : cases) {
      CAPTURE(c.response);
      auto p = validate_response(c.response, c.opts ? *c.opts : client_options{});
      REQUIRE_FALSE(p);
      CHECK(p.error().find(c.reason) != std::string::npos);
    }
  }

  TEST_CASE("server and client agree on every parameter") {
    for (int sb = 8; sb <= 15; ++sb) {
      for (int cb = 8; cb <= 15; ++cb) {
        for (int flags = 0; flags < 4; ++flags) {
          client_options c;
          c.server_max_window_bits = static_cast<std::uint8_t>(sb);
          c.client_max_window_bits = static_cast<std::uint8_t>(cb);
          c.server_no_context_takeover = flags & 1;
          c.client_no_context_takeover = flags & 2;
          auto a = negotiate(make_offer(c));
          REQUIRE(a);
          auto v = validate_response(a->response, c);
          REQUIRE(v);
          REQUIRE(*v);
          const deflate_params& p = **v;
          CHECK(p.server_max_window_bits == a->params.server_max_window_bits);
          CHECK(p.client_max_window_bits == a->params.client_max_window_bits);
          CHECK(p.server_no_context_takeover == a->params.server_no_context_takeover);
          CHECK(p.client_no_context_takeover == a->params.client_no_context_takeover);
        }
      }
    }
  }
}
