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
#include "cpu_features.hpp"
#include "fuzz_util.hpp"
#include "mask.hpp"

using namespace wsfuzz;

#ifdef WS6455_FUZZ_CLIENT
static constexpr role k_role = role::client;
#else
static constexpr role k_role = role::server;
#endif

namespace {

// Differential check of the masking and UTF-8 kernels the engine picks by CPU features
// (only one of them runs inside the connection): every variant this CPU supports must
// match the scalar reference on these bytes, from every phase, in two pieces.
void check_kernels(std::span<const std::byte> in, std::uint64_t seed) {
  using namespace ws6455::detail;
  const std::byte key[4] = {std::byte(seed), std::byte(seed >> 8), std::byte(seed >> 16), std::byte(seed >> 24)};
  const std::size_t cut = in.empty() ? 0 : (seed >> 32) % (in.size() + 1);
  const std::size_t phase = (seed >> 8) & 3;
  bytes ref(in.begin(), in.end());
  const std::size_t ref_phase = mask_in_place_scalar(ref.data(), ref.size(), key, phase);
  using mask_fn = std::size_t (*)(std::byte*, std::size_t, const std::byte*, std::size_t) noexcept;
  const std::pair<simd_level, mask_fn> masks[] = {{simd_level::portable, mask_in_place_portable},
                                                  {simd_level::sse2, mask_in_place_sse2},
                                                  {simd_level::avx2, mask_in_place_avx2},
                                                  {simd_level::avx512, mask_in_place_avx512}};
  for (const auto& [level, fn] : masks) {
    if (!simd_level_supported(level)) continue;
    // An exact-size heap block: a kernel touching a byte outside [data, data + n) trips ASan.
    std::unique_ptr<std::byte[]> buf(new std::byte[in.size() + 1]);
    if (!in.empty()) std::memcpy(buf.get(), in.data(), in.size());
    std::size_t ph = fn(buf.get(), cut, key, phase);
    ph = fn(buf.get() + cut, in.size() - cut, key, ph);
    FUZZ_CHECK(ph == ref_phase);
    FUZZ_CHECK(in.empty() || std::memcmp(buf.get(), ref.data(), in.size()) == 0);
  }
  if (phase == 0) {  // mask_copy starts at phase 0
    const std::pair<simd_level, void (*)(std::byte*, const std::byte*, std::size_t, const std::byte*) noexcept>
        copies[] = {{simd_level::portable, mask_copy_portable}, {simd_level::sse2, mask_copy_sse2},
                    {simd_level::avx2, mask_copy_avx2}, {simd_level::avx512, mask_copy_avx512}};
    for (const auto& [level, fn] : copies) {
      if (!simd_level_supported(level)) continue;
      std::unique_ptr<std::byte[]> dst(new std::byte[in.size() + 1]);
      fn(dst.get(), in.data(), in.size(), key);
      FUZZ_CHECK(in.empty() || std::memcmp(dst.get(), ref.data(), in.size()) == 0);
    }
  }
  // UTF-8: verdict and end state of each variant equal the scalar DFA's, whole and in
  // two pieces.
  utf8_state ref_st = 0;
  bool ref_ok = utf8_validate_scalar(ref_st, in.data(), in.size());
  using utf8_fn = bool (*)(utf8_state&, const std::byte*, std::size_t) noexcept;
  const std::pair<simd_level, utf8_fn> utf8s[] = {{simd_level::portable, utf8_validate_portable},
                                                  {simd_level::ssse3, utf8_validate_ssse3},
                                                  {simd_level::avx2, utf8_validate_avx2},
                                                  {simd_level::avx512, utf8_validate_avx512}};
  for (const auto& [level, fn] : utf8s) {
    if (!simd_level_supported(level)) continue;
    utf8_state st = 0;
    const bool ok = fn(st, in.data(), in.size());
    FUZZ_CHECK(ok == ref_ok);
    if (ok) FUZZ_CHECK(st == ref_st);
    utf8_state st2 = 0;
    utf8_state ref2 = 0;
    const bool ref_first = utf8_validate_scalar(ref2, in.data(), cut);
    const bool first = fn(st2, in.data(), cut);
    FUZZ_CHECK(first == ref_first);
    if (first) {
      FUZZ_CHECK(st2 == ref2);
      const bool second = fn(st2, in.data() + cut, in.size() - cut);
      FUZZ_CHECK(second == ref_ok);
      if (second) FUZZ_CHECK(st2 == ref_st);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  std::uint64_t seed = size;
  for (std::size_t i = 0; i < size; i += 7) seed = seed * 131 + data[i];
  const auto split = seeded_split(size, seed);
  check_kernels(input, seed * 0x9E3779B97F4A7C15ull);

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
