// ws6455 connect: a wscat-like client. Each stdin line goes out as a text message;
// each message received is printed on its own line. ws:// only.
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli_options.hpp"
#include "io/epoll_loop.hpp"  // monotonic_ms
#include "ws6455/connection.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/permessage_deflate.hpp"

namespace ws6455::tools {
namespace {

constexpr const char* connect_usage =
    "usage: ws6455 connect ws://HOST[:PORT]/PATH [--protocol P]... [--header 'Name: value']...\n"
    "                      [--deflate] [--close-after-stdin] [--max-message N]\n"
    "  stdin lines are sent as text messages; received text is printed one message a line,\n"
    "  binary as '<< binary HEX', the peer's close as '<< close CODE REASON'.\n"
    "  --close-after-stdin: at the end of stdin, close (1000) and wait for the server.\n"
    "  Exit 0 after a clean close, 1 on a failure, 2 on bad usage.\n";

constexpr std::int64_t handshake_timeout_ms = 10'000;
constexpr std::int64_t close_timeout_ms = 5'000;
constexpr std::size_t stdin_pause_bytes = 1u << 20;  // stop reading stdin while this much output waits

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) { g_interrupted = 1; }

// A connected, non-blocking TCP socket to host:port, or -1 (the reason on stderr).
int dial(const ws_url& url) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url.port);
  if (const int e = getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res); e != 0) {
    std::fprintf(stderr, "ws6455 connect: %s: %s\n", url.host.c_str(), gai_strerror(e));
    return -1;
  }
  int fd = -1;
  int err = 0;
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;  // blocking connect: simple and bounded by the kernel
    err = errno;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    std::fprintf(stderr, "ws6455 connect: %s:%u: %s\n", url.host.c_str(), url.port, std::strerror(err));
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// Writes all of `data` (non-blocking socket: waits with poll), or false.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 1000);
    } else {
      return false;
    }
  }
  return true;
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

}  // namespace
}  // namespace ws6455::tools

int connect_main(int argc, char** argv) {
  using namespace ws6455;
  using namespace ws6455::tools;
  std::string_view url_arg;
  client_options hs_opts;
  bool deflate = false;
  bool close_after_stdin = false;
  config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (auto v = option_value(argc, argv, i, "--protocol")) {
      for (std::string_view rest = *v; !rest.empty();) {
        const auto comma = rest.find(',');
        if (comma != 0) hs_opts.protocols.emplace_back(rest.substr(0, comma));
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
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
    } else if (arg == "--close-after-stdin") {
      close_after_stdin = true;
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
  if (url->secure) {
    std::fprintf(stderr, "ws6455 connect: wss:// is not supported (this tool has no TLS); use ws://\n");
    return 2;
  }
  permessage_deflate::client_options deflate_opts;
  if (deflate) hs_opts.extensions = permessage_deflate::make_offer(deflate_opts);
  client_handshake hs(*url, hs_opts);
  if (hs.state() == handshake_state::failed) {
    std::fprintf(stderr, "ws6455 connect: %.*s\n", static_cast<int>(hs.reason().size()), hs.reason().data());
    return 2;
  }

  struct sigaction sa {};
  sa.sa_handler = on_interrupt;  // no SA_RESTART: poll returns EINTR and we close cleanly
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  const int fd = dial(*url);
  if (fd < 0) return 1;
  if (!write_all(fd, hs.request())) {
    std::fprintf(stderr, "ws6455 connect: write failed: %s\n", std::strerror(errno));
    ::close(fd);
    return 1;
  }

  // The handshake: read until the response head is complete, bounded in time.
  std::vector<std::byte> buf(256u << 10);
  std::span<std::byte> leftover;
  const std::int64_t hs_deadline = io::detail::monotonic_ms() + handshake_timeout_ms;
  while (hs.state() == handshake_state::need_more) {
    const std::int64_t now = io::detail::monotonic_ms();
    pollfd p{fd, POLLIN, 0};
    if (now >= hs_deadline || g_interrupted) break;
    if (poll(&p, 1, static_cast<int>(hs_deadline - now)) <= 0) continue;
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    const std::size_t used = hs.feed(std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n)));
    leftover = std::span<std::byte>(buf.data() + used, static_cast<std::size_t>(n) - used);
  }
  if (hs.state() != handshake_state::done) {
    if (hs.state() == handshake_state::need_more) {
      std::fprintf(stderr, "ws6455 connect: no complete handshake response\n");
    } else {
      std::fprintf(stderr, "ws6455 connect: handshake failed (%d): %.*s\n", hs.status(),
                   static_cast<int>(hs.reason().size()), hs.reason().data());
      if (!hs.body().empty()) std::fwrite(hs.body().data(), 1, hs.body().size(), stderr);
    }
    ::close(fd);
    return 1;
  }
  if (!hs.extensions().empty()) {
    auto params = permessage_deflate::validate_response(hs.extensions(), deflate_opts);
    if (!params) {
      std::fprintf(stderr, "ws6455 connect: bad extension response: %s\n", params.error().c_str());
      ::close(fd);
      return 1;
    }
    cfg.deflate = *params;
  }
  if (!hs.protocol().empty())
    std::fprintf(stderr, "ws6455 connect: subprotocol %.*s\n", static_cast<int>(hs.protocol().size()),
                 hs.protocol().data());

  connection c(role::client, cfg);
  std::array<event, 64> events;
  std::string out;  // what to print
  bool saw_eof = false;
  auto feed = [&](std::span<std::byte> in) {
    while (!in.empty() && c.want_read()) {
      const auto r = c.feed(in, events);
      for (std::size_t i = 0; i < r.events; ++i) print_event(events[i], out);
      in = in.subspan(r.consumed);
    }
    if (!out.empty()) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
      out.clear();
    }
  };
  feed(leftover);

  bool stdin_open = true;
  std::string line;
  std::int64_t close_deadline = 0;  // set once a close was sent or received
  for (;;) {
    if (g_interrupted && c.state() == connection_state::open) {
      (void)c.close(1000, "");
      g_interrupted = 0;
    }
    const std::int64_t now = io::detail::monotonic_ms();
    if (c.state() != connection_state::open && close_deadline == 0) close_deadline = now + close_timeout_ms;
    if (close_deadline && now >= close_deadline) break;     // the server did not finish: drop it
    if (c.should_close_transport() || saw_eof) break;      // a failure, or the server's EOF
    // Write what is pending.
    while (c.want_write()) {
      const auto o = c.pending_output();
      const ssize_t n = ::send(fd, o.data(), o.size(), MSG_NOSIGNAL);
      if (n > 0) { c.consume_output(static_cast<std::size_t>(n)); continue; }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      saw_eof = true;  // the connection broke
      break;
    }
    if (saw_eof) break;
    pollfd p[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
    if (c.want_write()) p[0].events |= POLLOUT;
    const bool read_stdin =
        stdin_open && c.state() == connection_state::open && c.pending_output().size() < stdin_pause_bytes;
    const int timeout = close_deadline ? static_cast<int>(std::max<std::int64_t>(0, close_deadline - now)) : -1;
    const int r = poll(p, read_stdin ? 2 : 1, timeout);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n > 0) {
        feed(std::span<std::byte>(buf.data(), static_cast<std::size_t>(n)));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        event ev;
        if (c.feed_eof(ev)) print_event(ev, out);  // "<< close 1006": no close frame came
        if (!out.empty()) { std::fwrite(out.data(), 1, out.size(), stdout); std::fflush(stdout); out.clear(); }
        saw_eof = true;
      }
    }
    if (read_stdin && (p[1].revents & (POLLIN | POLLHUP))) {
      char in[65536];
      const ssize_t n = ::read(0, in, sizeof in);
      if (n > 0) {
        line.append(in, static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (std::size_t nl; (nl = line.find('\n', start)) != std::string::npos; start = nl + 1) {
          std::string_view msg(line.data() + start, nl - start);
          if (!msg.empty() && msg.back() == '\r') msg.remove_suffix(1);
          const send_result s = c.send_text(msg);
          if (s != send_result::ok)
            std::fprintf(stderr, "ws6455 connect: not sent: %.*s\n", static_cast<int>(describe(s).size()),
                         describe(s).data());
        }
        line.erase(0, start);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        stdin_open = false;
        if (!line.empty()) (void)c.send_text(line);  // a last line without a newline
        line.clear();
        if (close_after_stdin) (void)c.close(1000, "");
      }
    }
  }
  ::close(fd);
  return c.closed_cleanly() ? 0 : 1;
}
