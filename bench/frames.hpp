// Shared by the benchmark translation units: the input buffers (back-to-back
// masked client frames), the payload generators, and the allocation counter.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bench {

// Every operator new in the benchmark binary goes through this counter (the
// replacement is in bench_main.cpp): receive cases report allocations per frame.
extern std::atomic<std::uint64_t> g_allocations;
inline std::uint64_t allocations() noexcept { return g_allocations.load(std::memory_order_relaxed); }

enum class payload_kind { binary, text_ascii, text_mixed };
const char* to_string(payload_kind k) noexcept;

// `size` bytes of payload: random bytes, printable ASCII, or valid UTF-8 mixing
// ASCII (~1/4), Greek (2 bytes), CJK (3 bytes) and emoji (4 bytes), ending on a
// code-point boundary (padded with ASCII to exactly `size`).
std::vector<std::byte> make_payload(payload_kind k, std::size_t size, std::uint64_t seed);

// A buffer of back-to-back masked client frames (FIN, text or binary), each of
// `payload` bytes with its own random key: max(1, 256 KiB / frame size) frames.
struct frame_buffer {
  std::vector<std::byte> pristine;  // as received: masked
  std::size_t frames = 0;
  std::size_t payload_bytes = 0;  // all frames
};
inline constexpr std::size_t kBufferTarget = 256 * 1024;
const frame_buffer& frames_for(payload_kind k, std::size_t payload);

// The payload sizes of the receive and send cases.
inline constexpr std::size_t kSizes[] = {16, 125, 1024, 16384, 1u << 20};

// A benchmark's name: "<group>/<case>/<size>".
std::string size_label(std::size_t size);

}  // namespace bench
