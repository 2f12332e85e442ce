// libFuzzer target, structure-aware: the input is a recipe for mostly-valid frames
// (opcodes, FIN, RSV, lengths in any form, masks, fragments, interleaved control frames,
// close codes and reasons, valid UTF-8 with the odd defect), so the fuzzer gets deep into
// the receive path rather than failing at the first header.
//
// Two modes, picked by the first byte:
//  - frames: the recipe's frames are encoded and fed to a connection (server or client)
//    whole, byte by byte, and in a fuzzer-chosen split; besides fuzz_util.hpp's
//    invariants, the events must equal those of an independent reference model of
//    RFC 6455 (the error each defect must produce, messages reassembled, close codes),
//    as long as the recipe contains no raw garbage;
//  - round trip: send_* calls on one connection, its output into a peer connection in
//    random splits, the messages must come back identical (fuzz_gen.hpp round_trip).
#include "fuzz_gen.hpp"

using namespace wsfuzz;

namespace {

enum class defect : std::uint8_t {
  none, reserved_opcode, rsv_bit, fragmented_control, long_control, stray_continuation, interleaved,
  wrong_mask, non_minimal, msb_length, huge_length, bad_utf8, close_one_byte, bad_close_code,
  bad_close_reason, garbage,
};

// The reference model: what a receiver in role `r` with `cfg` (no deflate) must report
// for these frames.
struct model {
  model(const config& c, role rr) : cfg(c), r(rr) {}
  const config& cfg;
  role r;
  std::vector<rec_event> events;
  bool ended = false;
  bool unknown = false;  // the model cannot say (raw garbage)
  bool in_msg = false, text = false;
  std::uint64_t msg_size = 0;
  std::uint32_t frags = 0;
  detail::utf8_state st = 0;
  bytes msg;

  void fail(protocol_error e) {
    rec_event ev;
    ev.type = event_type::fail;
    ev.code = close_code_for(e);
    ev.error = e;
    ev.reason = std::string(describe(e));
    events.push_back(ev);
    ended = true;
  }

  void frame(const frame_spec& f) {
    if (ended || unknown) return;
    const unsigned op = f.op;
    const bool control = op & 8;
    if (!(op <= 2 || (op >= 8 && op <= 10))) return fail(protocol_error::reserved_opcode);
    if (f.rsv) return fail(protocol_error::reserved_bits);  // no extension negotiated
    if (control) {
      if (!f.fin) return fail(protocol_error::control_fragmented);
      if (len7_of(f) > 125) return fail(protocol_error::control_too_long);
    } else if (op == 0) {
      if (!in_msg) return fail(protocol_error::unexpected_continuation);
    } else if (in_msg) {
      return fail(protocol_error::expected_continuation);
    }
    if (r == role::server && !f.masked && !cfg.accept_unmasked_frames) return fail(protocol_error::unmasked_frame);
    if (r == role::client && f.masked) return fail(protocol_error::masked_frame);
    const unsigned l7 = len7_of(f);
    if (l7 == 126 && f.declared < 126) return fail(protocol_error::non_minimal_length);
    if (l7 == 127 && (f.declared >> 63)) return fail(protocol_error::length_msb_set);
    if (l7 == 127 && f.declared <= 0xFFFF) return fail(protocol_error::non_minimal_length);
    if (!control) {
      if (f.declared > cfg.max_frame_size) return fail(protocol_error::frame_too_large);
      if (op != 0) {
        in_msg = true;
        text = op == 1;
        msg_size = 0;
        frags = 0;
        st = 0;
        msg.clear();
      }
      if (f.declared > cfg.max_message_size - msg_size) return fail(protocol_error::message_too_large);
      if (++frags > cfg.max_fragments) return fail(protocol_error::too_many_fragments);
      msg_size += f.declared;
    }
    if (f.header_only) {  // the stream ends inside this frame's payload
      unknown = true;
      return;
    }
    const bytes& p = f.payload;
    if (!control) {
      if (text && (!detail::utf8_validate_scalar(st, p.data(), p.size()) || (f.fin && st != 0)))
        return fail(protocol_error::invalid_utf8);
      msg.insert(msg.end(), p.begin(), p.end());
      if (f.fin) {
        rec_event ev;
        ev.type = text ? event_type::text : event_type::binary;
        ev.data = msg;
        events.push_back(ev);
        in_msg = false;
      }
      return;
    }
    if (op == 9 || op == 10) {
      rec_event ev;
      ev.type = op == 9 ? event_type::ping : event_type::pong;
      ev.data = p;
      events.push_back(ev);
      return;
    }
    // close
    if (p.size() == 1) return fail(protocol_error::bad_close_payload);
    rec_event ev;
    ev.type = event_type::close;
    ev.code = close_code::no_status;
    if (p.size() >= 2) {
      ev.code = be16(p.data());
      if (!is_valid_close_code(ev.code)) return fail(protocol_error::bad_close_code);
      const auto reason = std::span<const std::byte>(p).subspan(2);
      if (!utf8_ok(reason)) return fail(protocol_error::invalid_close_reason);
      ev.reason.assign(reinterpret_cast<const char*>(reason.data()), reason.size());
    }
    events.push_back(ev);
    ended = true;
  }
};

void frames_mode(FuzzedDataProvider& fdp) {
  config cfg;
  const role r = fdp.ConsumeBool() ? role::client : role::server;
  cfg.mode = fdp.ConsumeBool() ? delivery::streaming : delivery::whole_messages;
  if (fdp.ConsumeBool()) {  // tight limits
    cfg.max_frame_size = fdp.ConsumeIntegralInRange<std::size_t>(0, 70000);
    cfg.max_message_size = fdp.ConsumeIntegralInRange<std::size_t>(0, 140000);
    cfg.max_fragments = fdp.ConsumeIntegralInRange<std::uint32_t>(1, 12);
    cfg.max_queued_pongs = fdp.ConsumeIntegralInRange<std::uint32_t>(0, 3);
  }
  cfg.auto_pong = fdp.ConsumeIntegralInRange<int>(0, 7) != 0;
  if (r == role::server) cfg.accept_unmasked_frames = fdp.ConsumeIntegralInRange<int>(0, 7) == 0;
  const std::size_t cap = 1 + fdp.ConsumeIntegralInRange<std::size_t>(0, 5);
  const bool eof = fdp.ConsumeBool();

  model m(cfg, r);
  bytes wire;
  bool in_msg = false, text = false;
  bytes carry;  // the rest of a code point split across text frames
  auto key_for = [&](frame_spec& f) {
    f.masked = r == role::server;
    if (f.masked) {
      const auto k = fdp.ConsumeIntegral<std::uint32_t>();
      for (int i = 0; i < 4; ++i) f.key[i] = static_cast<std::byte>(k >> (8 * i));
    }
  };

  for (int n = 0; n < 48 && fdp.remaining_bytes() > 0; ++n) {
    frame_spec f;
    const int what = fdp.ConsumeIntegralInRange<int>(0, 15);
    const int d = fdp.ConsumeIntegralInRange<int>(0, 63);
    const defect def = d < 48 ? defect::none : static_cast<defect>(d - 48);
    key_for(f);
    if (what < 9) {  // a data frame: start or continue a message
      if (!in_msg) {
        text = fdp.ConsumeBool();
        f.op = text ? 1 : 2;
        carry.clear();
      } else {
        f.op = 0;
      }
      f.fin = fdp.ConsumeIntegralInRange<int>(0, 2) != 0;
      const int sz = fdp.ConsumeIntegralInRange<int>(0, 15);
      const std::size_t len = sz < 10 ? fdp.ConsumeIntegralInRange<std::size_t>(0, 30)
                              : sz < 13 ? fdp.ConsumeIntegralInRange<std::size_t>(100, 300)
                              : sz < 15 ? fdp.ConsumeIntegralInRange<std::size_t>(65530, 65540)
                                        : fdp.ConsumeIntegralInRange<std::size_t>(0, 20000);
      if (text) {
        f.payload = carry;
        const bytes more = to_bytes(make_utf8(fdp, len));
        f.payload.insert(f.payload.end(), more.begin(), more.end());
        carry.clear();
        // Sometimes split the last code point across this frame and the next one.
        if (!f.fin && fdp.ConsumeBool()) {
          std::size_t lead = f.payload.size();
          while (lead > 0 && (static_cast<unsigned>(f.payload[lead - 1]) & 0xC0) == 0x80) --lead;
          if (lead > 0 && static_cast<unsigned>(f.payload[lead - 1]) >= 0xC0) {
            const std::size_t cut = lead - 1 + fdp.ConsumeIntegralInRange<std::size_t>(1, f.payload.size() - lead);
            carry.assign(f.payload.begin() + cut, f.payload.end());
            f.payload.resize(cut);
          }
        }
      } else {
        f.payload = make_payload(fdp, len);
      }
    } else if (what < 13) {  // ping / pong
      f.op = what < 11 ? 9 : 10;
      f.payload = make_payload(fdp, fdp.ConsumeIntegralInRange<std::size_t>(0, fdp.ConsumeBool() ? 125 : 8));
    } else if (what < 15) {  // close
      f.op = 8;
      const int kind = fdp.ConsumeIntegralInRange<int>(0, 3);
      if (kind > 0) {
        const std::uint16_t code = kind == 1 ? fdp.ConsumeIntegral<std::uint16_t>() : fdp.PickValueInArray(k_close_codes);
        f.payload = {static_cast<std::byte>(code >> 8), static_cast<std::byte>(code)};
        const bytes reason = to_bytes(make_utf8(fdp, fdp.ConsumeIntegralInRange<std::size_t>(0, 123)));
        f.payload.insert(f.payload.end(), reason.begin(), reason.end());
      }
    } else {  // raw bytes
      const bytes raw = fdp.ConsumeBytes<std::byte>(fdp.ConsumeIntegralInRange<std::size_t>(1, 16));
      wire.insert(wire.end(), raw.begin(), raw.end());
      m.unknown = true;
      continue;
    }
    switch (def) {
      case defect::none: break;
      case defect::reserved_opcode: f.op = fdp.PickValueInArray({3, 4, 5, 6, 7, 11, 12, 13, 14, 15}); break;
      case defect::rsv_bit: f.rsv = fdp.PickValueInArray({0x10, 0x20, 0x40, 0x70}); break;
      case defect::fragmented_control: if (f.op >= 8) f.fin = false; break;
      case defect::long_control:
        if (f.op >= 8) f.payload = make_payload(fdp, fdp.ConsumeIntegralInRange<std::size_t>(126, 130));
        break;
      case defect::stray_continuation: f.op = 0; break;
      case defect::interleaved: if (f.op == 0) f.op = 1; break;
      case defect::wrong_mask: f.masked = !f.masked; break;
      case defect::non_minimal:
        f.form = f.payload.size() < 126 ? len_form::len16 : len_form::len64;
        break;
      case defect::msb_length:
        f.form = len_form::len64;
        f.header_only = true;
        break;
      case defect::huge_length:
        f.header_only = true;
        break;
      case defect::bad_utf8:
        if (!f.payload.empty() && (f.op == 1 || (f.op == 0 && text)))
          f.payload[fdp.ConsumeIntegralInRange<std::size_t>(0, f.payload.size() - 1)] =
              static_cast<std::byte>(fdp.PickValueInArray({0x80, 0xC0, 0xED, 0xF4, 0xF5, 0xFF}));
        break;
      case defect::close_one_byte: if (f.op == 8) f.payload.resize(1); break;
      case defect::bad_close_code:
        if (f.op == 8) {
          f.payload.resize(std::max<std::size_t>(f.payload.size(), 2));
          const std::uint16_t c = fdp.PickValueInArray({0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535});
          f.payload[0] = static_cast<std::byte>(c >> 8);
          f.payload[1] = static_cast<std::byte>(c);
        }
        break;
      case defect::bad_close_reason:
        if (f.op == 8 && f.payload.size() >= 2) f.payload.push_back(std::byte{0xC3});  // truncated sequence
        break;
      case defect::garbage: break;
    }
    f.declared = f.payload.size();
    if (def == defect::msb_length) f.declared |= std::uint64_t{1} << 63;
    if (def == defect::huge_length) f.declared = std::uint64_t{fdp.ConsumeIntegralInRange<std::uint32_t>(0, 1u << 30)} + cfg.max_frame_size + 1;
    // Does this frame continue or end the message, as the generator sees it?
    if (f.op == 1 || f.op == 2) in_msg = !f.fin;
    else if (f.op == 0 && in_msg) in_msg = !f.fin;
    m.frame(f);
    encode(f, wire);
    if (f.header_only) break;  // nothing can follow a payload we do not send
  }

  const auto split = fuzzer_split(fdp, wire.size());
  const run_result res = check_chunk_invariance(cfg, r, wire, split, cap, eof);
  if (!m.unknown) {
    auto got = cfg.mode == delivery::streaming ? coalesce(res.events) : res.events;
    if (eof && !m.ended) {
      rec_event e;
      e.type = event_type::close;
      e.code = close_code::abnormal;
      if (!got.empty()) e.reason = got.back().reason;  // the 1006 text is the engine's own
      m.events.push_back(e);
    }
    if (got != m.events) {
      std::fprintf(stderr, "model: %zu events, engine: %zu events\n", m.events.size(), got.size());
      for (std::size_t i = 0; i < std::max(got.size(), m.events.size()); ++i) {
        auto show = [](const std::vector<rec_event>& v, std::size_t i) {
          if (i >= v.size()) return std::string("-");
          const auto& e = v[i];
          return "type=" + std::to_string(int(e.type)) + " fin=" + std::to_string(e.fin) + " code=" +
                 std::to_string(e.code) + " err=" + std::to_string(int(e.error)) + " size=" + std::to_string(e.data.size());
        };
        std::fprintf(stderr, "  %zu: model %s | engine %s\n", i, show(m.events, i).c_str(), show(got, i).c_str());
      }
      FUZZ_CHECK(!"engine events differ from the reference model");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  FuzzedDataProvider fdp(data + 1, size - 1);
  if (data[0] & 1) round_trip(fdp, std::nullopt);
  else frames_mode(fdp);
  return 0;
}
