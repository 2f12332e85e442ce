// Test harness for the frame layer (ws6455::connection).
//
//  - run(): feeds bytes whole, byte by byte, in fixed-size or seeded random chunks,
//    looping on early stops (consumed < size), and records every event as an owned copy.
//    Each chunk lives in its own heap buffer that is poisoned right after it was fed, so
//    an engine that keeps pointers into old input is caught.
//  - check_all_chunkings(): runs one input under every chunking (and event-buffer
//    capacities 1..16) and asserts identical events, output and state, and that the
//    events equal the expected ones (streaming pieces are coalesced first).
//  - frame builders (any opcode, RSV bits, mask, explicit length form) and an output
//    frame parser.
//  - the order rule (connection.hpp): an event the engine itself answers (ping, close,
//    fail) is always the first of its feed() batch, so an application that answers each
//    batch before feeding again gets its answers out first. check_all_chunkings checks
//    the batches; run_echo / check_echo_order play such an application (an echo server).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "ws6455/close_code.hpp"
#include "ws6455/config.hpp"
#include "ws6455/connection.hpp"
#include "ws6455/error.hpp"
#include "ws6455/event.hpp"
#include "ws6455/frame_header.hpp"

namespace wst {

using namespace ws6455;
using bytes = std::vector<std::byte>;

// ---------------------------------------------------------------------------------------
// Byte helpers

inline bytes str(std::string_view s) {
  bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// "81 05 48 65" -> bytes; whitespace is ignored.
inline bytes hex(std::string_view h) {
  bytes out;
  int nib = -1;
  for (char ch : h) {
    int v;
    if (ch >= '0' && ch <= '9') v = ch - '0';
    else if (ch >= 'a' && ch <= 'f') v = ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F') v = ch - 'A' + 10;
    else continue;
    if (nib < 0) nib = v;
    else { out.push_back(static_cast<std::byte>(nib * 16 + v)); nib = -1; }
  }
  return out;
}

inline bytes filled(std::size_t n, std::uint8_t v) { return bytes(n, static_cast<std::byte>(v)); }

// A deterministic pattern (not constant, so offsets and mask phases matter).
inline bytes pattern(std::size_t n, std::uint32_t seed = 1) {
  bytes b(n);
  std::uint32_t x = seed * 2654435761u + 12345u;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    b[i] = static_cast<std::byte>(x & 0xFF);
  }
  return b;
}

// A deterministic ASCII/multi-byte UTF-8 text of exactly n bytes.
inline std::string utf8_text(std::size_t n) {
  static const char* pieces[] = {"a", "\xC2\xB5", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "Hello ", "\xC3\xA4"};
  std::string s;
  std::size_t i = 0;
  while (s.size() < n) {
    std::string_view p = pieces[i++ % 6];
    if (s.size() + p.size() > n) p = "z";
    s += p;
  }
  return s;
}

template <class... B>
bytes cat(const B&... parts) {
  bytes out;
  (out.insert(out.end(), parts.begin(), parts.end()), ...);
  return out;
}

inline std::string to_hex(std::span<const std::byte> b, std::size_t limit = 24) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < b.size() && i < limit; ++i) {
    if (i) s += ' ';
    auto v = static_cast<unsigned>(b[i]);
    s += d[v >> 4];
    s += d[v & 15];
  }
  if (b.size() > limit) s += " ...";
  return s;
}

inline std::uint64_t fnv(std::span<const std::byte> b) {
  std::uint64_t h = 1469598103934665603ull;
  for (auto x : b) { h ^= static_cast<std::uint8_t>(x); h *= 1099511628211ull; }
  return h;
}

inline bytes as_bytes(std::span<const std::byte> s) { return bytes(s.begin(), s.end()); }

inline bytes close_body(std::uint16_t code, std::string_view reason = {}) {
  bytes b{static_cast<std::byte>(code >> 8), static_cast<std::byte>(code & 0xFF)};
  auto r = str(reason);
  b.insert(b.end(), r.begin(), r.end());
  return b;
}

// ---------------------------------------------------------------------------------------
// Frame builders

inline constexpr std::uint8_t OP_CONT = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8,
                              OP_PING = 0x9, OP_PONG = 0xA;
inline constexpr std::uint8_t RSV1 = 0x40, RSV2 = 0x20, RSV3 = 0x10;

using mask_key = std::array<std::uint8_t, 4>;
inline constexpr mask_key K{0x37, 0xfa, 0x21, 0x3d};  // the RFC 6455 §5.7 key

enum class length_form { minimal, len7, len16, len64 };

// A header declaring `len` payload bytes. The length form may be forced (non-minimal
// tests); len64 writes all 8 bytes of `len`, so an MSB-set length is possible.
inline bytes header(std::uint8_t op, std::uint64_t len, bool fin = true,
                    std::optional<mask_key> mask = std::nullopt, std::uint8_t rsv = 0,
                    length_form lf = length_form::minimal) {
  bytes h;
  h.push_back(static_cast<std::byte>((fin ? 0x80 : 0) | rsv | (op & 0x0F)));
  const std::uint8_t mbit = mask ? 0x80 : 0;
  if (lf == length_form::minimal) lf = len < 126 ? length_form::len7 : len < 65536 ? length_form::len16 : length_form::len64;
  switch (lf) {
    case length_form::len7:
      h.push_back(static_cast<std::byte>(mbit | (len & 0x7F)));
      break;
    case length_form::len16:
      h.push_back(static_cast<std::byte>(mbit | 126));
      h.push_back(static_cast<std::byte>((len >> 8) & 0xFF));
      h.push_back(static_cast<std::byte>(len & 0xFF));
      break;
    default:
      h.push_back(static_cast<std::byte>(mbit | 127));
      for (int i = 7; i >= 0; --i) h.push_back(static_cast<std::byte>((len >> (8 * i)) & 0xFF));
      break;
  }
  if (mask)
    for (auto k : *mask) h.push_back(static_cast<std::byte>(k));
  return h;
}

inline bytes frame(std::uint8_t op, const bytes& payload, bool fin = true,
                   std::optional<mask_key> mask = std::nullopt, std::uint8_t rsv = 0,
                   length_form lf = length_form::minimal) {
  bytes f = header(op, payload.size(), fin, mask, rsv, lf);
  const std::size_t start = f.size();
  f.insert(f.end(), payload.begin(), payload.end());
  if (mask)
    for (std::size_t i = 0; i < payload.size(); ++i)
      f[start + i] ^= static_cast<std::byte>((*mask)[i % 4]);
  return f;
}

// A frame as the peer of a connection in role `receiver` sends it: masked (key K) to a
// server, unmasked to a client.
inline bytes peer_frame(role receiver, std::uint8_t op, const bytes& payload, bool fin = true,
                        std::uint8_t rsv = 0, length_form lf = length_form::minimal) {
  return frame(op, payload, fin, receiver == role::server ? std::optional<mask_key>(K) : std::nullopt, rsv, lf);
}
inline bytes peer_header(role receiver, std::uint8_t op, std::uint64_t len, bool fin = true,
                         std::uint8_t rsv = 0, length_form lf = length_form::minimal) {
  return header(op, len, fin, receiver == role::server ? std::optional<mask_key>(K) : std::nullopt, rsv, lf);
}

// ---------------------------------------------------------------------------------------
// Output parsing

struct parsed_frame {
  bool fin = false;
  std::uint8_t rsv = 0;
  std::uint8_t opcode = 0;
  bool masked = false;
  mask_key key{};
  bytes payload;           // unmasked
  bytes header_bytes;      // as on the wire
  bool minimal_length = true;
};

// Parses complete frames; `rest` (if given) receives the number of trailing bytes of an
// incomplete frame.
inline std::vector<parsed_frame> parse_frames(std::span<const std::byte> in, std::size_t* rest = nullptr) {
  std::vector<parsed_frame> out;
  std::size_t p = 0;
  auto u = [&](std::size_t i) { return static_cast<std::uint8_t>(in[i]); };
  while (p < in.size()) {
    if (in.size() - p < 2) break;
    parsed_frame f;
    const std::uint8_t b0 = u(p), b1 = u(p + 1);
    f.fin = (b0 & 0x80) != 0;
    f.rsv = b0 & 0x70;
    f.opcode = b0 & 0x0F;
    f.masked = (b1 & 0x80) != 0;
    std::uint64_t len = b1 & 0x7F;
    std::size_t h = 2;
    if (len == 126) {
      if (in.size() - p < 4) break;
      len = (std::uint64_t{u(p + 2)} << 8) | u(p + 3);
      h = 4;
      f.minimal_length = len >= 126;
    } else if (len == 127) {
      if (in.size() - p < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | u(p + 2 + i);
      h = 10;
      f.minimal_length = len >= 65536 && (len >> 63) == 0;
    }
    if (f.masked) {
      if (in.size() - p < h + 4) break;
      for (int i = 0; i < 4; ++i) f.key[i] = u(p + h + i);
      h += 4;
    }
    if (in.size() - p - h < len) break;
    f.header_bytes.assign(in.begin() + p, in.begin() + p + h);
    f.payload.assign(in.begin() + p + h, in.begin() + p + h + len);
    if (f.masked)
      for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] ^= static_cast<std::byte>(f.key[i % 4]);
    out.push_back(std::move(f));
    p += h + len;
  }
  if (rest) *rest = in.size() - p;
  return out;
}

inline std::uint16_t close_code_of(const parsed_frame& f) {
  if (f.payload.size() < 2) return close_code::no_status;
  return static_cast<std::uint16_t>((static_cast<unsigned>(f.payload[0]) << 8) | static_cast<unsigned>(f.payload[1]));
}

// ---------------------------------------------------------------------------------------
// Recorded events

struct recorded_event {
  event_type type = event_type::binary;
  bool fin = true;
  std::uint16_t code = 0;
  protocol_error error = protocol_error::none;
  bytes data;
  std::string reason;
  bool operator==(const recorded_event&) const = default;
};

inline recorded_event record(const event& e) {
  recorded_event r;
  r.type = e.type;
  r.fin = e.fin;
  r.code = e.code;
  r.error = e.error;
  r.data.assign(e.data.begin(), e.data.end());
  r.reason.assign(e.reason.begin(), e.reason.end());
  return r;
}

inline const char* type_name(event_type t) {
  switch (t) {
    case event_type::text: return "text";
    case event_type::binary: return "binary";
    case event_type::ping: return "ping";
    case event_type::pong: return "pong";
    case event_type::close: return "close";
    case event_type::fail: return "fail";
  }
  return "?";
}

inline const char* error_name(protocol_error e) {
  switch (e) {
    case protocol_error::none: return "none";
    case protocol_error::reserved_bits: return "reserved_bits";
    case protocol_error::reserved_opcode: return "reserved_opcode";
    case protocol_error::control_fragmented: return "control_fragmented";
    case protocol_error::control_too_long: return "control_too_long";
    case protocol_error::non_minimal_length: return "non_minimal_length";
    case protocol_error::length_msb_set: return "length_msb_set";
    case protocol_error::unmasked_frame: return "unmasked_frame";
    case protocol_error::masked_frame: return "masked_frame";
    case protocol_error::unexpected_continuation: return "unexpected_continuation";
    case protocol_error::expected_continuation: return "expected_continuation";
    case protocol_error::bad_close_payload: return "bad_close_payload";
    case protocol_error::bad_close_code: return "bad_close_code";
    case protocol_error::invalid_utf8: return "invalid_utf8";
    case protocol_error::invalid_close_reason: return "invalid_close_reason";
    case protocol_error::bad_compressed_data: return "bad_compressed_data";
    case protocol_error::frame_too_large: return "frame_too_large";
    case protocol_error::message_too_large: return "message_too_large";
    case protocol_error::too_many_fragments: return "too_many_fragments";
    case protocol_error::internal_error: return "internal_error";
  }
  return "?";
}

// One line per event; payloads shown as size + hash + a hex preview, so equal strings
// mean equal events. Fail (and 1006) reasons are implementation text: shown only on request.
inline std::string describe(const recorded_event& e, bool fail_reason = true) {
  std::ostringstream o;
  o << type_name(e.type);
  if (!e.fin) o << " fin=0";
  if (e.type == event_type::close || e.type == event_type::fail) o << " code=" << e.code;
  if (e.type == event_type::fail || e.error != protocol_error::none) o << " error=" << error_name(e.error);
  if (e.type != event_type::close && e.type != event_type::fail)
    o << " [" << e.data.size() << " #" << std::hex << (fnv(e.data) & 0xFFFFFF) << std::dec << ": " << to_hex(e.data) << "]";
  else if (!e.data.empty())
    o << " data=[" << to_hex(e.data) << "]";
  // A 1006 close comes from feed_eof(): its reason is local text too.
  const bool local = e.type == event_type::fail || (e.type == event_type::close && e.code == close_code::abnormal);
  if ((e.type == event_type::close || e.type == event_type::fail) && (fail_reason || !local))
    o << " reason=\"" << e.reason << "\"";
  return o.str();
}

inline std::string describe(const std::vector<recorded_event>& v, bool fail_reason = true) {
  std::string s;
  for (auto& e : v) { s += "\n  "; s += describe(e, fail_reason); }
  return s.empty() ? "\n  (no events)" : s;
}

inline std::ostream& operator<<(std::ostream& o, const recorded_event& e) { return o << describe(e); }

// Expected events.
inline recorded_event ev_text(std::string_view s, bool fin = true) {
  recorded_event e; e.type = event_type::text; e.fin = fin; e.data = str(s); return e;
}
inline recorded_event ev_binary(const bytes& b, bool fin = true) {
  recorded_event e; e.type = event_type::binary; e.fin = fin; e.data = b; return e;
}
inline recorded_event ev_ping(const bytes& b) { recorded_event e; e.type = event_type::ping; e.data = b; return e; }
inline recorded_event ev_pong(const bytes& b) { recorded_event e; e.type = event_type::pong; e.data = b; return e; }
inline recorded_event ev_close(std::uint16_t code, std::string_view reason = {}) {
  recorded_event e; e.type = event_type::close; e.code = code; e.reason = std::string(reason); return e;
}
// The close code for each error, written out here independently of lib/error.cpp.
inline std::uint16_t expected_code(protocol_error e) {
  switch (e) {
    case protocol_error::invalid_utf8:
    case protocol_error::invalid_close_reason:
    case protocol_error::bad_compressed_data: return 1007;
    case protocol_error::frame_too_large:
    case protocol_error::message_too_large:
    case protocol_error::too_many_fragments: return 1009;
    case protocol_error::internal_error: return 1011;
    default: return 1002;
  }
}
inline recorded_event ev_fail(protocol_error err) {
  recorded_event e; e.type = event_type::fail; e.code = expected_code(err); e.error = err; return e;
}

// Streaming pieces -> whole messages. Each message is placed where its fin piece was;
// control events stay in order. A message left unfinished (by a fail, close or the end
// of input) is dropped: how much of it was delivered depends on the chunking.
inline std::vector<recorded_event> coalesce(const std::vector<recorded_event>& in) {
  std::vector<recorded_event> out;
  std::optional<recorded_event> open;
  for (auto& e : in) {
    if (e.type == event_type::text || e.type == event_type::binary) {
      if (!open) { open = e; }
      else {
        if (open->type != e.type) {  // a type change inside a message: keep it visible
          out.push_back(*open);
          open = e;
        } else {
          open->data.insert(open->data.end(), e.data.begin(), e.data.end());
        }
      }
      if (e.fin) { open->fin = true; out.push_back(std::move(*open)); open.reset(); }
    } else {
      out.push_back(e);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Chunkings and the feed loop

struct chunking {
  enum kind_t { whole, bytewise, fixed, random, split } kind = whole;
  std::size_t size = 0;         // fixed: chunk size; split: the one split point
  std::uint32_t seed = 0;       // random
  std::size_t event_capacity = 16;

  std::string name() const {
    std::ostringstream o;
    switch (kind) {
      case whole: o << "whole"; break;
      case bytewise: o << "byte-by-byte"; break;
      case fixed: o << "fixed " << size; break;
      case random: o << "random seed " << seed; break;
      case split: o << "split at " << size; break;
    }
    o << ", event buffer " << event_capacity;
    return o.str();
  }
};

inline chunking whole_input(std::size_t cap = 16) { return {chunking::whole, 0, 0, cap}; }
inline chunking byte_by_byte(std::size_t cap = 16) { return {chunking::bytewise, 0, 0, cap}; }
inline chunking random_chunks(std::uint32_t seed, std::size_t cap = 16) { return {chunking::random, 0, seed, cap}; }

// Every chunking a receive test runs under. Large inputs skip the small fixed sizes.
inline std::vector<chunking> all_chunkings(std::size_t input_size) {
  std::vector<chunking> v{whole_input(16), whole_input(1), byte_by_byte(16), byte_by_byte(1)};
  if (input_size <= (256u << 10))
    for (std::size_t s : {2, 3, 5, 7, 13}) v.push_back({chunking::fixed, s, 0, 4});
  for (std::uint32_t seed = 1; seed <= 8; ++seed) v.push_back(random_chunks(seed, 1 + seed % 5));
  // Small inputs: also every two-chunk split (llhttp "scan" style).
  if (input_size <= 48)
    for (std::size_t i = 1; i < input_size; ++i) v.push_back({chunking::split, i, 0, 2});
  return v;
}

inline std::vector<std::size_t> chunk_sizes(const chunking& ch, std::size_t n) {
  std::vector<std::size_t> sizes;
  if (n == 0) return sizes;
  switch (ch.kind) {
    case chunking::whole: sizes.push_back(n); break;
    case chunking::bytewise: sizes.assign(n, 1); break;
    case chunking::split:
      if (ch.size > 0 && ch.size < n) { sizes.push_back(ch.size); sizes.push_back(n - ch.size); }
      else sizes.push_back(n);
      break;
    case chunking::fixed:
      for (std::size_t p = 0; p < n; p += ch.size) sizes.push_back(std::min(ch.size, n - p));
      break;
    case chunking::random: {
      std::uint64_t x = 0x9E3779B97F4A7C15ull * (ch.seed + 1);
      auto next = [&] { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; };
      std::size_t p = 0;
      while (p < n) {
        const std::size_t bound = std::array<std::size_t, 4>{3, 16, 300, n}[next() % 4];
        const std::size_t s = std::min<std::size_t>(1 + next() % bound, n - p);
        sizes.push_back(s);
        p += s;
      }
      break;
    }
  }
  return sizes;
}

struct run_result {
  std::vector<recorded_event> events;
  std::vector<std::size_t> event_at;  // input bytes consumed when each event was returned
  std::vector<std::size_t> batch_index;  // each event's index in the feed() call that returned it
  bytes output;                       // pending_output() at the end (not consumed)
  connection_state state = connection_state::open;
  bool stuck = false;                 // feed made no progress and reported nothing
};

// What the application does with each event, right after the feed() call that returned
// it and before the next one.
using event_handler = std::function<void(connection&, const event&)>;

// Feeds `input` in the chunks `ch` gives. Loops on early stops. `eof`: then feed_eof().
inline run_result run_ex(connection& c, std::span<const std::byte> input, const chunking& ch, bool eof = false,
                         const event_handler& on_event = {}) {
  run_result res;
  std::vector<event> evbuf(ch.event_capacity);
  std::size_t base = 0;
  for (std::size_t sz : chunk_sizes(ch, input.size())) {
    // Each chunk gets its own buffer, poisoned after use: the engine must not keep
    // pointers into input across feed() calls.
    bytes buf(input.begin() + base, input.begin() + base + sz);
    std::size_t off = 0;
    int idle = 0;
    while (off < buf.size()) {
      auto r = c.feed(std::span<std::byte>(buf).subspan(off), std::span<event>(evbuf));
      if (r.consumed > buf.size() - off || r.events > evbuf.size()) {
        FAIL_CHECK("feed returned consumed=" << r.consumed << " events=" << r.events << " for " << buf.size() - off
                                             << " bytes and " << evbuf.size() << " slots");
        res.stuck = true;
        return res;
      }
      off += r.consumed;
      for (std::size_t i = 0; i < r.events; ++i) {
        res.events.push_back(record(evbuf[i]));
        res.event_at.push_back(base + off);
        res.batch_index.push_back(i);
      }
      if (on_event)
        for (std::size_t i = 0; i < r.events; ++i) on_event(c, evbuf[i]);
      if (r.consumed == 0 && r.events == 0) {
        if (++idle > 2) {
          FAIL_CHECK("feed made no progress at input offset " << base + off << " (" << ch.name() << ")");
          res.stuck = true;
          return res;
        }
      } else {
        idle = 0;
      }
    }
    std::fill(buf.begin(), buf.end(), std::byte{0xEE});
    base += sz;
  }
  if (eof) {
    event e;
    if (c.feed_eof(e)) {
      res.events.push_back(record(e));
      res.event_at.push_back(base);
      res.batch_index.push_back(0);
      if (on_event) on_event(c, e);
    }
  }
  auto out = c.pending_output();
  res.output.assign(out.begin(), out.end());
  res.state = c.state();
  return res;
}

inline std::vector<recorded_event> run(connection& c, std::span<const std::byte> input, const chunking& ch = whole_input()) {
  return run_ex(c, input, ch).events;
}

// Byte-by-byte run; returns how many input bytes had been fed when the fail event came
// (0 when there was none): what "fail fast" tests measure.
inline std::size_t fail_position(const config& cfg, role r, const bytes& input) {
  connection c(r, cfg);
  auto res = run_ex(c, input, byte_by_byte());
  for (std::size_t i = 0; i < res.events.size(); ++i)
    if (res.events[i].type == event_type::fail) return res.event_at[i];
  return 0;
}

// The same frames (mask keys aside: a client's keys are random).
inline bool same_frames(std::span<const std::byte> a, std::span<const std::byte> b) {
  std::size_t ra = 0, rb = 0;
  auto fa = parse_frames(a, &ra), fb = parse_frames(b, &rb);
  if (ra != rb || fa.size() != fb.size()) return false;
  for (std::size_t i = 0; i < fa.size(); ++i) {
    if (fa[i].fin != fb[i].fin || fa[i].rsv != fb[i].rsv || fa[i].opcode != fb[i].opcode ||
        fa[i].masked != fb[i].masked || fa[i].payload != fb[i].payload ||
        fa[i].header_bytes.size() != fb[i].header_bytes.size())
      return false;
  }
  return true;
}

// Runs `input` on a fresh connection under every chunking; asserts identical events
// (coalesced when streaming), output and state, and that the events equal `expected`
// (whole messages; fail reasons not compared, but they must be non-empty). Returns the
// whole-input run for further checks.
inline run_result check_all_chunkings(const config& cfg, role r, std::span<const std::byte> input,
                                      const std::vector<recorded_event>& expected, bool eof = false,
                                      std::vector<chunking> chunkings = {}) {
  if (chunkings.empty()) chunkings = all_chunkings(input.size());
  const bool streaming = cfg.mode == delivery::streaming;
  run_result first;
  std::vector<recorded_event> first_events;
  bool have_first = false;
  for (const auto& ch : chunkings) {
    INFO("chunking: " << ch.name());
    connection c(r, cfg);
    run_result res = run_ex(c, input, ch, eof);
    if (res.stuck) return res;
    // Nothing after the first close/fail (except a 1006 from feed_eof never follows one).
    for (std::size_t i = 0; i < res.events.size(); ++i) {
      auto t = res.events[i].type;
      if (t == event_type::close || t == event_type::fail) {
        CHECK_MESSAGE(i + 1 == res.events.size(), "events after a close/fail:" << describe(res.events));
        break;
      }
    }
    if (!streaming)
      for (auto& e : res.events)
        if (e.type == event_type::text || e.type == event_type::binary)
          CHECK_MESSAGE(e.fin, "fin=0 data event in whole-message mode");
    for (auto& e : res.events)
      if (e.type == event_type::fail) CHECK_MESSAGE(!e.reason.empty(), "fail event without a reason");
    // The order rule: what the engine answers by itself comes first in its batch.
    for (std::size_t i = 0; i < res.events.size(); ++i) {
      const auto t = res.events[i].type;
      if (t == event_type::fail || t == event_type::close || t == event_type::ping)
        CHECK_MESSAGE(res.batch_index[i] == 0, "a " << type_name(t) << " event behind other events of its feed() call:"
                                                    << describe(res.events));
    }
    std::vector<recorded_event> got = streaming ? coalesce(res.events) : res.events;
    CHECK_EQ(describe(got, false), describe(expected, false));
    if (!have_first) {
      first = res;
      first_events = got;
      have_first = true;
    } else {
      CHECK_EQ(describe(got), describe(first_events));
      CHECK_MESSAGE(same_frames(res.output, first.output), "output differs from the whole-input run: "
                                                               << to_hex(res.output, 64) << " vs " << to_hex(first.output, 64));
      CHECK(res.state == first.state);
    }
  }
  return first;
}

inline run_result check_all_chunkings(role r, std::span<const std::byte> input,
                                      const std::vector<recorded_event>& expected) {
  return check_all_chunkings(config{}, r, input, expected);
}

// The output must hold exactly one close frame carrying `code` (and be a well-formed
// sequence of frames, masked iff `masked`); returns the frames.
inline std::vector<parsed_frame> check_output_ends_with_close(std::span<const std::byte> out, std::uint16_t code,
                                                              bool masked) {
  std::size_t rest = 0;
  auto frames = parse_frames(out, &rest);
  CHECK(rest == 0);
  REQUIRE_MESSAGE(!frames.empty(), "no output; expected a close " << code);
  const auto& last = frames.back();
  CHECK(last.opcode == OP_CLOSE);
  CHECK(last.fin);
  CHECK(last.masked == masked);
  CHECK(close_code_of(last) == code);
  std::size_t closes = 0;
  for (auto& f : frames) {
    closes += f.opcode == OP_CLOSE;
    CHECK(f.masked == masked);
    CHECK(f.minimal_length);
  }
  CHECK(closes == 1);
  return frames;
}

// Asserts a fail with `err`: the events end with it, state failed, and the output ends with
// exactly one close frame carrying its code.
inline void check_fails(const config& cfg, role r, const bytes& input, std::vector<recorded_event> before,
                        protocol_error err) {
  before.push_back(ev_fail(err));
  auto res = check_all_chunkings(cfg, r, input, before);
  CHECK(res.state == connection_state::failed);
  check_output_ends_with_close(res.output, expected_code(err), r == role::client);
}
inline void check_fails(role r, const bytes& input, protocol_error err) { check_fails(config{}, r, input, {}, err); }

// ---------------------------------------------------------------------------------------
// An echo application (the order rule)

// Echoes each data event (a streaming piece as a fragment) at once; every echo must be
// accepted: the engine has not queued a close behind the application's back.
inline event_handler echo_app(delivery mode) {
  return [mode](connection& c, const event& e) {
    if (e.type != event_type::text && e.type != event_type::binary) return;
    const opcode op = e.type == event_type::text ? opcode::text : opcode::binary;
    const send_result r = mode == delivery::streaming ? c.send_fragment(op, e.data, e.fin)
                          : op == opcode::text       ? c.send_text(e.text())
                                                     : c.send_binary(e.data);
    CHECK_MESSAGE(r == send_result::ok, "the echo was refused: " << ws6455::describe(r));
  };
}

// One logical frame of output: a whole message (fragments joined), or a control frame
// (close: its code as the payload's first two bytes, 1005 when empty).
struct answer {
  std::uint8_t op = 0;
  bytes payload;
  bool operator==(const answer&) const = default;
};

inline std::string describe(const std::vector<answer>& v) {
  std::ostringstream o;
  for (auto& a : v) {
    o << "\n  op " << int(a.op);
    if (a.op == OP_CLOSE) o << " code " << (a.payload.size() >= 2 ? (int(a.payload[0]) << 8 | int(a.payload[1])) : 1005);
    else o << " [" << a.payload.size() << ": " << to_hex(a.payload) << "]";
  }
  return v.empty() ? "\n  (nothing)" : o.str();
}

// The output as answers; a message left unfinished (a streaming echo cut by a close)
// is dropped, as coalesce() drops its events.
inline std::vector<answer> answers_in(std::span<const std::byte> out) {
  std::vector<answer> v;
  std::optional<answer> open;
  for (auto& f : parse_frames(out)) {
    if (f.opcode == OP_CLOSE) {
      v.push_back({OP_CLOSE, f.payload.size() >= 2 ? bytes(f.payload.begin(), f.payload.begin() + 2) : bytes{}});
    } else if (f.opcode >= 8) {
      v.push_back({f.opcode, f.payload});
    } else {
      if (!open) open = answer{f.opcode, {}};
      open->payload.insert(open->payload.end(), f.payload.begin(), f.payload.end());
      if (f.fin) { v.push_back(std::move(*open)); open.reset(); }
    }
  }
  return v;
}

// What an echo server answers to `events` (whole messages), in their order: the echo of
// each message, a pong per ping, the close reply or the failure's close.
inline std::vector<answer> echo_answers(const std::vector<recorded_event>& events) {
  std::vector<answer> v;
  for (auto& e : events) {
    switch (e.type) {
      case event_type::text: v.push_back({OP_TEXT, e.data}); break;
      case event_type::binary: v.push_back({OP_BINARY, e.data}); break;
      case event_type::ping: v.push_back({OP_PONG, e.data}); break;
      case event_type::pong: break;
      case event_type::close:
      case event_type::fail:
        if (e.code == close_code::abnormal) break;
        v.push_back({OP_CLOSE, e.code == close_code::no_status ? bytes{} : close_body(e.code)});
        break;
    }
  }
  return v;
}

inline run_result run_echo(connection& c, std::span<const std::byte> input, const chunking& ch, delivery mode) {
  return run_ex(c, input, ch, false, echo_app(mode));
}

// Under every chunking: an echo server's output is exactly its answers to `events`, in
// the order the events came (the engine's pongs and closes never overtake an echo).
inline void check_echo_order(const config& cfg, role r, std::span<const std::byte> input,
                             const std::vector<recorded_event>& events, std::vector<chunking> chunkings = {}) {
  if (chunkings.empty()) chunkings = all_chunkings(input.size());
  const auto want = echo_answers(events);
  for (const auto& ch : chunkings) {
    INFO("echo server, chunking: " << ch.name());
    connection c(r, cfg);
    run_result res = run_echo(c, input, ch, cfg.mode);
    if (res.stuck) return;
    const auto got_events = cfg.mode == delivery::streaming ? coalesce(res.events) : res.events;
    CHECK_EQ(describe(got_events, false), describe(events, false));
    CHECK_EQ(describe(answers_in(res.output)), describe(want));
  }
}

// Deterministic masking-key source for client connections.
struct counting_random {
  std::uint32_t state = 1;
  std::size_t calls = 0;
  std::size_t bytes_drawn = 0;
  static void fill(void* ctx, std::span<std::byte> out) {
    auto* self = static_cast<counting_random*>(ctx);
    ++self->calls;
    self->bytes_drawn += out.size();
    for (auto& b : out) {
      self->state = self->state * 1103515245u + 12345u;
      b = static_cast<std::byte>((self->state >> 16) & 0xFF);
    }
  }
  void install(config& cfg) {
    cfg.random = &counting_random::fill;
    cfg.random_context = this;
  }
};

}  // namespace wst
