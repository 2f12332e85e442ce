// ws6455 connect: a wscat-like client on the client adapter (lib/io). Each stdin
// line goes out as a text message; each message received is printed on its own
// line. --echo sends every message back instead (the mode conformance suites use
// to test a client). ws:// and wss:// (TLS, verified against the system CA store
// or --ca FILE).
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cli_options.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/io/client.hpp"
#include "ws6455/permessage_deflate.hpp"

namespace ws6455::tools {
namespace {

constexpr const char* connect_usage =
    "usage: ws6455 connect ws[s]://HOST[:PORT]/PATH [--protocol P]... [--header 'Name: value']...\n"
    "                      [--deflate] [--close-after-stdin] [--echo] [--max-message N]\n"
    "                      [--backend auto|epoll|io_uring] [--ca FILE] [--insecure]\n"
    "  wss://: the server's certificate is checked against the system CA store (or --ca FILE,\n"
    "    PEM) and the URL's host name; --insecure skips both (tests only).\n"
    "  stdin lines are sent as text messages; received text is printed one message a line,\n"
    "  binary as '<< binary HEX', the peer's close as '<< close CODE REASON'.\n"
    "  --close-after-stdin: at the end of stdin, close (1000) and wait for the server.\n"
    "  --echo: send every text and binary message back as it came (stdin is not read)\n"
    "    until the server closes.\n"
    "  Exit 0 after a clean close, 1 on a failure, 2 on bad usage.\n";

constexpr std::size_t stdin_pause_bytes = 1u << 20;  // stop reading stdin while this much output waits

io::client* g_client = nullptr;
extern "C" void on_interrupt(int) {
  if (g_client) g_client->request_stop();  // an eventfd write: async-signal-safe
}

void print_event(const event& ev, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  switch (ev.type) {
    case event_type::text:
      out += ev.text();
      out += '\n';
      break;
    case event_type::binary:
      out += "<< binary ";
      for (const std::byte b : ev.data) {
        out += hex[static_cast<unsigned>(b) >> 4];
        out += hex[static_cast<unsigned>(b) & 15];
      }
      out += '\n';
      break;
    case event_type::close:
      out += "<< close " + std::to_string(ev.code);
      if (!ev.reason.empty()) {
        out += ' ';
        out += ev.reason;
      }
      out += '\n';
      break;
    case event_type::fail:
      std::fprintf(stderr, "ws6455 connect: failed the connection: %u %.*s\n", ev.code,
                   static_cast<int>(ev.reason.size()), ev.reason.data());
      break;
    case event_type::ping:
    case event_type::pong:
      break;
  }
}


class app final : public io::client_handler {
 public:
  explicit app(bool echo) : echo_(echo) {}
  io::client* client = nullptr;
  bool clean = false;  // the server's close frame came (and ours went or goes back)
  std::atomic<bool> done{false};
  std::atomic<bool> is_open{false};
  std::atomic<std::size_t> backlog{0};  // our pending output, for the stdin reader

  void on_open(io::conn_id, const http_response& r) override {
    opened_ = true;
    is_open = true;
    if (auto p = r.header("Sec-WebSocket-Protocol"))
      std::fprintf(stderr, "ws6455 connect: subprotocol %.*s\n", static_cast<int>(p->size()), p->data());
  }
  void on_message(io::conn_id id, const event& ev) override {
    if (echo_) {
      const send_result s = ev.type == event_type::text ? client->send_text(id, ev.text(), /*trusted_utf8=*/true)
                                                        : client->send_binary(id, ev.data);
      if (s != send_result::ok) (void)client->close(id, 1008, "cannot echo");
      return;
    }
    print(ev);
  }
  void on_event(io::conn_id, const event& ev) override {
    if (ev.type == event_type::close && ev.code != 1006) clean = true;
    if (!echo_ || ev.type == event_type::fail) print(ev);
  }
  void on_close(io::conn_id, std::uint16_t code, std::string_view reason) override {
    if (!opened_ && code == 1006)
      std::fprintf(stderr, "ws6455 connect: %.*s\n", static_cast<int>(reason.size()), reason.data());
    done = true;
  }

 private:
  void print(const event& ev) {
    std::string out;
    print_event(ev, out);
    if (out.empty()) return;
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  }
  bool echo_;
  bool opened_ = false;
};

// Reads stdin on a thread of its own and hands lines to the loop (client::post).
void read_stdin(io::client& cl, io::conn_id id, app& a, bool close_after) {
  std::string line;
  char in[65536];
  while (!a.done) {
    if (a.backlog > stdin_pause_bytes) {  // the server reads slower than we type: wait
      cl.post([&cl, &a, id] { a.backlog = cl.buffered_amount(id); });
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    pollfd p{0, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;  // wakes to notice `done`
    const ssize_t n = ::read(0, in, sizeof in);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) {
      line.append(in, static_cast<std::size_t>(n));
      std::vector<std::string> lines;
      std::size_t start = 0;
      for (std::size_t nl; (nl = line.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view msg(line.data() + start, nl - start);
        if (!msg.empty() && msg.back() == '\r') msg.remove_suffix(1);
        lines.emplace_back(msg);
      }
      line.erase(0, start);
      std::size_t bytes = 0;
      for (const auto& l : lines) bytes += l.size();
      a.backlog += bytes;
      cl.post([&cl, &a, id, lines = std::move(lines)] {
        for (const auto& msg : lines) {
          const send_result s = cl.send_text(id, msg);
          if (s != send_result::ok)
            std::fprintf(stderr, "ws6455 connect: not sent: %.*s\n", static_cast<int>(describe(s).size()),
                         describe(s).data());
        }
        a.backlog = cl.buffered_amount(id);
      });
      continue;
    }
    // The end of stdin: a last line without a newline, then (maybe) the close.
    cl.post([&cl, id, last = std::move(line), close_after] {
      if (!last.empty()) (void)cl.send_text(id, last);
      if (close_after) (void)cl.close(id, 1000);
    });
    return;
  }
}

}  // namespace
}  // namespace ws6455::tools

int connect_main(int argc, char** argv) {
  using namespace ws6455;
  using namespace ws6455::tools;
  std::string_view url_arg;
  client_options hs_opts;
  bool deflate = false;
  bool close_after_stdin = false;
  bool echo = false;
  io::backend backend_choice = io::backend::automatic;
  config cfg;
  std::string ca_file;
  bool insecure = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (auto v = option_value(argc, argv, i, "--protocol")) {
      for (auto& p : split_commas(*v)) hs_opts.protocols.push_back(std::move(p));
    } else if (auto v = option_value(argc, argv, i, "--header")) {
      const auto colon = v->find(':');
      if (colon == std::string_view::npos || colon == 0) {
        std::fprintf(stderr, "ws6455 connect: --header takes 'Name: value'\n");
        return 2;
      }
      std::string_view value = v->substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      hs_opts.headers.push_back({std::string(v->substr(0, colon)), std::string(value)});
    } else if (auto v = option_value(argc, argv, i, "--max-message")) {
      auto n = parse_size(*v);
      if (!n || *n == 0) { std::fprintf(stderr, "ws6455 connect: --max-message takes a positive number\n"); return 2; }
      cfg.max_message_size = *n;
    } else if (arg == "--deflate") {
      deflate = true;
    } else if (auto v = option_value(argc, argv, i, "--ca")) {
      ca_file = std::string(*v);
    } else if (arg == "--insecure") {
      insecure = true;
    } else if (arg == "--close-after-stdin") {
      close_after_stdin = true;
    } else if (arg == "--echo") {
      echo = true;
    } else if (auto v = option_value(argc, argv, i, "--backend")) {
      if (*v == "auto") backend_choice = io::backend::automatic;
      else if (*v == "epoll") backend_choice = io::backend::epoll;
      else if (*v == "io_uring") backend_choice = io::backend::io_uring;
      else { std::fprintf(stderr, "ws6455 connect: --backend is auto, epoll or io_uring\n"); return 2; }
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(connect_usage, stdout);
      return 0;
    } else if (!arg.starts_with("--") && url_arg.empty()) {
      url_arg = arg;
    } else {
      std::fprintf(stderr, "ws6455 connect: unknown option '%s'\n%s", argv[i], connect_usage);
      return 2;
    }
  }
  if (url_arg.empty()) { std::fputs(connect_usage, stderr); return 2; }
  auto url = parse_ws_url(url_arg);
  if (!url) {
    std::fprintf(stderr, "ws6455 connect: %s\n", url.error().c_str());
    return 2;
  }
  client_handshake hs(*url, hs_opts);  // only to refuse bad options before connecting
  if (hs.state() == handshake_state::failed) {
    std::fprintf(stderr, "ws6455 connect: %.*s\n", static_cast<int>(hs.reason().size()), hs.reason().data());
    return 2;
  }

  io::client_options copts;
  copts.ws = cfg;
  copts.deflate = deflate;
  copts.backend = backend_choice;
  copts.ca_file = ca_file;
  copts.insecure = insecure;
  app handler(echo);
  io::client cl(copts, handler);
  handler.client = &cl;
  auto id = cl.connect(url_arg, hs_opts);
  if (!id) {
    std::fprintf(stderr, "ws6455 connect: %s\n", id.error().c_str());
    return id.error().find("not supported") != std::string::npos ? 2 : 1;
  }
  g_client = &cl;
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // stdin is read once the server accepted (lines typed before wait in the pipe).
  std::thread reader;
  if (!echo) reader = std::thread([&] {
    while (!handler.done && !handler.is_open) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    read_stdin(cl, *id, handler, close_after_stdin);
  });
  const int rc = cl.run();
  handler.done = true;
  g_client = nullptr;
  if (reader.joinable()) reader.join();
  if (rc != 0) return 1;
  return handler.clean ? 0 : 1;
}
