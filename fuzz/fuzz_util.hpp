// Shared pieces of the frame-layer fuzz targets: a feed loop that checks every
// invariant of connection::feed on each call, event recording, a checker for the
// bytes a receiving connection queues, and the whole-vs-chunked comparison.
//
// Invariants checked on every run (any violation aborts, so libFuzzer keeps the input):
//  - feed() never reports more bytes than it was given nor more events than slots, and
//    always makes progress (a call that takes nothing and reports nothing would spin
//    every caller that loops "until consumed");
//  - an event's data/reason lies either inside the bytes that very call consumed, or
//    wholly outside the caller's buffer (engine storage); each chunk lives in its own
//    exact-size heap buffer that is freed after use, so ASan catches any span or
//    pointer into old input that the engine keeps;
//  - after a close or fail event nothing more is reported, input is swallowed, and
//    feed_eof() has nothing to say;
//  - fail events carry code == close_code_for(error) and reason == describe(error);
//    close events carry a valid code (or 1005) and a UTF-8 reason; the state agrees;
//  - text is valid UTF-8 by the scalar reference validator (a differential check of the
//    SIMD validator the engine uses), whole messages are complete code points;
//  - data sizes respect max_message_size; control payloads are <= 125 bytes;
//  - the output is well-formed frames: masked iff client, minimal lengths, no RSV bits,
//    only pongs and one final close; pongs echo the pings answered_pings() names (the
//    first max_queued_pongs, the last of them replaced by the latest ping, RFC 6455 §5.5.3);
//  - the order rule: a ping, close or fail event is the first of its feed() batch;
//    the close carries close_code_for(error) after a failure, the echoed code after a
//    peer close;
//  - the same bytes fed whole, byte by byte, or in any split, with any event-buffer size,
//    give the same events (streaming pieces coalesced), output, state and error.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "utf8.hpp"
#include "ws6455/close_code.hpp"
#include "ws6455/config.hpp"
#include "ws6455/connection.hpp"
#include "ws6455/error.hpp"
#include "ws6455/event.hpp"
#include "ws6455/frame_header.hpp"

namespace wsfuzz {

using namespace ws6455;
using bytes = std::vector<std::byte>;

[[noreturn]] inline void die(const char* what, const char* file, int line) {
  std::fprintf(stderr, "\n*** ws6455 fuzz invariant violated: %s (%s:%d)\n", what, file, line);
  std::abort();
}
#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) ::wsfuzz::die(#cond, __FILE__, __LINE__); \
  } while (0)

// ---------------------------------------------------------------------------------------
// Small helpers

inline std::span<const std::byte> as_span(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline bytes to_bytes(std::string_view s) {
  auto sp = as_span(s);
  return bytes(sp.begin(), sp.end());
}
inline bool utf8_ok(std::span<const std::byte> s) {
  detail::utf8_state st = 0;
  return detail::utf8_validate_scalar(st, s.data(), s.size()) && detail::utf8_complete(st);
}
inline std::uint16_t be16(const std::byte* p) {
  return static_cast<std::uint16_t>((static_cast<unsigned>(p[0]) << 8) | static_cast<unsigned>(p[1]));
}

// Deterministic masking keys (reproducible crashes); seeded per run.
struct det_random {
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  static void fill(void* ctx, std::span<std::byte> out) {
    auto* self = static_cast<det_random*>(ctx);
    for (auto& b : out) {
      self->x ^= self->x << 13;
      self->x ^= self->x >> 7;
      self->x ^= self->x << 17;
      b = static_cast<std::byte>(self->x >> 24);
    }
  }
  void install(config& cfg) {
    cfg.random = &det_random::fill;
    cfg.random_context = this;
  }
};

// ---------------------------------------------------------------------------------------
// Recorded events

struct rec_event {
  event_type type = event_type::binary;
  bool fin = true;
  std::uint16_t code = 0;
  protocol_error error = protocol_error::none;
  bytes data;
  std::string reason;
  bool operator==(const rec_event&) const = default;
};

inline rec_event record(const event& e) {
  rec_event r;
  r.type = e.type;
  r.fin = e.fin;
  r.code = e.code;
  r.error = e.error;
  r.data.assign(e.data.begin(), e.data.end());
  r.reason.assign(e.reason.begin(), e.reason.end());
  return r;
}

// Which of `n` pings get automatic pongs when the output is never drained: the first
// `cap`, except that every ping past the cap replaces the last queued pong (RFC 6455
// §5.5.3: answering the most recent ping suffices).
inline std::vector<std::size_t> answered_pings(std::size_t n, std::size_t cap) {
  std::vector<std::size_t> v;
  for (std::size_t i = 0; i < n; ++i) {
    if (v.size() < cap) v.push_back(i);
    else if (cap != 0) v.back() = i;
  }
  return v;
}

inline bool is_data(event_type t) { return t == event_type::text || t == event_type::binary; }
inline bool is_terminal(event_type t) { return t == event_type::close || t == event_type::fail; }

// Streaming pieces -> whole messages (placed at their fin piece); an unfinished message
// (cut by a fail, a close or the end of input) is dropped, since how much of it was
// delivered legitimately depends on the split.
inline std::vector<rec_event> coalesce(const std::vector<rec_event>& in) {
  std::vector<rec_event> out;
  std::optional<rec_event> open;
  for (const auto& e : in) {
    if (is_data(e.type)) {
      if (!open) {
        open = e;
      } else {
        FUZZ_CHECK(open->type == e.type);  // a message's pieces keep its type
        open->data.insert(open->data.end(), e.data.begin(), e.data.end());
      }
      if (e.fin) {
        open->fin = true;
        out.push_back(std::move(*open));
        open.reset();
      }
    } else {
      out.push_back(e);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The feed loop

struct run_result {
  role role_ = role::server;
  std::vector<rec_event> events;
  bytes output;
  connection_state state = connection_state::open;
  protocol_error error = protocol_error::none;
  std::uint16_t peer_code = 0;
};

// Is [p, p+n) inside [lo, lo+len)?
inline bool inside(const void* p, std::size_t n, const void* lo, std::size_t len) {
  auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(lo);
  return a >= b && a + n <= b + len;
}
inline bool overlaps(const void* p, std::size_t n, const void* lo, std::size_t len) {
  auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(lo);
  return n && len && a < b + len && b < a + n;
}

// A span reported by an event: in the consumed part of this call's input, or not in the
// caller's buffer at all.
inline void check_span(const void* p, std::size_t n, const std::byte* buf, std::size_t buf_len,
                       std::size_t call_off, std::size_t consumed) {
  if (n == 0) return;
  if (overlaps(p, n, buf, buf_len)) FUZZ_CHECK(inside(p, n, buf + call_off, consumed));
}

// Feeds `input` to `c` as chunks of `sizes` (their sum is input.size(); a zero size is an
// empty feed), with `cap` event slots, looping on early stops. Then feed_eof() if `eof`.
inline run_result run(connection& c, std::span<const std::byte> input, const std::vector<std::size_t>& sizes,
                      std::size_t cap, bool eof) {
  run_result res;
  res.role_ = c.which_role();
  std::vector<event> evbuf(cap);
  bool ended = false;
  std::size_t base = 0;
  for (std::size_t sz : sizes) {
    FUZZ_CHECK(base + sz <= input.size());
    // An exact-size heap block per chunk, freed once fed: retained pointers trip ASan.
    std::unique_ptr<std::byte[]> buf(new std::byte[sz ? sz : 1]);
    if (sz) std::memcpy(buf.get(), input.data() + base, sz);
    std::size_t off = 0;
    int calls = 0;
    do {
      auto r = c.feed(std::span<std::byte>(buf.get(), sz).subspan(off), std::span<event>(evbuf));
      FUZZ_CHECK(r.consumed <= sz - off);
      FUZZ_CHECK(r.events <= cap);
      if (sz - off > 0) FUZZ_CHECK(r.consumed > 0 || r.events > 0);  // progress
      if (ended) {
        FUZZ_CHECK(r.events == 0);             // a closed/failed connection reports nothing more
        FUZZ_CHECK(r.consumed == sz - off);    // and swallows its input
      }
      for (std::size_t i = 0; i < r.events; ++i) {
        const event& e = evbuf[i];
        FUZZ_CHECK(!ended);
        check_span(e.data.data(), e.data.size(), buf.get(), sz, off, r.consumed);
        check_span(e.reason.data(), e.reason.size(), buf.get(), sz, off, r.consumed);
        res.events.push_back(record(e));  // reads every byte: ASan checks the span's memory
        // The order rule: the engine answers these itself, after the events before them.
        if (is_terminal(e.type) || e.type == event_type::ping) FUZZ_CHECK(i == 0);
        if (is_terminal(e.type)) ended = true;
      }
      off += r.consumed;
      FUZZ_CHECK(++calls <= 1 + 2 * static_cast<int>(sz) + 8);
    } while (off < sz);
    base += sz;
  }
  FUZZ_CHECK(base == input.size());
  if (ended) {
    FUZZ_CHECK(!c.want_read());
    event e;
    FUZZ_CHECK(!c.feed_eof(e));
  } else if (eof) {
    event e;
    FUZZ_CHECK(c.feed_eof(e));
    FUZZ_CHECK(e.type == event_type::close && e.code == close_code::abnormal);
    FUZZ_CHECK(c.state() == connection_state::failed);
    FUZZ_CHECK(c.peer_close_code() == close_code::abnormal);
    res.events.push_back(record(e));
    event e2;
    FUZZ_CHECK(!c.feed_eof(e2));
  }
  auto out = c.pending_output();
  res.output.assign(out.begin(), out.end());
  res.state = c.state();
  res.error = c.last_error();
  res.peer_code = c.peer_close_code();
  return res;
}

// ---------------------------------------------------------------------------------------
// Output frames

struct out_frame {
  bool fin = false;
  unsigned rsv = 0;
  unsigned op = 0;
  bool masked = false;
  bytes payload;
};

// Parses a well-formed frame sequence; aborts on anything else.
inline std::vector<out_frame> parse_output(std::span<const std::byte> in, role sender) {
  std::vector<out_frame> frames;
  std::size_t p = 0;
  auto u = [&](std::size_t i) { return static_cast<unsigned>(in[i]); };
  while (p < in.size()) {
    FUZZ_CHECK(in.size() - p >= 2);
    out_frame f;
    f.fin = u(p) & 0x80;
    f.rsv = u(p) & 0x70;
    f.op = u(p) & 0x0F;
    f.masked = u(p + 1) & 0x80;
    FUZZ_CHECK(f.masked == (sender == role::client));  // §5.1
    std::uint64_t len = u(p + 1) & 0x7F;
    std::size_t h = 2;
    if (len == 126) {
      FUZZ_CHECK(in.size() - p >= 4);
      len = (u(p + 2) << 8) | u(p + 3);
      FUZZ_CHECK(len >= 126);  // minimal form
      h = 4;
    } else if (len == 127) {
      FUZZ_CHECK(in.size() - p >= 10);
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | u(p + 2 + i);
      FUZZ_CHECK(len > 0xFFFF && !(len >> 63));
      h = 10;
    }
    std::byte key[4]{};
    if (f.masked) {
      FUZZ_CHECK(in.size() - p >= h + 4);
      std::memcpy(key, in.data() + p + h, 4);
      h += 4;
    }
    FUZZ_CHECK(in.size() - p - h >= len);
    f.payload.assign(in.begin() + p + h, in.begin() + p + h + len);
    if (f.masked)
      for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] ^= key[i % 4];
    if (f.op >= 8) FUZZ_CHECK(f.fin && f.payload.size() <= 125);
    FUZZ_CHECK(f.op <= 2 || (f.op >= 8 && f.op <= 10));
    frames.push_back(std::move(f));
    p += h + len;
  }
  return frames;
}

// A close frame we put on the wire: empty or a sendable code and a UTF-8 reason.
inline std::uint16_t check_close_frame(const out_frame& f) {
  FUZZ_CHECK(f.payload.size() != 1);
  if (f.payload.empty()) return close_code::no_status;
  const std::uint16_t code = be16(f.payload.data());
  FUZZ_CHECK(is_valid_close_code(code));  // never 1005/1006/1015 on the wire
  FUZZ_CHECK(utf8_ok(std::span<const std::byte>(f.payload).subspan(2)));
  return code;
}

// Checks the events and the output of a receive-only run (nothing was sent, nothing
// consumed from the output).
inline void check_run(const config& cfg, role r, const run_result& res) {
  const bool streaming = cfg.mode == delivery::streaming;
  std::vector<bytes> pings;
  std::optional<rec_event> terminal;
  detail::utf8_state st = 0;  // streaming text: across a message's pieces
  bool in_msg = false;
  event_type msg_type = event_type::binary;
  std::uint64_t msg_size = 0;
  for (const auto& e : res.events) {
    FUZZ_CHECK(!terminal);  // nothing after a close or fail
    switch (e.type) {
      case event_type::text:
      case event_type::binary:
        if (!streaming) {
          FUZZ_CHECK(e.fin);
          FUZZ_CHECK(e.data.size() <= cfg.max_message_size);
          if (e.type == event_type::text) FUZZ_CHECK(utf8_ok(e.data));
        } else {
          if (in_msg) FUZZ_CHECK(e.type == msg_type);
          if (!in_msg) { st = 0; msg_size = 0; msg_type = e.type; }
          in_msg = !e.fin;
          msg_size += e.data.size();
          FUZZ_CHECK(msg_size <= cfg.max_message_size);
          if (e.type == event_type::text) {
            FUZZ_CHECK(detail::utf8_validate_scalar(st, e.data.data(), e.data.size()));
            if (e.fin) FUZZ_CHECK(detail::utf8_complete(st));
          }
        }
        if (!cfg.deflate) FUZZ_CHECK(e.data.size() <= cfg.max_frame_size * std::uint64_t(cfg.max_fragments));
        FUZZ_CHECK(e.code == 0 && e.error == protocol_error::none && e.reason.empty());
        break;
      case event_type::ping:
        FUZZ_CHECK(e.data.size() <= 125);
        pings.push_back(e.data);
        break;
      case event_type::pong:
        FUZZ_CHECK(e.data.size() <= 125);
        break;
      case event_type::close:
        FUZZ_CHECK(e.error == protocol_error::none && e.data.empty());
        if (e.code == close_code::abnormal) {  // feed_eof
          FUZZ_CHECK(res.state == connection_state::failed);
        } else {
          FUZZ_CHECK(e.code == close_code::no_status || is_valid_close_code(e.code));
          if (e.code == close_code::no_status) FUZZ_CHECK(e.reason.empty());
          FUZZ_CHECK(e.reason.size() <= 123 && utf8_ok(as_span(e.reason)));
          FUZZ_CHECK(res.state == connection_state::closed);
        }
        FUZZ_CHECK(res.peer_code == e.code);
        terminal = e;
        break;
      case event_type::fail:
        FUZZ_CHECK(e.error != protocol_error::none);
        FUZZ_CHECK(e.code == close_code_for(e.error));
        FUZZ_CHECK(e.reason == describe(e.error));
        FUZZ_CHECK(res.state == connection_state::failed);
        FUZZ_CHECK(res.error == e.error);
        FUZZ_CHECK(e.data.empty());
        terminal = e;
        break;
    }
  }
  if (!terminal) {
    FUZZ_CHECK(res.state == connection_state::open);
    FUZZ_CHECK(res.error == protocol_error::none);
    FUZZ_CHECK(res.peer_code == 0);
  }

  // The output: pongs for the answered pings, then at most one close.
  const auto frames = parse_output(res.output, r);
  std::size_t i = 0;
  const auto answered = cfg.auto_pong ? answered_pings(pings.size(), cfg.max_queued_pongs) : std::vector<std::size_t>{};
  const std::size_t pongs = answered.size();
  for (; i < frames.size() && frames[i].op == 0xA; ++i) {
    FUZZ_CHECK(i < pongs);
    FUZZ_CHECK(frames[i].payload == pings[answered[i]]);
    FUZZ_CHECK(frames[i].rsv == 0);
  }
  FUZZ_CHECK(i == pongs);
  if (terminal && terminal->type == event_type::fail) {
    FUZZ_CHECK(i + 1 == frames.size());
    FUZZ_CHECK(frames[i].op == 0x8 && frames[i].rsv == 0);
    FUZZ_CHECK(check_close_frame(frames[i]) == terminal->code);
  } else if (terminal && terminal->code != close_code::abnormal) {
    FUZZ_CHECK(i + 1 == frames.size());  // the echo of the peer's close (§5.5.1)
    FUZZ_CHECK(frames[i].op == 0x8 && frames[i].rsv == 0);
    FUZZ_CHECK(check_close_frame(frames[i]) == terminal->code);
    FUZZ_CHECK(frames[i].payload.size() <= 2);
  } else {
    FUZZ_CHECK(i == frames.size());
  }
  if (terminal) {
    FUZZ_CHECK(!res.output.empty() || terminal->code == close_code::abnormal);
  }
}

inline void dump(const char* title, const std::vector<rec_event>& v) {
  std::fprintf(stderr, "%s: %zu events\n", title, v.size());
  for (const auto& e : v) {
    std::fprintf(stderr, "  type=%d fin=%d code=%u err=%d size=%zu data=", int(e.type), int(e.fin), unsigned(e.code),
                 int(e.error), e.data.size());
    for (std::size_t i = 0; i < e.data.size() && i < 24; ++i) std::fprintf(stderr, "%02x", unsigned(e.data[i]));
    std::fprintf(stderr, " reason=\"%s\"\n", e.reason.c_str());
  }
}

// Open finding F2 (docs/fuzzing.md): zlib's inflate checks a match distance against
// its window only for the part of the distance that reaches back before the current
// call's output. A (corrupt or hostile) deflate stream with distances beyond the
// negotiated window (client/server_max_window_bits < 15) therefore inflates when fed
// whole but fails with "invalid distance too far back" (bad_compressed_data, 1007) when
// fed in pieces. Until the engine decides one behaviour, two runs may differ when one of
// them failed with bad_compressed_data under a window below 15: the events of the failed
// run (without its fail) must then be a prefix of the other run's.
// WS6455_FUZZ_STRICT=1 in the environment compares them exactly.
inline bool strict() {
  static const bool s = [] {
    const char* v = std::getenv("WS6455_FUZZ_STRICT");
    return v && *v == '1';
  }();
  return s;
}
inline int peer_window_bits(const config& cfg, role r) {
  return r == role::server ? cfg.deflate->client_max_window_bits : cfg.deflate->server_max_window_bits;
}
inline bool is_prefix(const std::vector<rec_event>& p, const std::vector<rec_event>& v) {
  return p.size() <= v.size() && std::equal(p.begin(), p.end(), v.begin());
}

// Two runs of the same bytes must agree.
inline void check_same(const config& cfg, const run_result& a, const run_result& b) {
  const auto ea = cfg.mode == delivery::streaming ? coalesce(a.events) : a.events;
  const auto eb = cfg.mode == delivery::streaming ? coalesce(b.events) : b.events;
  if (!strict() && cfg.deflate && peer_window_bits(cfg, a.role_) < 15 && ea != eb &&
      (a.error == protocol_error::bad_compressed_data || b.error == protocol_error::bad_compressed_data)) {
    // The run that failed earlier (both may fail, at different messages).
    const bool a_first = a.error == protocol_error::bad_compressed_data &&
                         (b.error != protocol_error::bad_compressed_data || ea.size() <= eb.size());
    auto bad = a_first ? ea : eb;
    FUZZ_CHECK(!bad.empty() && bad.back().type == event_type::fail);
    bad.pop_back();
    FUZZ_CHECK(is_prefix(bad, a_first ? eb : ea));
    return;
  }
  if (ea != eb) {
    dump("first run", a.events);
    dump("second run", b.events);
  }
  FUZZ_CHECK(ea == eb);  // finding F1 (docs/fuzzing.md) broke this with deflate
  FUZZ_CHECK(a.output == b.output);
  FUZZ_CHECK(a.error == b.error);
  FUZZ_CHECK(a.state == b.state);
  FUZZ_CHECK(a.peer_code == b.peer_code);
}

// Runs on a fresh connection and checks the run on its own.
inline run_result run_checked(const config& cfg, role r, std::span<const std::byte> input,
                              const std::vector<std::size_t>& sizes, std::size_t cap, bool eof) {
  // A client masks its frames (here: the close it sends) with fresh keys; the same
  // deterministic source per run keeps the outputs of different runs comparable.
  det_random rnd;
  config c_cfg = cfg;
  if (!c_cfg.random) rnd.install(c_cfg);
  connection c(r, c_cfg);
  run_result res = run(c, input, sizes, cap, eof);
  check_run(cfg, r, res);
  return res;
}

inline std::vector<std::size_t> whole(std::size_t n) { return {n}; }
inline std::vector<std::size_t> bytewise(std::size_t n) { return std::vector<std::size_t>(n, 1); }
// Chunk sizes from a seed: a mix of tiny, header-sized and large pieces, some empty.
inline std::vector<std::size_t> seeded_split(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> v;
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; };
  std::size_t p = 0;
  while (p < n) {
    const std::size_t bound = std::array<std::size_t, 4>{2, 15, 200, n + 1}[next() % 4];
    std::size_t s = std::min<std::size_t>(next() % bound, n - p);
    if (s == 0 && next() % 4) s = 1;
    v.push_back(s);
    p += s;
  }
  return v;
}

// Chunk sizes chosen by the fuzzer (up to 64 cut points, from the end of the data).
inline std::vector<std::size_t> fuzzer_split(FuzzedDataProvider& fdp, std::size_t n) {
  std::vector<std::size_t> cuts;
  const unsigned k = fdp.ConsumeIntegralInRange<unsigned>(0, 64);
  for (unsigned i = 0; i < k && fdp.remaining_bytes(); ++i) cuts.push_back(fdp.ConsumeIntegralInRange<std::size_t>(0, n));
  cuts.push_back(0);
  cuts.push_back(n);
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::size_t> v;
  for (std::size_t i = 1; i < cuts.size(); ++i) v.push_back(cuts[i] - cuts[i - 1]);  // zeros: empty feeds
  return v;
}

// The same bytes whole, byte by byte (one event slot) and in `split` (with `cap` slots).
inline run_result check_chunk_invariance(const config& cfg, role r, std::span<const std::byte> input,
                                         const std::vector<std::size_t>& split, std::size_t cap, bool eof) {
  run_result a = run_checked(cfg, r, input, whole(input.size()), 64, eof);
  // Byte by byte up to 4 KiB; past that (frames of 64 KiB and more) only the first and
  // last 2 KiB byte by byte and the middle in one piece, to keep executions fast.
  std::vector<std::size_t> fine = bytewise(std::min<std::size_t>(input.size(), 2048));
  if (input.size() > 4096) {
    fine.push_back(input.size() - 4096);
    fine.insert(fine.end(), 2048, 1);
  } else if (input.size() > 2048) {
    fine.insert(fine.end(), input.size() - 2048, 1);
  }
  run_result b = run_checked(cfg, r, input, fine, 1, eof);
  check_same(cfg, a, b);
  run_result c = run_checked(cfg, r, input, split, cap, eof);
  check_same(cfg, a, c);
  return a;
}

}  // namespace wsfuzz
