// Peer: Boost.Beast's websocket::stream (server role) over an in-memory stream.
// The stream's read_some copies from the frame buffer into Beast's read buffer
// (what recv(2) would do); Beast unmasks into the caller's flat_buffer and
// validates text as UTF-8. The upgrade request is accepted once, beforehand.
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <cstring>
#include <stdexcept>

#include "cases.hpp"
#include "frames.hpp"

namespace bench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;

// A synchronous stream that reads from memory and discards writes.
class memory_stream {
 public:
  using executor_type = net::io_context::executor_type;
  explicit memory_stream(net::io_context& io) : ex_(io.get_executor()) {}
  executor_type get_executor() noexcept { return ex_; }

  void set_input(const void* p, std::size_t n) {
    data_ = static_cast<const unsigned char*>(p);
    size_ = n;
    pos_ = 0;
  }
  std::size_t position() const noexcept { return pos_; }

  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, boost::system::error_code& ec) {
    ec = {};
    if (pos_ == size_) {
      ec = net::error::eof;
      return 0;
    }
    const std::size_t n = net::buffer_copy(buffers, net::const_buffer(data_ + pos_, size_ - pos_));
    pos_ += n;
    return n;
  }
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    const std::size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
    ec = {};
    return net::buffer_size(buffers);
  }
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers) {
    return net::buffer_size(buffers);
  }

 private:
  executor_type ex_;
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t pos_ = 0;
};

void teardown(beast::role_type, memory_stream&, boost::system::error_code& ec) { ec = {}; }
template <class TeardownHandler>
void async_teardown(beast::role_type, memory_stream&, TeardownHandler&&) {}

constexpr char kUpgrade[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

struct beast_case final : recv_case {
  const frame_buffer& fb;
  net::io_context io;
  beast::websocket::stream<memory_stream> ws;
  beast::flat_buffer message;

  explicit beast_case(const frame_buffer& b) : fb(b), ws(io) {
    ws.next_layer().set_input(kUpgrade, sizeof kUpgrade - 1);
    ws.accept();
    ws.read_message_max(64u << 20);
    frames = fb.frames;
    payload_bytes = fb.payload_bytes;
    wire_bytes = fb.pristine.size();
  }
  void restore() override { ws.next_layer().set_input(fb.pristine.data(), fb.pristine.size()); }
  bool batchable() override { return true; }  // reads the pristine bytes, never writes them
  void rearm() override { restore(); }
  std::size_t pass() override {
    std::size_t seen = 0;
    for (std::size_t i = 0; i < fb.frames; ++i) {
      ws.read(message);
      asm volatile("" : : "r"(message.data().data()) : "memory");
      message.consume(message.size());
      ++seen;
    }
    return seen;
  }
};

}  // namespace

void register_beast_cases() {
  for (auto kind : {payload_kind::binary, payload_kind::text_ascii, payload_kind::text_mixed})
    for (std::size_t size : kSizes)
      recv_cases()[std::string("beast/") + to_string(kind) + "/whole/" + size_label(size)] = [kind, size] {
        return std::make_unique<beast_case>(frames_for(kind, size));
      };
}

}  // namespace bench
