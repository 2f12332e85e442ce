// Generators shared by the structure-aware targets: valid UTF-8 from fuzzer bytes, frame
// encoding with any length form, and the round trip (a connection's send_* output fed
// into a peer connection must give back the same messages).
#pragma once

#include "fuzz_util.hpp"

namespace wsfuzz {

// n bytes of valid UTF-8 built from fuzzer bytes: ASCII mostly, and 2/3/4-byte code
// points (no surrogates, nothing past U+10FFFF), the last one cut to fit n exactly
// with ASCII.
inline std::string make_utf8(FuzzedDataProvider& fdp, std::size_t n) {
  std::string s;
  s.reserve(n);
  while (s.size() < n) {
    const std::uint8_t b = fdp.ConsumeIntegral<std::uint8_t>();
    std::uint32_t cp;
    if (b < 0xC0 || !fdp.remaining_bytes()) {
      cp = b & 0x7F;
    } else if (b < 0xE0) {
      cp = 0x80 + (fdp.ConsumeIntegral<std::uint16_t>() % (0x800 - 0x80));
    } else if (b < 0xF0) {
      cp = 0x800 + (fdp.ConsumeIntegral<std::uint16_t>() % (0x10000 - 0x800));
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
    } else {
      cp = 0x10000 + (fdp.ConsumeIntegral<std::uint32_t>() % (0x110000 - 0x10000));
    }
    char buf[4];
    std::size_t k;
    if (cp < 0x80) { buf[0] = static_cast<char>(cp); k = 1; }
    else if (cp < 0x800) { buf[0] = static_cast<char>(0xC0 | (cp >> 6)); buf[1] = static_cast<char>(0x80 | (cp & 0x3F)); k = 2; }
    else if (cp < 0x10000) {
      buf[0] = static_cast<char>(0xE0 | (cp >> 12)); buf[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      buf[2] = static_cast<char>(0x80 | (cp & 0x3F)); k = 3;
    } else {
      buf[0] = static_cast<char>(0xF0 | (cp >> 18)); buf[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      buf[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); buf[3] = static_cast<char>(0x80 | (cp & 0x3F)); k = 4;
    }
    if (s.size() + k > n) { s.push_back('z'); continue; }
    s.append(buf, k);
  }
  return s;
}

// Payload bytes: fuzzer bytes first, then a pattern when the input runs out (so large
// lengths do not need large inputs).
inline bytes make_payload(FuzzedDataProvider& fdp, std::size_t n) {
  bytes b = fdp.ConsumeBytes<std::byte>(std::min<std::size_t>(n, fdp.remaining_bytes() / 2));
  std::uint32_t x = static_cast<std::uint32_t>(n) * 2654435761u + 1;
  while (b.size() < n) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    b.push_back(static_cast<std::byte>(x));
  }
  return b;
}

enum class len_form : std::uint8_t { minimal, len16, len64 };

struct frame_spec {
  bool fin = true;
  std::uint8_t rsv = 0;  // 0x40 / 0x20 / 0x10
  std::uint8_t op = 2;
  bool masked = false;
  std::array<std::byte, 4> key{};
  len_form form = len_form::minimal;
  std::uint64_t declared = 0;  // the length field
  bytes payload;               // unmasked; declared == payload.size() unless header_only
  bool header_only = false;    // only the header goes on the wire (a length we do not send)
};

inline unsigned len7_of(const frame_spec& f) {
  if (f.form == len_form::len16) return 126;
  if (f.form == len_form::len64) return 127;
  return f.declared < 126 ? static_cast<unsigned>(f.declared) : f.declared <= 0xFFFF ? 126 : 127;
}

inline void encode(const frame_spec& f, bytes& out) {
  out.push_back(static_cast<std::byte>((f.fin ? 0x80 : 0) | f.rsv | (f.op & 0x0F)));
  const unsigned m = f.masked ? 0x80 : 0;
  const unsigned l7 = len7_of(f);
  out.push_back(static_cast<std::byte>(m | l7));
  if (l7 == 126) {
    out.push_back(static_cast<std::byte>(f.declared >> 8));
    out.push_back(static_cast<std::byte>(f.declared));
  } else if (l7 == 127) {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::byte>(f.declared >> (8 * i)));
  }
  if (f.masked) out.insert(out.end(), f.key.begin(), f.key.end());
  if (f.header_only) return;
  const std::size_t start = out.size();
  out.insert(out.end(), f.payload.begin(), f.payload.end());
  if (f.masked)
    for (std::size_t i = 0; i < f.payload.size(); ++i) out[start + i] ^= f.key[i % 4];
}

// ---------------------------------------------------------------------------------------
// Round trip: what a sender's send_* calls put on the wire, a receiver decodes back.

inline constexpr std::uint16_t k_close_codes[] = {1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009,
                                                  1010, 1011, 1012, 1013, 1014, 1015, 1016, 0,    999,  2999,
                                                  3000, 3999, 4000, 4999, 5000, 65535};

// Feeds `c` everything in `in` (as `sizes` chunks), collecting events; output untouched.
inline void pump(connection& c, std::span<const std::byte> in, const std::vector<std::size_t>& sizes,
                 std::size_t cap, std::vector<rec_event>& events) {
  connection_state before = c.state();
  (void)before;
  run_result r = run(c, in, sizes, cap, false);
  events.insert(events.end(), r.events.begin(), r.events.end());
}

// Drives a sender with fuzzer-chosen send_* calls, checks each send_result against a
// model of the rules, moves its output to the receiver at fuzzer-chosen points and in
// fuzzer-chosen splits, and checks the receiver decodes exactly the messages sent; then
// the receiver's answers (pongs, the close echo) go back to the sender.
inline void round_trip(FuzzedDataProvider& fdp, std::optional<deflate_params> deflate) {
  const role sender_role = fdp.ConsumeBool() ? role::client : role::server;
  const role receiver_role = sender_role == role::client ? role::server : role::client;
  det_random rnd;
  rnd.x ^= fdp.ConsumeIntegral<std::uint32_t>();
  config scfg;
  rnd.install(scfg);
  scfg.deflate = deflate;
  config rcfg;
  rcfg.deflate = deflate;
  rcfg.mode = fdp.ConsumeBool() ? delivery::streaming : delivery::whole_messages;
  det_random rnd2;
  rnd2.install(rcfg);
  connection tx(sender_role, scfg), rxc(receiver_role, rcfg);
  const std::size_t cap = 1 + fdp.ConsumeIntegralInRange<std::size_t>(0, 4);

  // The model.
  bool closed = false, in_msg = false, msg_text = false;
  detail::utf8_state st = 0;
  bytes msg;
  std::vector<rec_event> expect;  // at the receiver (whole messages)
  std::vector<bytes> pings;
  std::optional<std::uint16_t> sent_close;
  std::vector<rec_event> got;

  auto transfer = [&](std::size_t limit) {
    auto out = tx.pending_output();
    const std::size_t n = std::min(limit, out.size());
    bytes chunk(out.begin(), out.begin() + n);
    FuzzedDataProvider* p = &fdp;
    auto split = seeded_split(n, p->ConsumeIntegral<std::uint16_t>());
    pump(rxc, chunk, split, cap, got);
    tx.consume_output(n);
  };

  for (int step = 0; step < 64 && fdp.remaining_bytes() > 0; ++step) {
    const int op = fdp.ConsumeIntegralInRange<int>(0, 9);
    switch (op) {
      case 0:
      case 1: {  // send_text / send_binary, whole
        const bool text = op == 0;
        const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, fdp.ConsumeBool() ? 40 : 3000);
        bytes b;
        bool corrupt = false;
        if (text) {
          std::string s = make_utf8(fdp, n);
          corrupt = !s.empty() && fdp.ConsumeIntegralInRange<int>(0, 15) == 0;
          if (corrupt) s[fdp.ConsumeIntegralInRange<std::size_t>(0, s.size() - 1)] = static_cast<char>(0xFF);
          b = to_bytes(s);
        } else {
          b = make_payload(fdp, n);
        }
        const send_result r = text ? tx.send_text(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()))
                                   : tx.send_binary(b);
        send_result want = send_result::ok;
        if (closed) want = send_result::closed;
        else if (in_msg) want = send_result::message_in_progress;
        else if (corrupt) want = send_result::invalid_utf8;
        FUZZ_CHECK(r == want);
        if (r == send_result::ok) {
          rec_event e;
          e.type = text ? event_type::text : event_type::binary;
          e.data = b;
          expect.push_back(e);
        }
        break;
      }
      case 2: {  // send_fragment
        const int t = fdp.ConsumeIntegralInRange<int>(0, 9);
        const opcode type = t < 4 ? opcode::continuation : t < 6 ? opcode::text : t < 8 ? opcode::binary : opcode::ping;
        const bool fin = fdp.ConsumeBool();
        const bool as_text = in_msg ? msg_text : type == opcode::text;
        const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, 300);
        bytes b;
        if (as_text) {
          b = to_bytes(make_utf8(fdp, n));
          // Cut inside a code point sometimes: the next fragment may complete it.
          if (!b.empty() && fdp.ConsumeBool()) b.pop_back();
        } else {
          b = make_payload(fdp, n);
        }
        const send_result r = tx.send_fragment(type, b, fin);
        send_result want = send_result::ok;
        detail::utf8_state st2 = in_msg ? st : 0;
        if (is_control(type)) want = send_result::not_a_data_opcode;
        else if (closed) want = send_result::closed;
        else if (in_msg && type != opcode::continuation && (type == opcode::text) != msg_text) want = send_result::message_in_progress;
        else if (!in_msg && type == opcode::continuation) want = send_result::no_message_open;
        else if (as_text && (!detail::utf8_validate_scalar(st2, b.data(), b.size()) || (fin && st2 != 0)))
          want = send_result::invalid_utf8;
        FUZZ_CHECK(r == want);
        if (r == send_result::ok) {
          if (!in_msg) { msg.clear(); msg_text = as_text; }
          st = st2;
          msg.insert(msg.end(), b.begin(), b.end());
          in_msg = !fin;
          if (fin) {
            rec_event e;
            e.type = msg_text ? event_type::text : event_type::binary;
            e.data = msg;
            expect.push_back(e);
          }
        }
        break;
      }
      case 3:
      case 4: {  // ping / pong
        const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, fdp.ConsumeBool() ? 126 : 20);
        bytes b = make_payload(fdp, n);
        const send_result r = op == 3 ? tx.send_ping(b) : tx.send_pong(b);
        send_result want = closed ? send_result::closed : n > 125 ? send_result::control_too_long : send_result::ok;
        FUZZ_CHECK(r == want);
        if (r == send_result::ok) {
          rec_event e;
          e.type = op == 3 ? event_type::ping : event_type::pong;
          e.data = b;
          expect.push_back(e);
          if (op == 3) pings.push_back(b);
        }
        break;
      }
      case 5: {  // close
        const std::uint16_t code = fdp.ConsumeBool() ? 1000 : fdp.PickValueInArray(k_close_codes);
        const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, fdp.ConsumeBool() ? 10 : 125);
        std::string reason = make_utf8(fdp, n);
        if (fdp.ConsumeBool()) reason.clear();
        const bool corrupt = !reason.empty() && fdp.ConsumeIntegralInRange<int>(0, 7) == 0;
        if (corrupt) reason[0] = static_cast<char>(0xC0);
        const send_result r = tx.close(code, reason);
        send_result want = send_result::ok;
        if (closed) want = send_result::closed;
        else if (code == close_code::no_status ? !reason.empty() : !is_valid_close_code(code)) want = send_result::invalid_close_code;
        else if (reason.size() > 123) want = send_result::control_too_long;
        else if (corrupt) want = send_result::invalid_utf8;
        FUZZ_CHECK(r == want);
        if (r == send_result::ok) {
          closed = true;
          in_msg = false;  // the receiver drops the unfinished message
          sent_close = code;
          rec_event e;
          e.type = event_type::close;
          e.code = code;
          e.reason = code == close_code::no_status ? std::string() : reason;
          expect.push_back(e);
          FUZZ_CHECK(tx.state() == connection_state::closing);
        }
        break;
      }
      case 6: {  // send_prepared
        const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, 200);
        const bool text = fdp.ConsumeBool();
        const std::string s = make_utf8(fdp, n);
        prepared_message m = text ? prepared_message::text(s) : prepared_message(opcode::binary, as_span(s));
        const send_result r = tx.send_prepared(m);
        send_result want = send_result::ok;
        if (sender_role != role::server) want = send_result::wrong_role;
        else if (closed) want = send_result::closed;
        else if (in_msg) want = send_result::message_in_progress;
        FUZZ_CHECK(r == want);
        if (r == send_result::ok) {
          rec_event e;
          e.type = text ? event_type::text : event_type::binary;
          e.data = to_bytes(s);
          expect.push_back(e);
        }
        break;
      }
      default:  // move (part of) the output to the receiver now
        transfer(fdp.ConsumeBool() ? SIZE_MAX : fdp.ConsumeIntegralInRange<std::size_t>(0, 100));
        break;
    }
  }
  transfer(SIZE_MAX);
  FUZZ_CHECK(tx.pending_output().empty());

  const auto have = rcfg.mode == delivery::streaming ? coalesce(got) : got;
  FUZZ_CHECK(have == expect);
  FUZZ_CHECK(rxc.last_error() == protocol_error::none);
  FUZZ_CHECK(rxc.state() == (sent_close ? connection_state::closed : connection_state::open));
  if (sent_close) FUZZ_CHECK(rxc.peer_close_code() == *sent_close);

  // Back: the receiver's automatic pongs (at most max_queued_pongs, as nothing drained
  // its output, the last for the latest ping) and its close echo.
  std::vector<rec_event> back;
  auto rout = rxc.pending_output();
  const bytes answer(rout.begin(), rout.end());
  pump(tx, answer, seeded_split(answer.size(), answer.size()), cap, back);
  std::vector<rec_event> want_back;
  for (std::size_t i : answered_pings(pings.size(), rcfg.max_queued_pongs)) {
    rec_event e;
    e.type = event_type::pong;
    e.data = pings[i];
    want_back.push_back(e);
  }
  if (sent_close) {
    rec_event e;
    e.type = event_type::close;
    e.code = *sent_close;  // echoed without the reason; 1005 answered with an empty close
    want_back.push_back(e);
  }
  FUZZ_CHECK(back == want_back);
  rxc.consume_output(answer.size());
  if (sent_close) {
    FUZZ_CHECK(tx.closed_cleanly() && rxc.closed_cleanly());
    FUZZ_CHECK(rxc.should_close_transport() == (receiver_role == role::server));
  }
}

}  // namespace wsfuzz
