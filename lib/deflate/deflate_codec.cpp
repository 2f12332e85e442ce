// zlib raw deflate streams for permessage-deflate (RFC 7692 §7.2).
//
// Memory per codec, from zlib's own formula (zconf.h "Memory Usage"), plus its
// state structs (sizes for zlib 1.2.13 on x86-64):
//   deflater: (1 << (window_bits + 2)) + (1 << (mem_level + 9)) + ~5.8 KiB state
//             window 15 / memLevel 8: 128 KiB + 128 KiB; window 12 / memLevel 5: 16 + 16 KiB
//   inflater: (1 << window_bits) + ~7.1 KiB state; the window is allocated on first output
// Both are allocated once in init() and kept across reset(): no allocation per message.
#include "deflate/deflate_codec.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <optional>

namespace ws6455::detail {

namespace {

// RFC 7692 §7.2.1/§7.2.2: the empty stored block a sync flush ends with.
constexpr std::array<std::byte, 4> k_tail{std::byte{0x00}, std::byte{0x00}, std::byte{0xff}, std::byte{0xff}};

// zlib counts in uInt; feed larger spans in pieces.
constexpr std::size_t k_max_piece = std::size_t{1} << 30;
// Output growth: start near the input size, double per round, never more than this at once.
constexpr std::size_t k_min_step = 1024;
constexpr std::size_t k_max_step = std::size_t{256} << 10;

// window_bits 8 runs as 9: zlib refuses raw deflate with 8 (deflateInit2 docs), and its
// 9-bit deflate never emits a distance over 250 (w_size - MIN_LOOKAHEAD), so a peer
// inflating with a 256-byte window reads it; a 512-byte inflate window reads any 8-bit stream.
int zlib_window(int window_bits) { return window_bits == 8 ? 9 : window_bits; }

Bytef* as_bytef(std::byte* p) { return reinterpret_cast<Bytef*>(p); }
Bytef* as_bytef(const std::byte* p) { return const_cast<Bytef*>(reinterpret_cast<const Bytef*>(p)); }

}  // namespace

// ---------------------------------------------------------------------------------------
// inflater

struct inflater::impl {
  z_stream strm{};
  bool ready = false;
  // Real (not tail) input given to zlib since the message began or since the deflate
  // stream last ended on a BFINAL block. Without any, the 00 00 ff ff tail is not
  // inflated: it would open a stored block that nothing completes.
  bool fed = false;
  bool in_tail = false;        // the message's input is done; its tail is being inflated
  std::size_t tail_pos = 0;    // how much of the tail zlib has taken (a `full` may split it)
  std::optional<std::byte> held;  // one byte produced past max_out while probing for more

  ~impl() {
    if (ready) inflateEnd(&strm);
  }

  // A new raw stream that still sees the last window of output (rare: BFINAL blocks).
  bool restart() {
    std::array<Bytef, 32768> dict;
    uInt len = 0;
    if (inflateGetDictionary(&strm, dict.data(), &len) != Z_OK) return false;
    if (inflateReset(&strm) != Z_OK) return false;
    return len == 0 || inflateSetDictionary(&strm, dict.data(), len) == Z_OK;
  }

  enum class run_result { exhausted, full, error };

  // Inflates [src, src + n) into `out` (growing it up to max_out); `used` gets the input
  // zlib took. exhausted: all input taken and all output it allows written.
  // full: a byte exists past max_out (kept in `held`). `tail` marks the 00 00 ff ff input:
  // after a stream end the rest of it is dropped, not inflated into a new stream.
  run_result run(const std::byte* src, std::size_t n, bool tail, std::vector<std::byte>& out,
                 std::size_t max_out, std::size_t& used) {
    used = 0;
    std::size_t step = std::clamp(n * 4, k_min_step, k_max_step);
    while (true) {
      const std::size_t piece = std::min(n - used, k_max_piece);
      strm.next_in = as_bytef(src + used);
      strm.avail_in = static_cast<uInt>(piece);
      std::byte probe{};
      std::size_t old = out.size();
      const bool probing = old >= max_out;
      if (probing) {
        // Out is at max_out: ask for one byte more to learn whether the remaining input
        // (an end-of-block code, the tail …) produces any output at all.
        strm.next_out = as_bytef(&probe);
        strm.avail_out = 1;
      } else {
        const std::size_t grow = std::min({max_out - old, step, k_max_piece});
        out.resize(old + grow);
        strm.next_out = as_bytef(out.data() + old);
        strm.avail_out = static_cast<uInt>(grow);
        step = std::min(step * 2, k_max_step);
      }
      const uInt avail_out_before = strm.avail_out;
      const int rc = ::inflate(&strm, Z_SYNC_FLUSH);
      const std::size_t took = piece - strm.avail_in;
      used += took;
      if (took && !tail) fed = true;
      const std::size_t produced = avail_out_before - strm.avail_out;
      if (!probing) out.resize(old + produced);
      if (probing && produced) {
        held = probe;
        return run_result::full;
      }
      switch (rc) {
        case Z_OK:
        case Z_BUF_ERROR:  // no progress possible: input used up, or no room
          break;
        case Z_STREAM_END:
          // A block with BFINAL set ended the deflate stream (RFC 7692 §7.2.3.4 allows
          // it). Start a fresh stream for whatever follows, keeping the window for
          // context takeover; the tail is not inflated into it.
          if (!restart()) return run_result::error;
          fed = false;
          if (tail) {
            used = n;
            return run_result::exhausted;
          }
          continue;
        default:  // Z_DATA_ERROR, Z_NEED_DICT, Z_MEM_ERROR, Z_STREAM_ERROR
          return run_result::error;
      }
      if (strm.avail_out != 0) {
        // zlib stopped with room left: it needs more input.
        if (used == n) return run_result::exhausted;
        continue;  // next piece of a > 1 GiB span
      }
      // No room left: loop to grow `out`, or to probe once it is at max_out.
    }
  }
};

inflater::inflater() = default;
inflater::~inflater() = default;
inflater::inflater(inflater&&) noexcept = default;
inflater& inflater::operator=(inflater&&) noexcept = default;

bool inflater::init(int window_bits) {
  if (window_bits < 8 || window_bits > 15) return false;
  auto p = std::make_unique<impl>();
  // Negative windowBits: a raw deflate stream, no zlib header or checksum (RFC 7692 §7.2).
  if (inflateInit2(&p->strm, -zlib_window(window_bits)) != Z_OK) return false;
  p->ready = true;
  p_ = std::move(p);
  return true;
}

codec_status inflater::inflate(std::span<const std::byte> in, bool fin, std::vector<std::byte>& out,
                               std::size_t max_out, std::size_t& consumed) {
  consumed = 0;
  if (!p_) return codec_status::error;
  impl& s = *p_;
  if (s.held) {
    if (out.size() >= max_out) return codec_status::full;
    out.push_back(*s.held);
    s.held.reset();
  }
  if (!s.in_tail) {
    std::size_t used = 0;
    const auto r = s.run(in.data(), in.size(), false, out, max_out, used);
    consumed = used;
    if (r == impl::run_result::error) return codec_status::error;
    if (r == impl::run_result::full) return codec_status::full;
    if (!fin) return codec_status::ok;
    if (!s.fed) return codec_status::ok;  // empty message, or one that ended on BFINAL
    s.in_tail = true;
  } else if (!in.empty() || !fin) {
    return codec_status::error;  // misuse: the message's input already ended
  }
  // RFC 7692 §7.2.2: append 00 00 ff ff to the message's payload and inflate it. A run
  // with the tail already taken still flushes output that a `full` held back.
  std::size_t used = 0;
  const auto r = s.run(k_tail.data() + s.tail_pos, k_tail.size() - s.tail_pos, true, out, max_out, used);
  s.tail_pos += used;
  if (r == impl::run_result::error) return codec_status::error;
  if (r == impl::run_result::full) return codec_status::full;
  // The message must end on a block boundary (zlib adds 128 to data_type there), or it
  // was truncated and the next message would be read as the rest of a block.
  const bool truncated = s.fed && !(s.strm.data_type & 128);
  s.fed = false;
  s.in_tail = false;
  s.tail_pos = 0;
  return truncated ? codec_status::error : codec_status::ok;
}

void inflater::reset() {
  if (!p_) return;
  inflateReset(&p_->strm);  // keeps the allocated window
  p_->fed = false;
  p_->in_tail = false;
  p_->tail_pos = 0;
  p_->held.reset();
}

// ---------------------------------------------------------------------------------------
// deflater

struct deflater::impl {
  z_stream strm{};
  bool ready = false;
  ~impl() {
    if (ready) deflateEnd(&strm);
  }
};

deflater::deflater() = default;
deflater::~deflater() = default;
deflater::deflater(deflater&&) noexcept = default;
deflater& deflater::operator=(deflater&&) noexcept = default;

bool deflater::init(int window_bits, int mem_level) {
  if (window_bits < 8 || window_bits > 15 || mem_level < 1 || mem_level > 9) return false;
  auto p = std::make_unique<impl>();
  if (deflateInit2(&p->strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -zlib_window(window_bits), mem_level,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return false;
  p->ready = true;
  p_ = std::move(p);
  return true;
}

codec_status deflater::compress(std::span<const std::byte> in, bool fin, std::vector<std::byte>& out) {
  if (!p_) return codec_status::error;
  z_stream& strm = p_->strm;
  const std::size_t start = out.size();
  std::size_t used = 0;
  // Text compresses to well under half; incompressible data costs 5 bytes per 16 KiB
  // stored block, so this needs at most a couple of rounds.
  std::size_t step = std::clamp(in.size() / 2 + 64, k_min_step, k_max_step);
  while (true) {
    const std::size_t piece = std::min(in.size() - used, k_max_piece);
    strm.next_in = as_bytef(in.data() + used);
    strm.avail_in = static_cast<uInt>(piece);
    const std::size_t old = out.size();
    out.resize(old + step);
    strm.next_out = as_bytef(out.data() + old);
    strm.avail_out = static_cast<uInt>(step);
    // Each call ends on a sync flush: an empty stored block that byte-aligns the output,
    // so the piece can go out as a frame of its own (RFC 7692 §7.2.1).
    const int rc = ::deflate(&strm, Z_SYNC_FLUSH);
    used += piece - strm.avail_in;
    out.resize(old + (step - strm.avail_out));
    // Z_BUF_ERROR: nothing to do (no input since the last flush); not an error.
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      out.resize(start);
      return codec_status::error;
    }
    if (strm.avail_out != 0 && used == in.size()) break;
    step = std::min(step * 2, k_max_step);
  }
  if (fin) {
    // RFC 7692 §7.2.1: remove the 00 00 ff ff the flush ended with.
    const std::size_t n = out.size() - start;
    if (n >= k_tail.size() && std::equal(k_tail.begin(), k_tail.end(), out.end() - k_tail.size()))
      out.resize(out.size() - k_tail.size());
    // Nothing came out (no input since the previous flush, e.g. an empty message): send
    // the 3 header bits of an empty stored block, 0x00, as websockets and wsproto do;
    // the receiver's appended 00 00 ff ff completes it (RFC 7692 §7.2.3.6).
    if (out.size() == start) out.push_back(std::byte{0x00});
  }
  return codec_status::ok;
}

void deflater::reset() {
  if (p_) deflateReset(&p_->strm);  // keeps the allocated window and hash tables
}

}  // namespace ws6455::detail
