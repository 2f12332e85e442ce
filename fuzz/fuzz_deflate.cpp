// libFuzzer target: the permessage-deflate path (RFC 7692). Four modes, by the first byte:
//  0  the inflater alone (lib/deflate/deflate_codec.hpp) on fuzzer bytes, with an output
//     limit: out never passes max_out; `ok` takes all input; inflating a message in
//     fuzzer-chosen pieces gives the same status and output as inflating it whole, across
//     several messages with and without context takeover;
//  1  deflater -> inflater: fuzzer messages compressed in fuzzer-chosen pieces (each ends
//     on a sync flush, 00 00 ff ff stripped at FIN) inflate back to the same bytes, with
//     max_out set to exactly the message size (must be ok) or one less (must be full);
//  2  a connection with cfg.deflate receiving RSV1 frames: compressed messages made by a
//     deflater (or raw fuzzer bytes, or corrupted), fragmented, pings in between, a
//     fuzzer-chosen max_message_size (the inflate bomb limit): fed whole / byte by byte /
//     split, fuzz_util.hpp invariants, and the events must be the messages (or the 1009
//     for a message inflating past the limit) while the payloads are our deflater's;
//  3  the send/receive round trip (fuzz_gen.hpp) with permessage-deflate negotiated.
#include "deflate/deflate_codec.hpp"
#include "fuzz_gen.hpp"

using namespace wsfuzz;
using detail::codec_status;

namespace {

deflate_params fuzz_params(FuzzedDataProvider& fdp) {
  deflate_params p;
  p.server_no_context_takeover = fdp.ConsumeBool();
  p.client_no_context_takeover = fdp.ConsumeBool();
  p.server_max_window_bits = fdp.ConsumeIntegralInRange<std::uint8_t>(8, 15);
  p.client_max_window_bits = fdp.ConsumeIntegralInRange<std::uint8_t>(8, 15);
  p.mem_level = fdp.ConsumeIntegralInRange<std::uint8_t>(1, 9);
  p.compress_threshold = fdp.ConsumeBool() ? 0 : fdp.ConsumeIntegralInRange<std::size_t>(0, 64);
  return p;
}

std::size_t fuzz_max_out(FuzzedDataProvider& fdp) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return fdp.ConsumeIntegralInRange<std::size_t>(0, 64);
    case 1: return fdp.ConsumeIntegralInRange<std::size_t>(0, 5000);
    case 2: return 1u << 20;
    default: return SIZE_MAX;
  }
}

// Mode 0.
void inflate_alone(FuzzedDataProvider& fdp) {
  const int wb = fdp.ConsumeIntegralInRange<int>(8, 15);
  detail::inflater a, b;
  FUZZ_CHECK(a.init(wb) && b.init(wb));
  const bool reset_each = fdp.ConsumeBool();
  for (int m = 0; m < 6 && fdp.remaining_bytes(); ++m) {
    const std::size_t max_out = fuzz_max_out(fdp);
    const int pieces = fdp.ConsumeIntegralInRange<int>(1, 5);
    std::vector<bytes> in;
    bytes all;
    for (int i = 0; i < pieces; ++i) {
      in.push_back(fdp.ConsumeBytes<std::byte>(fdp.ConsumeIntegralInRange<std::size_t>(0, 600)));
      all.insert(all.end(), in.back().begin(), in.back().end());
    }
    // a: in pieces.
    bytes out_a;
    codec_status sa = codec_status::ok;
    for (int i = 0; i < pieces && sa == codec_status::ok; ++i) {
      std::size_t consumed = 12345;
      sa = a.inflate(in[i], i + 1 == pieces, out_a, max_out, consumed);
      FUZZ_CHECK(out_a.size() <= max_out);
      FUZZ_CHECK(consumed <= in[i].size());
      if (sa == codec_status::ok) FUZZ_CHECK(consumed == in[i].size());
    }
    // b: whole.
    bytes out_b;
    std::size_t consumed = 0;
    const codec_status sb = b.inflate(all, true, out_b, max_out, consumed);
    FUZZ_CHECK(out_b.size() <= max_out);
    if (sb == codec_status::ok) FUZZ_CHECK(consumed == all.size());
    if (!strict() && wb < 15 && sa != sb && (sa == codec_status::error || sb == codec_status::error)) {
      // Open finding F2 (fuzz_util.hpp): distances past the window inflate when the
      // output is in one buffer, fail in pieces. The failing side's output is a prefix.
      const bytes& shorter = sa == codec_status::error ? out_a : out_b;
      const bytes& longer = sa == codec_status::error ? out_b : out_a;
      FUZZ_CHECK(shorter.size() <= longer.size() && std::equal(shorter.begin(), shorter.end(), longer.begin()));
      return;
    }
    FUZZ_CHECK(sa == sb);
    FUZZ_CHECK(out_a == out_b);
    if (sa != codec_status::ok) return;  // a connection fails here: the stream is dead
    if (reset_each) { a.reset(); b.reset(); }
  }
}

// Mode 1.
void codec_round_trip(FuzzedDataProvider& fdp) {
  const int wd = fdp.ConsumeIntegralInRange<int>(8, 15);
  const int wi = std::max(wd, fdp.ConsumeIntegralInRange<int>(8, 15));  // a peer may use a smaller window
  const int mem = fdp.ConsumeIntegralInRange<int>(1, 9);
  detail::deflater d;
  detail::inflater exact, short_by_one;
  FUZZ_CHECK(d.init(wd, mem) && exact.init(wi) && short_by_one.init(wi));
  const bool no_takeover = fdp.ConsumeBool();
  bool short_alive = true;
  for (int m = 0; m < 8 && fdp.remaining_bytes(); ++m) {
    const int pieces = fdp.ConsumeIntegralInRange<int>(1, 4);
    bytes msg;
    std::vector<bytes> frames;
    for (int i = 0; i < pieces; ++i) {
      const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, fdp.ConsumeBool() ? 50 : 4000);
      bytes piece = fdp.ConsumeBool() ? to_bytes(make_utf8(fdp, n)) : make_payload(fdp, n);
      if (fdp.ConsumeBool()) piece.assign(n, std::byte{'a'});  // compresses well: bomb-like ratios
      msg.insert(msg.end(), piece.begin(), piece.end());
      bytes out;
      FUZZ_CHECK(d.compress(piece, i + 1 == pieces, out) == codec_status::ok);
      frames.push_back(std::move(out));
    }
    FUZZ_CHECK(!frames.back().empty());  // an empty message still sends one byte (0x00)
    bytes got;
    for (int i = 0; i < pieces; ++i) {
      std::size_t consumed = 0;
      const codec_status s = exact.inflate(frames[i], i + 1 == pieces, got, msg.size(), consumed);
      FUZZ_CHECK(s == codec_status::ok);
      FUZZ_CHECK(consumed == frames[i].size());
    }
    FUZZ_CHECK(got == msg);
    if (short_alive) {
      bytes partial;
      codec_status s = codec_status::ok;
      const std::size_t limit = msg.empty() ? 0 : msg.size() - 1;
      for (int i = 0; i < pieces && s == codec_status::ok; ++i) {
        std::size_t consumed = 0;
        s = short_by_one.inflate(frames[i], i + 1 == pieces, partial, limit, consumed);
        FUZZ_CHECK(partial.size() <= limit);
      }
      if (msg.empty()) {
        FUZZ_CHECK(s == codec_status::ok && partial.empty());
      } else {
        FUZZ_CHECK(s == codec_status::full);
        FUZZ_CHECK(partial.size() == limit);
        FUZZ_CHECK(std::equal(partial.begin(), partial.end(), msg.begin()));
        short_alive = false;
      }
    }
    if (no_takeover) {
      d.reset();
      exact.reset();
      if (short_alive) short_by_one.reset();
    }
  }
}

// Mode 2.
void connection_receives(FuzzedDataProvider& fdp) {
  const role r = fdp.ConsumeBool() ? role::client : role::server;
  config cfg;
  cfg.deflate = fuzz_params(fdp);
  cfg.mode = fdp.ConsumeBool() ? delivery::streaming : delivery::whole_messages;
  cfg.max_message_size = fdp.ConsumeBool() ? fdp.ConsumeIntegralInRange<std::size_t>(0, 20000) : cfg.max_message_size;
  const std::size_t cap = 1 + fdp.ConsumeIntegralInRange<std::size_t>(0, 4);
  const bool eof = fdp.ConsumeBool();
  // The peer's compressor, as negotiated.
  const deflate_params& p = *cfg.deflate;
  const bool peer_is_client = r == role::server;
  const int peer_bits = peer_is_client ? p.client_max_window_bits : p.server_max_window_bits;
  const bool peer_reset = peer_is_client ? p.client_no_context_takeover : p.server_no_context_takeover;
  detail::deflater d;
  FUZZ_CHECK(d.init(peer_bits, fdp.ConsumeIntegralInRange<int>(1, 9)));

  bytes wire;
  std::vector<rec_event> expect;
  bool known = true, ended = false;
  auto put = [&](std::uint8_t op, bool fin, bool rsv1, const bytes& payload) {
    frame_spec f;
    f.op = op;
    f.fin = fin;
    f.rsv = rsv1 ? 0x40 : 0;
    f.masked = r == role::server;
    f.key = {std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}};
    f.payload = payload;
    f.declared = payload.size();
    encode(f, wire);
  };
  for (int m = 0; m < 8 && fdp.remaining_bytes() && !ended; ++m) {
    const int kind = fdp.ConsumeIntegralInRange<int>(0, 9);
    if (kind == 9) {  // a ping between messages
      bytes b = make_payload(fdp, fdp.ConsumeIntegralInRange<std::size_t>(0, 20));
      put(9, true, false, b);
      if (known) { rec_event e; e.type = event_type::ping; e.data = b; expect.push_back(e); }
      continue;
    }
    const bool text = fdp.ConsumeBool();
    const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, fdp.ConsumeBool() ? 100 : 30000);
    bytes plain = text ? to_bytes(make_utf8(fdp, n)) : make_payload(fdp, n);
    if (fdp.ConsumeBool()) plain.assign(n, std::byte{'x'});
    const bool compressed = kind < 7;
    const int pieces = fdp.ConsumeIntegralInRange<int>(1, 4);
    std::vector<bytes> payloads;
    if (compressed) {
      for (int i = 0; i < pieces; ++i) {
        const std::size_t a = plain.size() * i / pieces, b = plain.size() * (i + 1) / pieces;
        bytes out;
        FUZZ_CHECK(d.compress(std::span<const std::byte>(plain).subspan(a, b - a), i + 1 == pieces, out) == codec_status::ok);
        payloads.push_back(std::move(out));
      }
      if (peer_reset) d.reset();
      const int corrupt = fdp.ConsumeIntegralInRange<int>(0, 7);
      if (corrupt == 0) {  // raw fuzzer bytes instead
        payloads.back() = fdp.ConsumeBytes<std::byte>(fdp.ConsumeIntegralInRange<std::size_t>(0, 64));
        known = false;
      } else if (corrupt == 1 && !payloads.back().empty()) {
        payloads.back()[fdp.ConsumeIntegralInRange<std::size_t>(0, payloads.back().size() - 1)] ^=
            static_cast<std::byte>(fdp.ConsumeIntegralInRange<int>(1, 255));
        known = false;
      }
    } else {
      for (int i = 0; i < pieces; ++i) {
        const std::size_t a = plain.size() * i / pieces, b = plain.size() * (i + 1) / pieces;
        payloads.emplace_back(plain.begin() + a, plain.begin() + b);
      }
    }
    const bool over = plain.size() > cfg.max_message_size;
    const bool pings_inside = !over && fdp.ConsumeBool();
    // (Not in a message that inflates past the limit: that fails at a frame the model
    // cannot place.)
    const bool rsv_on_continuation = compressed && !over && pieces > 1 && fdp.ConsumeIntegralInRange<int>(0, 15) == 0;
    std::uint64_t wire_size = 0;
    for (int i = 0; i < pieces && !ended; ++i) {
      const bool rsv1 = (compressed && i == 0) || (rsv_on_continuation && i == 1);
      put(i == 0 ? (text ? 1 : 2) : 0, i + 1 == pieces, rsv1, payloads[i]);
      if (!known) continue;
      if (rsv_on_continuation && i == 1) {
        rec_event e; e.type = event_type::fail; e.error = protocol_error::reserved_bits;
        e.code = close_code_for(e.error); e.reason = std::string(describe(e.error));
        expect.push_back(e);
        ended = true;
        break;
      }
      wire_size += payloads[i].size();
      if (wire_size > cfg.max_message_size || (over && i + 1 == pieces)) {
        // The wire size (checked on each header) or the inflated size passed the limit.
        rec_event e; e.type = event_type::fail; e.error = protocol_error::message_too_large;
        e.code = 1009; e.reason = std::string(describe(e.error));
        expect.push_back(e);
        ended = true;
        break;
      }
      if (pings_inside && i + 1 < pieces) {
        bytes b = make_payload(fdp, fdp.ConsumeIntegralInRange<std::size_t>(0, 10));
        put(10, true, false, b);
        rec_event e; e.type = event_type::pong; e.data = b; expect.push_back(e);
      }
    }
    if (known && !ended) {
      rec_event e; e.type = text ? event_type::text : event_type::binary; e.data = plain;
      expect.push_back(e);
    }
  }
  const auto split = fuzzer_split(fdp, wire.size());
  if (const char* path = std::getenv("WS6455_FUZZ_DUMP")) {  // for turning a finding into a test
    if (FILE* f = std::fopen(path, "wb")) {
      std::fwrite(wire.data(), 1, wire.size(), f);
      std::fclose(f);
    }
    std::fprintf(stderr, "dump: role=%s mode=%s max_message=%zu snct=%d cnct=%d smwb=%d cmwb=%d mem=%d thr=%zu\n",
                 r == role::server ? "server" : "client", cfg.mode == delivery::streaming ? "streaming" : "whole",
                 cfg.max_message_size, p.server_no_context_takeover, p.client_no_context_takeover,
                 p.server_max_window_bits, p.client_max_window_bits, p.mem_level, p.compress_threshold);
  }
  const run_result res = check_chunk_invariance(cfg, r, wire, split, cap, eof);
  if (known) {
    auto got = cfg.mode == delivery::streaming ? coalesce(res.events) : res.events;
    if (eof && !ended && !got.empty() && got.back().code == close_code::abnormal) got.pop_back();
    if (got != expect) {
      std::fprintf(stderr, "expected %zu events, engine gave %zu\n", expect.size(), got.size());
      for (std::size_t i = 0; i < std::max(got.size(), expect.size()); ++i)
        std::fprintf(stderr, "  %zu: want type=%d size=%zu err=%d | got type=%d size=%zu err=%d\n", i,
                     i < expect.size() ? int(expect[i].type) : -1, i < expect.size() ? expect[i].data.size() : 0,
                     i < expect.size() ? int(expect[i].error) : -1, i < got.size() ? int(got[i].type) : -1,
                     i < got.size() ? got[i].data.size() : 0, i < got.size() ? int(got[i].error) : -1);
      FUZZ_CHECK(!"deflate connection events differ from the messages sent");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  FuzzedDataProvider fdp(data + 1, size - 1);
  switch (data[0] & 3) {
    case 0: inflate_alone(fdp); break;
    case 1: codec_round_trip(fdp); break;
    case 2: connection_receives(fdp); break;
    default: round_trip(fdp, fuzz_params(fdp)); break;
  }
  return 0;
}
