// libFuzzer target: raw bytes as the frame stream one connection receives.
// Compiled twice: -DWS6455_FUZZ_CLIENT for the client role (fuzz_frames_client), else
// the server role (fuzz_frames_server).
//
// The input is the wire stream as is (so seeds are real frames and the dictionary's
// headers apply directly). Each input runs under two configurations (the defaults, and
// tight limits: small frames, messages, fragment counts and pong queue, plus
// accept_unmasked_frames on the server), in both delivery modes, each fed whole, byte by
// byte with one event slot, and in a split derived from the input; every run is checked
// by fuzz_util.hpp's invariants and the runs must agree.
#include "fuzz_util.hpp"

using namespace wsfuzz;

#ifdef WS6455_FUZZ_CLIENT
static constexpr role k_role = role::client;
#else
static constexpr role k_role = role::server;
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  std::uint64_t seed = size;
  for (std::size_t i = 0; i < size; i += 7) seed = seed * 131 + data[i];
  const auto split = seeded_split(size, seed);

  for (int variant = 0; variant < 4; ++variant) {
    config cfg;
    if (variant & 1) {
      cfg.max_frame_size = 200;
      cfg.max_message_size = 300;
      cfg.max_fragments = 6;
      cfg.max_queued_pongs = 2;
      cfg.auto_pong = (seed & 1) != 0;
      if (k_role == role::server) cfg.accept_unmasked_frames = (seed & 2) != 0;
    }
    cfg.mode = (variant & 2) ? delivery::streaming : delivery::whole_messages;
    check_chunk_invariance(cfg, k_role, input, split, 1 + seed % 5, (seed & 4) != 0);
  }
  return 0;
}
