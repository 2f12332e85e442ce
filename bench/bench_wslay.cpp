// Peer: wslay's frame API (wslay_frame_recv), fed from memory by its recv callback.
// The callback copies into wslay's 4 KiB input buffer (what recv(2) would do);
// wslay unmasks there, a byte at a time. Its frame API does not validate UTF-8.
#include <wslay/wslay.h>

#include <cstring>
#include <stdexcept>

#include "cases.hpp"
#include "frames.hpp"

namespace bench {
namespace {

struct wslay_case final : recv_case {
  const frame_buffer& fb;
  wslay_frame_context_ptr ctx = nullptr;
  std::size_t cursor = 0;

  static ssize_t on_recv(std::uint8_t* buf, std::size_t len, int, void* user) {
    auto* self = static_cast<wslay_case*>(user);
    const std::size_t left = self->fb.pristine.size() - self->cursor;
    const std::size_t n = left < len ? left : len;
    if (n == 0) return 0;  // WSLAY_ERR_WANT_READ: the buffer is done
    std::memcpy(buf, self->fb.pristine.data() + self->cursor, n);
    self->cursor += n;
    return static_cast<ssize_t>(n);
  }
  static ssize_t on_send(const std::uint8_t*, std::size_t len, int, void*) { return static_cast<ssize_t>(len); }
  static int on_genmask(std::uint8_t* buf, std::size_t len, void*) {
    std::memset(buf, 0, len);
    return 0;
  }

  explicit wslay_case(const frame_buffer& b) : fb(b) {
    const wslay_frame_callbacks cb{&on_send, &on_recv, &on_genmask};
    if (wslay_frame_context_init(&ctx, &cb, this) != 0) throw std::runtime_error("wslay_frame_context_init");
    frames = fb.frames;
    payload_bytes = fb.payload_bytes;
    wire_bytes = fb.pristine.size();
  }
  ~wslay_case() override { wslay_frame_context_free(ctx); }

  void restore() override { cursor = 0; }
  bool batchable() override { return true; }  // reads the pristine bytes, never writes them
  void rearm() override { cursor = 0; }
  std::size_t pass() override {
    std::size_t seen = 0;
    std::uint64_t got = 0;
    wslay_frame_iocb iocb{};
    for (;;) {
      const ssize_t r = wslay_frame_recv(ctx, &iocb);
      if (r < 0) {
        if (r == WSLAY_ERR_WANT_READ && cursor == fb.pristine.size()) break;
        throw std::runtime_error("wslay_frame_recv failed");
      }
      benchmark_sink(iocb.data, iocb.data_length);
      got += static_cast<std::uint64_t>(r);
      if (got == iocb.payload_length) {
        ++seen;
        got = 0;
      }
    }
    return seen;
  }
  static void benchmark_sink(const std::uint8_t* p, std::size_t n) {
    asm volatile("" : : "r"(p), "r"(n) : "memory");
  }
};

}  // namespace

void register_wslay_cases() {
  for (auto kind : {payload_kind::binary, payload_kind::text_ascii, payload_kind::text_mixed})
    for (std::size_t size : kSizes)
      recv_cases()[std::string("wslay/") + to_string(kind) + "/frame/" + size_label(size)] = [kind, size] {
        return std::make_unique<wslay_case>(frames_for(kind, size));
      };
}

}  // namespace bench
