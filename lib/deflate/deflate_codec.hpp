// zlib behind the frame layer: raw deflate streams for permessage-deflate (RFC 7692 §7.2).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

namespace ws6455::detail {

enum class codec_status {
  ok,     // all input taken (and, with fin, all output produced)
  full,   // output reached max_out with more to produce; `consumed` says how much input was taken
  error,  // the compressed data is invalid (RFC 7692 §8.2.3.1: fail the connection, 1007)
};

// Decompresses one direction's messages. Context takeover is the default: the
// window carries from message to message until reset() (no_context_takeover).
class inflater {
 public:
  inflater();
  ~inflater();
  inflater(inflater&&) noexcept;
  inflater& operator=(inflater&&) noexcept;

  // window_bits 8..15 (8 runs as 9: zlib's raw inflate refuses 8, and a 512-byte window
  // reads any stream made with 256). Returns false if zlib cannot be initialised.
  bool init(int window_bits);
  // Inflates the next piece `in` of a message's compressed payload, appending to `out`
  // without letting out.size() pass `max_out`. With `fin` the piece ends the message and
  // the 00 00 ff ff tail the sender stripped (§7.2.2) is inflated after it.
  // `full` is only returned when output really remains (a message of exactly max_out
  // bytes is `ok`); to continue, call again with the input not consumed (and the same
  // `fin`). A message with no compressed bytes at all is empty; one that does not end
  // on a DEFLATE block boundary is an `error`.
  codec_status inflate(std::span<const std::byte> in, bool fin, std::vector<std::byte>& out,
                       std::size_t max_out, std::size_t& consumed);
  void reset();

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

// Compresses one direction's messages.
class deflater {
 public:
  deflater();
  ~deflater();
  deflater(deflater&&) noexcept;
  deflater& operator=(deflater&&) noexcept;

  bool init(int window_bits, int mem_level);
  // Compresses the next piece of a message, appending to `out`. Each call ends with a
  // Z_SYNC_FLUSH so the piece can be sent as a frame; with `fin` the trailing
  // 00 00 ff ff is removed (§7.2.1), and a final piece that produced nothing (an empty
  // message) is the single byte 00.
  codec_status compress(std::span<const std::byte> in, bool fin, std::vector<std::byte>& out);
  void reset();

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

}  // namespace ws6455::detail
