// SIMD masking and UTF-8 validation against the scalar references: every
// implementation (portable, SSE2/SSSE3, AVX2 and AVX-512 where the CPU has them,
// and the dispatcher), every length 0..300, every alignment, every key phase,
// random splits, the UTF-8 boundary cases placed across 16/32/64/128-byte block
// edges, an invalid byte at every position (fail fast), and spans that end at or
// start on an inaccessible page (no kernel reads or writes outside the caller's span).
#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sys/mman.h>
#include <unistd.h>
#include <string>
#include <vector>

#include "cpu_features.hpp"
#include "mask.hpp"
#include "utf8.hpp"

using namespace ws6455::detail;

namespace {

constexpr std::size_t kMaxLen = 300;
constexpr std::size_t kAlignments = 64;  // covers every offset mod 16 and 32 (and cache lines)
constexpr std::size_t kGuard = 32;

// -------------------------------------------------------------------------- masking

struct mask_impl {
  const char* name;
  simd_level level;
  std::size_t (*in_place)(std::byte*, std::size_t, const std::byte*, std::size_t) noexcept;
  void (*copy)(std::byte*, const std::byte*, std::size_t, const std::byte*) noexcept;
};

const mask_impl kMaskImpls[] = {
    {"portable", simd_level::portable, &mask_in_place_portable, &mask_copy_portable},
    {"sse2", simd_level::sse2, &mask_in_place_sse2, &mask_copy_sse2},
    {"avx2", simd_level::avx2, &mask_in_place_avx2, &mask_copy_avx2},
    {"avx512", simd_level::avx512, &mask_in_place_avx512, &mask_copy_avx512},
    {"dispatch", simd_level::portable, &mask_in_place, &mask_copy},
};

std::vector<std::byte> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

// Returns "" or a description of the first mismatch.
std::string check_mask_in_place(const mask_impl& impl, std::mt19937_64& rng) {
  const auto pristine = random_bytes(rng, kMaxLen + kAlignments + 2 * kGuard);
  const std::array<std::byte, 4> key{std::byte{0x12}, std::byte{0xA5}, std::byte{0x3C}, std::byte{0xF0}};
  std::vector<std::byte> got(pristine.size()), want(pristine.size());
  for (std::size_t len = 0; len <= kMaxLen; ++len)
    for (std::size_t align = 0; align < kAlignments; ++align)
      for (std::size_t phase = 0; phase < 4; ++phase) {
        // `align` is relative to a 64-byte boundary of the vector's storage.
        const std::size_t base = kGuard + ((align - reinterpret_cast<std::uintptr_t>(got.data() + kGuard)) & 63);
        got = pristine;
        want = pristine;
        const std::size_t p1 = impl.in_place(got.data() + base, len, key.data(), phase);
        const std::size_t p2 = mask_in_place_scalar(want.data() + base, len, key.data(), phase);
        if (p1 != p2 || got != want)
          return std::string(impl.name) + " in_place len=" + std::to_string(len) + " align=" + std::to_string(align) +
                 " phase=" + std::to_string(phase);
      }
  return {};
}

std::string check_mask_copy(const mask_impl& impl, std::mt19937_64& rng) {
  const auto src_buf = random_bytes(rng, kMaxLen + kAlignments + 2 * kGuard);
  const std::array<std::byte, 4> key{std::byte{0x9E}, std::byte{0x01}, std::byte{0x77}, std::byte{0xC3}};
  const std::vector<std::byte> pristine_dst = random_bytes(rng, kMaxLen + kAlignments + 2 * kGuard);
  std::vector<std::byte> got(pristine_dst.size()), want(pristine_dst.size());
  for (std::size_t len = 0; len <= kMaxLen; ++len)
    for (std::size_t dst_align = 0; dst_align < kAlignments; ++dst_align)
      for (std::size_t src_align : {0u, 1u, 3u, 5u, 8u, 15u, 16u, 31u}) {
        got = pristine_dst;
        want = pristine_dst;
        const std::size_t dbase =
            kGuard + ((dst_align - reinterpret_cast<std::uintptr_t>(got.data() + kGuard)) & 63);
        const std::byte* src = src_buf.data() + kGuard + src_align;
        impl.copy(got.data() + dbase, src, len, key.data());
        for (std::size_t i = 0; i < len; ++i) want[dbase + i] = src[i] ^ key[i & 3];
        if (got != want)
          return std::string(impl.name) + " copy len=" + std::to_string(len) + " dst_align=" +
                 std::to_string(dst_align) + " src_align=" + std::to_string(src_align);
      }
  return {};
}

// A frame's payload unmasked in pieces of random lengths equals the one-shot result.
std::string check_mask_chunks(const mask_impl& impl, std::mt19937_64& rng) {
  const std::array<std::byte, 4> key{std::byte{0xDE}, std::byte{0xAD}, std::byte{0xBE}, std::byte{0xEF}};
  for (int round = 0; round < 2000; ++round) {
    const std::size_t len = rng() % 2000;
    auto data = random_bytes(rng, len);
    auto want = data;
    mask_in_place_scalar(want.data(), len, key.data(), 0);
    std::size_t pos = 0, phase = 0;
    while (pos < len) {
      const std::size_t piece = std::min<std::size_t>(len - pos, rng() % 3 == 0 ? rng() % 8 : rng() % 200);
      phase = impl.in_place(data.data() + pos, piece, key.data(), phase);
      pos += piece;
    }
    if (phase != (len & 3) || data != want) return std::string(impl.name) + " chunks len=" + std::to_string(len);
  }
  return {};
}

// -------------------------------------------------------------------------- UTF-8

struct utf8_impl {
  const char* name;
  simd_level level;
  bool (*validate)(utf8_state&, const std::byte*, std::size_t) noexcept;
};

const utf8_impl kUtf8Impls[] = {
    {"portable", simd_level::portable, &utf8_validate_portable},
    {"ssse3", simd_level::ssse3, &utf8_validate_ssse3},
    {"avx2", simd_level::avx2, &utf8_validate_avx2},
    {"avx512", simd_level::avx512, &utf8_validate_avx512},
    {"dispatch", simd_level::portable, &utf8_validate},
};

void append_code_point(std::vector<std::byte>& out, std::uint32_t cp) {
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

std::uint32_t random_code_point(std::mt19937_64& rng, int mix) {
  // mix 0: mostly ASCII; 1: even classes; 2: heavy 3-/4-byte; edges often.
  const unsigned r = rng() % 100;
  const unsigned ascii = mix == 0 ? 85 : mix == 1 ? 25 : 5;
  if (r < ascii) return rng() % 0x80;
  const unsigned cls = rng() % (mix == 2 ? 5 : 4);
  if (rng() % 8 == 0) {  // range edges
    static constexpr std::uint32_t edges[] = {0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF,
                                              0x10000, 0x10FFFF, 0xFEFF, 0x7F, 0x0};
    return edges[rng() % std::size(edges)];
  }
  switch (cls) {
    case 0: return 0x80 + rng() % (0x800 - 0x80);
    case 1: {
      std::uint32_t cp = 0x800 + rng() % (0x10000 - 0x800);
      if (cp >= 0xD800 && cp < 0xE000) cp -= 0x800;
      return cp;
    }
    default: return 0x10000 + rng() % (0x110000 - 0x10000);
  }
}

// Mostly valid text of exactly `len` bytes (the cut may leave an open code point),
// sometimes with one byte replaced by an interesting or random value.
std::vector<std::byte> random_text(std::mt19937_64& rng, std::size_t len) {
  std::vector<std::byte> v;
  const int mix = static_cast<int>(rng() % 3);
  while (v.size() < len) append_code_point(v, random_code_point(rng, mix));
  v.resize(len);
  if (len > 0 && rng() % 2 == 0) {
    static constexpr unsigned bad[] = {0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
                                       0xF0, 0xF4, 0xF5, 0xF7, 0xF8, 0xFE, 0xFF, 0x00, 0x7F, 0x90, 0xA0};
    const std::size_t at = rng() % 4 == 0 ? len - 1 - rng() % std::min<std::size_t>(len, 4) : rng() % len;
    v[at] = static_cast<std::byte>(rng() % 3 == 0 ? static_cast<unsigned>(rng() & 0xFF) : bad[rng() % std::size(bad)]);
  }
  return v;
}

// Runs `impl` and the scalar reference over the same pieces; "" when every call agrees
// (verdict, and the end state after each accepted piece).
std::string compare_pieces(const utf8_impl& impl, const std::byte* p, std::size_t n,
                           const std::vector<std::size_t>& cuts) {
  utf8_state s_impl = 0, s_ref = 0;
  std::size_t pos = 0;
  for (std::size_t k = 0; k <= cuts.size(); ++k) {
    const std::size_t end = k < cuts.size() ? cuts[k] : n;
    const bool ok_ref = utf8_validate_scalar(s_ref, p + pos, end - pos);
    const bool ok_impl = impl.validate(s_impl, p + pos, end - pos);
    if (ok_ref != ok_impl || (ok_ref && s_ref != s_impl)) {
      std::string hex;
      for (std::size_t i = 0; i < n; ++i) {
        static constexpr char digits[] = "0123456789abcdef";
        const unsigned b = static_cast<unsigned>(p[i]);
        hex += digits[b >> 4];
        hex += digits[b & 15];
        hex += (i + 1 == pos || i + 1 == end) ? '|' : ' ';
      }
      return std::string(impl.name) + " piece [" + std::to_string(pos) + "," + std::to_string(end) + ") of " +
             std::to_string(n) + ": ref " + (ok_ref ? "ok" : "bad") + " state " + std::to_string(s_ref) + ", got " +
             (ok_impl ? "ok" : "bad") + " state " + std::to_string(s_impl) + "\n" + hex;
    }
    if (!ok_ref) return {};
    pos = end;
  }
  return {};
}

}  // namespace

TEST_CASE("simd: detected level and dispatch") {
  const simd_level l = detected_simd_level();
  MESSAGE("detected SIMD level: " << std::string(to_string(l)));
#if defined(__x86_64__)
  if (std::getenv("WS6455_SIMD") == nullptr) CHECK(l >= simd_level::sse2);  // unless capped
#else
  CHECK(l == simd_level::portable);
#endif
}

TEST_CASE("mask: every implementation = scalar, every length 0-300, alignment, phase") {
  std::mt19937_64 rng(0x6455);
  for (const auto& impl : kMaskImpls) {
    if (!simd_level_supported(impl.level)) {
      MESSAGE("skipped " << impl.name << ": CPU lacks it");
      continue;
    }
    CAPTURE(impl.name);
    CHECK(check_mask_in_place(impl, rng) == "");
    CHECK(check_mask_copy(impl, rng) == "");
    CHECK(check_mask_chunks(impl, rng) == "");
  }
}

TEST_CASE("mask: the phase carries across calls of lengths not a multiple of 4") {
  const std::array<std::byte, 4> key{std::byte{1}, std::byte{2}, std::byte{4}, std::byte{8}};
  for (const auto& impl : kMaskImpls) {
    if (!simd_level_supported(impl.level)) continue;
    CAPTURE(impl.name);
    std::vector<std::byte> data(1000, std::byte{0});
    std::size_t phase = 0, pos = 0;
    for (std::size_t piece : {1u, 3u, 2u, 17u, 33u, 64u, 5u, 100u, 7u, 200u, 1u, 0u, 31u, 15u}) {
      phase = impl.in_place(data.data() + pos, piece, key.data(), phase);
      pos += piece;
    }
    CHECK(phase == (pos & 3));
    bool all = true;
    for (std::size_t i = 0; i < pos; ++i) all = all && data[i] == key[i & 3];
    for (std::size_t i = pos; i < data.size(); ++i) all = all && data[i] == std::byte{0};
    CHECK(all);
  }
}

TEST_CASE("utf8: every implementation = scalar on random text, every length 0-300 and alignment") {
  std::mt19937_64 rng(6455);
  std::vector<std::byte> buf(kMaxLen + kAlignments + 64);
  for (const auto& impl : kUtf8Impls) {
    if (!simd_level_supported(impl.level)) {
      MESSAGE("skipped " << impl.name << ": CPU lacks it");
      continue;
    }
    CAPTURE(impl.name);
    std::string failure;
    for (std::size_t len = 0; len <= kMaxLen && failure.empty(); ++len)
      for (std::size_t align = 0; align < kAlignments && failure.empty(); ++align) {
        const auto text = random_text(rng, len);
        std::byte* p = buf.data() + ((align - reinterpret_cast<std::uintptr_t>(buf.data())) & 63);
        if (len) std::memcpy(p, text.data(), len);
        failure = compare_pieces(impl, p, len, {});  // one call
        if (failure.empty() && len > 1) {            // two and three pieces
          const std::size_t a = rng() % (len + 1), b = rng() % (len + 1);
          failure = compare_pieces(impl, p, len, {std::min(a, b)});
          if (failure.empty()) failure = compare_pieces(impl, p, len, {std::min(a, b), std::max(a, b)});
        }
      }
    CHECK(failure == "");
  }
}

TEST_CASE("utf8: random bytes and random-split long texts") {
  std::mt19937_64 rng(42);
  for (const auto& impl : kUtf8Impls) {
    if (!simd_level_supported(impl.level)) continue;
    CAPTURE(impl.name);
    std::string failure;
    for (int round = 0; round < 3000 && failure.empty(); ++round) {
      std::vector<std::byte> v;
      if (round % 3 == 0) {
        v = random_bytes(rng, rng() % 200);
      } else {
        v = random_text(rng, rng() % 5000);
      }
      std::vector<std::size_t> cuts;
      std::size_t at = 0;
      while (!v.empty() && rng() % 4 != 0) {
        at = std::min(v.size(), at + rng() % 300);
        cuts.push_back(at);
      }
      failure = compare_pieces(impl, v.data(), v.size(), cuts);
      if (failure.empty() && !v.empty()) {  // byte at a time
        std::vector<std::size_t> every(v.size() > 400 ? 400 : v.size());
        for (std::size_t i = 0; i < every.size(); ++i) every[i] = i + 1;
        failure = compare_pieces(impl, v.data(), every.size(), every);
      }
    }
    CHECK(failure == "");
  }
}

TEST_CASE("utf8: every lead/second/third byte triple across block edges") {
  // In an ASCII (or multi-byte) background, write b0 b1 b2 at offsets around the
  // 16/32/64-byte block edges and the tail, then compare in one call and split at
  // every point near the triple.
  for (const auto& impl : kUtf8Impls) {
    if (!simd_level_supported(impl.level)) continue;
    CAPTURE(impl.name);
    std::string failure;
    static constexpr unsigned thirds[] = {0x41, 0x80, 0xBF, 0xC2};
    // 16/32-byte blocks, 64-byte blocks (AVX-512) and its 128-byte iterations.
    static constexpr std::size_t offsets[] = {0, 14, 15, 30, 31, 32, 62, 63, 64, 95, 126, 127, 128, 190, 191};
    std::vector<unsigned> leads = {0x7F, 0x80, 0xBF};
    for (unsigned b = 0xC0; b <= 0xFF; ++b) leads.push_back(b);
    std::vector<std::byte> v(200);
    for (unsigned b0 : leads) {
      for (unsigned b1 = 0; b1 <= 0xFF; ++b1) {
        for (unsigned b2 : thirds) {
          for (std::size_t off : offsets) {
            for (std::size_t len : {off + 2, off + 3, std::size_t{200}}) {
              if (len > v.size()) continue;
              std::fill(v.begin(), v.end(), std::byte{'a'});
              v[off] = std::byte(b0);
              if (off + 1 < v.size()) v[off + 1] = std::byte(b1);
              if (off + 2 < v.size()) v[off + 2] = std::byte(b2);
              failure = compare_pieces(impl, v.data(), len, {});
              if (failure.empty()) failure = compare_pieces(impl, v.data(), len, {off + 1});
              if (!failure.empty()) break;
            }
            if (!failure.empty()) break;
          }
          if (!failure.empty() || b0 < 0xE0) break;  // the third byte matters only after E0..FF
        }
        if (!failure.empty()) break;
      }
      if (!failure.empty()) break;
    }
    CHECK(failure == "");
  }
}

TEST_CASE("utf8: fail-fast inside a code point, across calls (Autobahn 6.4.x)") {
  for (const auto& impl : kUtf8Impls) {
    if (!simd_level_supported(impl.level)) continue;
    CAPTURE(impl.name);
    // F4 90 80 80 (> U+10FFFF) is invalid at 0x90.
    std::vector<std::byte> text;
    for (char c : std::string(40, 'k')) text.push_back(std::byte(c));
    text.push_back(std::byte{0xF4});
    utf8_state s = 0;
    CHECK(impl.validate(s, text.data(), text.size()));
    CHECK(s != 0);
    const std::byte b90{0x90};
    CHECK_FALSE(impl.validate(s, &b90, 1));

    // ED A0 (a surrogate) fails at A0, even after 100 valid bytes in the same call.
    std::vector<std::byte> sur(100, std::byte{'x'});
    sur.push_back(std::byte{0xED});
    sur.push_back(std::byte{0xA0});
    s = 0;
    CHECK_FALSE(impl.validate(s, sur.data(), sur.size()));

    // A 4-byte code point split one byte per call keeps the state; the message completes.
    const std::byte smile[] = {std::byte{0xF0}, std::byte{0x9F}, std::byte{0x98}, std::byte{0x80}};
    s = 0;
    for (int i = 0; i < 3; ++i) {
      CHECK(impl.validate(s, smile + i, 1));
      CHECK_FALSE(utf8_complete(s));
    }
    CHECK(impl.validate(s, smile + 3, 1));
    CHECK(utf8_complete(s));

    // An open code point then a long chunk: the pending bytes finish first.
    std::vector<std::byte> rest = {std::byte{0x82}, std::byte{0xAC}};  // the rest of E2 82 AC (€)
    for (int i = 0; i < 100; ++i) append_code_point(rest, i % 2 ? 0x3B1 : 0x4E2D);  // α, 中
    const std::byte e2{0xE2};
    s = 0;
    CHECK(impl.validate(s, &e2, 1));
    CHECK(impl.validate(s, rest.data(), rest.size()));
    CHECK(utf8_complete(s));

    // Invalid late in a long buffer.
    std::vector<std::byte> late(4096, std::byte{'z'});
    late[4090] = std::byte{0xC0};
    s = 0;
    CHECK_FALSE(impl.validate(s, late.data(), late.size()));
  }
}

TEST_CASE("utf8: an invalid byte at every position fails the call that holds it (fail fast)") {
  // A valid mixed-script text; one byte at `at` replaced by a byte that is wrong
  // there (a stray continuation after ASCII or a complete code point, F8, or C0).
  // Pieces split after `at` never reach the kernel for later pieces: the call
  // holding `at` must already fail, as the scalar DFA does.
  std::mt19937_64 rng(0xFA11);
  std::vector<std::byte> text;
  while (text.size() < 600) append_code_point(text, random_code_point(rng, 1));
  text.resize(600);
  for (const auto& impl : kUtf8Impls) {
    if (!simd_level_supported(impl.level)) continue;
    CAPTURE(impl.name);
    std::string failure;
    for (std::size_t at = 0; at < 400 && failure.empty(); ++at) {
      for (unsigned bad : {0xF8u, 0xC0u, 0xFFu}) {
        auto v = text;
        v[at] = std::byte(bad);
        failure = compare_pieces(impl, v.data(), v.size(), {});
        if (failure.empty()) failure = compare_pieces(impl, v.data(), v.size(), {at + 1});
        if (failure.empty()) failure = compare_pieces(impl, v.data(), v.size(), {at + 1, std::min<std::size_t>(at + 70, 600)});
        if (failure.empty() && at >= 3) failure = compare_pieces(impl, v.data(), v.size(), {at - 3, at + 1});
        if (!failure.empty()) break;
      }
    }
    CHECK(failure == "");
  }
}

namespace {
// Two pages: an accessible one followed by an inaccessible one, or the reverse.
// A span that ends at the first page's end (or starts at the second's start) makes
// any read or write past it fault, so kernels must stop at the span's edges.
struct guarded_pages {
  std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::byte* base = nullptr;
  guarded_pages() {
    void* p = mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    base = static_cast<std::byte*>(p);
    REQUIRE(mprotect(base, page, PROT_NONE) == 0);             // [0, page) guard
    REQUIRE(mprotect(base + 2 * page, page, PROT_NONE) == 0);  // [2 page, 3 page) guard
  }
  ~guarded_pages() { munmap(base, 3 * page); }
  std::byte* first() const { return base + page; }       // first accessible byte
  std::byte* end() const { return base + 2 * page; }     // one past the last accessible byte
};
}  // namespace

TEST_CASE("mask and utf8: spans against inaccessible pages (no reads or writes outside)") {
  guarded_pages g;
  std::mt19937_64 rng(0x9A9E);
  const std::array<std::byte, 4> key{std::byte{0x5A}, std::byte{0xC3}, std::byte{0x0F}, std::byte{0x81}};
  const auto noise = random_bytes(rng, kMaxLen);
  std::vector<std::byte> want(kMaxLen);
  for (const auto& impl : kMaskImpls) {
    if (!simd_level_supported(impl.level)) continue;
    CAPTURE(impl.name);
    bool ok = true;
    for (std::size_t len = 0; len <= kMaxLen && ok; ++len)
      for (std::size_t phase = 0; phase < 4 && ok; ++phase)
        for (std::byte* p : {g.end() - len, g.first()}) {  // ends at the guard, starts after one
          std::memcpy(p, noise.data(), len);
          std::memcpy(want.data(), noise.data(), len);
          mask_in_place_scalar(want.data(), len, key.data(), phase);
          impl.in_place(p, len, key.data(), phase);
          ok = ok && std::memcmp(p, want.data(), len) == 0;
          // copy: source at one guard, destination at the other
          std::byte* src = p == g.first() ? g.end() - len : g.first();
          std::memcpy(src, noise.data(), len);
          impl.copy(p, src, len, key.data());
          std::memcpy(want.data(), noise.data(), len);
          mask_in_place_scalar(want.data(), len, key.data(), 0);
          ok = ok && std::memcmp(p, want.data(), len) == 0;
        }
    CHECK(ok);
  }
  for (const auto& impl : kUtf8Impls) {
    if (!simd_level_supported(impl.level)) continue;
    CAPTURE(impl.name);
    std::string failure;
    for (std::size_t len = 0; len <= kMaxLen && failure.empty(); ++len) {
      const auto text = random_text(rng, len);
      for (std::byte* p : {g.end() - len, g.first()}) {
        if (len) std::memcpy(p, text.data(), len);
        failure = compare_pieces(impl, p, len, {});
        if (failure.empty() && len > 1) failure = compare_pieces(impl, p, len, {rng() % len});
        if (!failure.empty()) break;
      }
    }
    CHECK(failure == "");
  }
}
