#include "frames.hpp"

#include <array>
#include <map>
#include <optional>
#include <random>
#include <utility>

#include "mask.hpp"
#include "ws6455/frame_header.hpp"

namespace bench {

const char* to_string(payload_kind k) noexcept {
  switch (k) {
    case payload_kind::binary: return "binary";
    case payload_kind::text_ascii: return "text_ascii";
    case payload_kind::text_mixed: return "text_mixed";
  }
  return "?";
}

namespace {
void put_utf8(std::vector<std::byte>& out, std::uint32_t cp) {
  auto put = [&](unsigned v) { out.push_back(static_cast<std::byte>(v)); };
  if (cp < 0x80) {
    put(cp);
  } else if (cp < 0x800) {
    put(0xC0 | (cp >> 6)); put(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    put(0xE0 | (cp >> 12)); put(0x80 | ((cp >> 6) & 0x3F)); put(0x80 | (cp & 0x3F));
  } else {
    put(0xF0 | (cp >> 18)); put(0x80 | ((cp >> 12) & 0x3F)); put(0x80 | ((cp >> 6) & 0x3F)); put(0x80 | (cp & 0x3F));
  }
}
}  // namespace

std::vector<std::byte> make_payload(payload_kind k, std::size_t size, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v;
  v.reserve(size + 4);
  switch (k) {
    case payload_kind::binary:
      while (v.size() < size) v.push_back(static_cast<std::byte>(rng()));
      break;
    case payload_kind::text_ascii:
      while (v.size() < size) v.push_back(static_cast<std::byte>(0x20 + rng() % 95));
      break;
    case payload_kind::text_mixed:
      while (true) {
        std::uint32_t cp;
        switch (rng() % 4) {
          case 0: cp = 0x20 + rng() % 95; break;                                // ASCII
          case 1: cp = 0x3B1 + rng() % 25; break;                               // Greek
          case 2: cp = 0x4E00 + rng() % (0x9FFF - 0x4E00); break;               // CJK
          default: cp = 0x1F300 + rng() % (0x1FAFF - 0x1F300); break;           // emoji
        }
        const std::size_t before = v.size();
        put_utf8(v, cp);
        if (v.size() > size) {
          v.resize(before);
          break;
        }
      }
      while (v.size() < size) v.push_back(std::byte{' '});
      break;
  }
  return v;
}

const frame_buffer& frames_for(payload_kind k, std::size_t payload) {
  static std::map<std::pair<int, std::size_t>, frame_buffer> cache;
  auto [it, fresh] = cache.try_emplace({static_cast<int>(k), payload});
  frame_buffer& fb = it->second;
  if (!fresh) return fb;
  const auto body = make_payload(k, payload, 6455 + payload);
  const std::size_t header = ws6455::encode_frame_header(ws6455::opcode::binary, true, false, payload,
                                                         std::array<std::byte, 4>{})
                                 .size;
  fb.frames = std::max<std::size_t>(1, kBufferTarget / (header + payload));
  fb.pristine.reserve(fb.frames * (header + payload));
  std::mt19937 rng(17);
  const auto op = k == payload_kind::binary ? ws6455::opcode::binary : ws6455::opcode::text;
  for (std::size_t f = 0; f < fb.frames; ++f) {
    std::array<std::byte, 4> key;
    for (auto& b : key) b = static_cast<std::byte>(rng());
    const auto h = ws6455::encode_frame_header(op, true, false, payload, key);
    fb.pristine.insert(fb.pristine.end(), h.bytes.begin(), h.bytes.begin() + static_cast<std::ptrdiff_t>(h.size));
    const std::size_t at = fb.pristine.size();
    fb.pristine.insert(fb.pristine.end(), body.begin(), body.end());
    ws6455::detail::mask_in_place_scalar(fb.pristine.data() + at, payload, key.data(), 0);
  }
  fb.payload_bytes = fb.frames * payload;
  return fb;
}

std::string size_label(std::size_t size) {
  if (size >= (1u << 20) && size % (1u << 20) == 0) return std::to_string(size >> 20) + "M";
  if (size >= 1024 && size % 1024 == 0) return std::to_string(size >> 10) + "K";
  return std::to_string(size);
}

}  // namespace bench
