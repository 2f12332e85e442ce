// Peer for `./run bench --echo`: Boost.Beast's asynchronous WebSocket echo server, in the
// style of Beast's documented example (example/websocket/server/async): a listener that
// accepts with async_accept and one session per connection that loops
// async_read → async_write of the same flat_buffer → consume. One io_context, run on
// the calling thread; no permessage-deflate; Beast's other defaults unchanged (including
// auto_fragment, so a large echo goes out as 4 KiB frames, and the 16 MiB message limit).
// Two departures from the example, both for a like-for-like comparison with the other
// servers: the stream is websocket::stream<tcp::socket> (no tcp_stream timers), and
// accepted sockets get TCP_NODELAY, as ws6455 serve and Node ws do.
//
//   beast_echo_server [ADDRESS] [PORT]     (default 127.0.0.1 8080)
// SIGINT/SIGTERM stop the loop.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

void fail(beast::error_code ec, const char* what) {
  // Peers closing is the normal end of a benchmark connection: stay quiet about it.
  if (ec == websocket::error::closed || ec == net::error::eof || ec == net::error::connection_reset ||
      ec == net::error::operation_aborted || ec == net::error::broken_pipe)
    return;
  std::fprintf(stderr, "beast_echo_server: %s: %s\n", what, ec.message().c_str());
}

// Echoes every message back on one WebSocket connection.
class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket&& socket) : ws_(std::move(socket)) {}

  void run() {
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(beast::http::field::server, "beast-echo-bench");
    }));
    ws_.async_accept(beast::bind_front_handler(&session::on_accept, shared_from_this()));
  }

 private:
  void on_accept(beast::error_code ec) {
    if (ec) return fail(ec, "accept");
    do_read();
  }

  void do_read() {
    ws_.async_read(buffer_, beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "read");
    ws_.text(ws_.got_text());
    ws_.async_write(buffer_.data(), beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "write");
    buffer_.consume(buffer_.size());
    do_read();
  }

  websocket::stream<tcp::socket> ws_;
  beast::flat_buffer buffer_;
};

// Accepts connections and launches a session for each.
class listener : public std::enable_shared_from_this<listener> {
 public:
  listener(net::io_context& ioc, tcp::endpoint endpoint) : ioc_(ioc), acceptor_(ioc) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
  }

  void run() { do_accept(); }

 private:
  void do_accept() {
    acceptor_.async_accept(net::make_strand(ioc_),
                           beast::bind_front_handler(&listener::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (ec) {
      fail(ec, "accept");
      // Out of descriptors: keep listening rather than stop (the next accept may succeed).
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<session>(std::move(socket))->run();
    }
    do_accept();
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
};

}  // namespace

int main(int argc, char** argv) {
  const char* address = argc > 1 ? argv[1] : "127.0.0.1";
  const int port = argc > 2 ? std::atoi(argv[2]) : 8080;
  if (argc > 3 || port <= 0 || port > 65535) {
    std::fprintf(stderr, "usage: beast_echo_server [ADDRESS] [PORT]\n");
    return 2;
  }
  try {
    net::io_context ioc{1};
    std::make_shared<listener>(ioc, tcp::endpoint{net::ip::make_address(address),
                                                  static_cast<unsigned short>(port)})
        ->run();
    net::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](beast::error_code, int) { ioc.stop(); });
    std::fprintf(stderr, "beast_echo_server: listening on %s:%d\n", address, port);
    ioc.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "beast_echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
