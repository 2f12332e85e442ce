// libFuzzer target: a whole connection (either role, any configuration the fuzzer picks,
// permessage-deflate included) fed random bytes in a fuzzer-chosen split with a
// fuzzer-chosen event-buffer size.
//
// Layout: the configuration and the split are taken from the END of the input (so
// mutations of the stream at the front keep them), the rest is the stream.
// Invariants (fuzz_util.hpp): the chosen split, byte-by-byte and whole feeding agree;
// spans lie in the bytes consumed by the call that reported them or outside the
// caller's buffer; a closed or failed connection reports nothing more; the output is
// well-formed and its pongs/close match the events.
#include "fuzz_util.hpp"

using namespace wsfuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  FuzzedDataProvider fdp(data, size);
  const std::uint32_t bits = fdp.ConsumeIntegral<std::uint32_t>();
  config cfg;
  const role r = (bits & 1) ? role::client : role::server;
  cfg.mode = (bits & 2) ? delivery::streaming : delivery::whole_messages;
  cfg.auto_pong = !(bits & 4);
  cfg.accept_unmasked_frames = (bits & 8) != 0;
  static constexpr std::size_t frame_limits[] = {0, 1, 125, 126, 200, 65535, 65536, 16u << 20};
  static constexpr std::size_t msg_limits[] = {0, 1, 10, 300, 1000, 65536, 1u << 20, 64u << 20};
  cfg.max_frame_size = frame_limits[(bits >> 4) & 7];
  cfg.max_message_size = msg_limits[(bits >> 7) & 7];
  cfg.max_fragments = (bits & (1u << 10)) ? 1 + ((bits >> 11) & 7) : 131072;
  cfg.max_queued_pongs = (bits >> 14) & 3;
  if (bits & (1u << 16)) {
    deflate_params p;
    p.server_no_context_takeover = (bits >> 17) & 1;
    p.client_no_context_takeover = (bits >> 18) & 1;
    p.server_max_window_bits = static_cast<std::uint8_t>(8 + ((bits >> 19) & 7));
    p.client_max_window_bits = static_cast<std::uint8_t>(8 + ((bits >> 22) & 7));
    p.mem_level = static_cast<std::uint8_t>(1 + ((bits >> 25) % 9));
    cfg.deflate = p;
  }
  const bool eof = (bits >> 29) & 1;
  const std::size_t cap = 1 + fdp.ConsumeIntegralInRange<std::size_t>(0, 7);
  // The split: cut points from the end; the stream is what is left at the front.
  const std::size_t stream_size = fdp.remaining_bytes() > 130 ? fdp.remaining_bytes() - 130 : fdp.remaining_bytes() / 2;
  const bytes stream = fdp.ConsumeBytes<std::byte>(stream_size);
  const auto split = fuzzer_split(fdp, stream.size());
  check_chunk_invariance(cfg, r, stream, split, cap, eof);
  return 0;
}
