// The plain-TCP reference for `./run bench --echo`: how fast loopback moves the same
// bytes with no WebSocket at all ("1 MiB echo at >= 0.5x the loopback throughput of a
// plain TCP echo of the same bytes").
//
//   tcp_echo server [--host 127.0.0.1] [--port 8090]
//       One thread, epoll (edge-triggered), non-blocking sockets: every byte read is written
//       back on the same connection; while a write is incomplete the connection stops reading
//       (its pending bytes are the only buffer), so memory stays bounded.
//   tcp_echo client [--host 127.0.0.1] [--port 8090] [-c N] [-p N] [-s BYTES] [-t S] [--warmup S]
//       N connections, each keeping p messages of BYTES in flight: it writes p*BYTES, and
//       every BYTES that come back count one message and let it write BYTES more. Bytes are a
//       fixed pattern; the echo is checked for length only (the server cannot reorder bytes on
//       one TCP stream). Prints one line in `ws6455 load`'s format:
//       msgs_per_s=… MiB_per_s=… errors=… connections=… cpu_us_per_msg=…
//       (MiB_per_s counts each message's payload once, as load does.)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double cpu_s() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "tcp_echo: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

struct options {
  std::string host = "127.0.0.1";
  int port = 8090;
  int connections = 8;
  int in_flight = 4;
  std::size_t size = 1 << 20;
  double seconds = 10;
  double warmup = 1;
};

[[noreturn]] void usage() {
  std::fputs(
      "usage: tcp_echo server [--host H] [--port P]\n"
      "       tcp_echo client [--host H] [--port P] [-c N] [-p N] [-s BYTES] [-t S] [--warmup S]\n",
      stderr);
  std::exit(2);
}

sockaddr_in address(const options& o) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(o.port));
  if (inet_pton(AF_INET, o.host.c_str(), &a.sin_addr) != 1) {
    std::fprintf(stderr, "tcp_echo: bad IPv4 address %s\n", o.host.c_str());
    std::exit(2);
  }
  return a;
}

// ---- server ----------------------------------------------------------------------------

struct server_conn {
  int fd;
  std::vector<char> pending;  // bytes read but not yet written back
  std::size_t pending_at = 0;
};

void close_conn(int ep, server_conn* c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  delete c;
}

// Returns false when the connection is finished (EOF or error).
bool serve_conn(server_conn* c, char* buf, std::size_t cap) {
  for (;;) {
    while (c->pending_at < c->pending.size()) {
      const ssize_t w = send(c->fd, c->pending.data() + c->pending_at, c->pending.size() - c->pending_at,
                             MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN) return true;  // EPOLLOUT resumes us
        if (errno == EINTR) continue;
        return false;
      }
      c->pending_at += static_cast<std::size_t>(w);
    }
    c->pending.clear();
    c->pending_at = 0;
    const ssize_t n = recv(c->fd, buf, cap, 0);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EAGAIN) return true;
      if (errno == EINTR) continue;
      return false;
    }
    std::size_t done = 0;
    while (done < static_cast<std::size_t>(n)) {
      const ssize_t w = send(c->fd, buf + done, static_cast<std::size_t>(n) - done, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return false;
        c->pending.assign(buf + done, buf + n);  // the rest waits for EPOLLOUT
        break;
      }
      done += static_cast<std::size_t>(w);
    }
  }
}

int run_server(const options& o) {
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const sockaddr_in a = address(o);
  if (bind(lfd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) die("bind");
  if (listen(lfd, 4096) != 0) die("listen");
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the listener
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::fprintf(stderr, "tcp_echo: server on %s:%d\n", o.host.c_str(), o.port);

  constexpr std::size_t cap = 256 * 1024;
  std::unique_ptr<char[]> buf(new char[cap]);
  epoll_event events[256];
  while (!g_stop) {
    const int n = epoll_wait(ep, events, 256, 500);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        for (;;) {
          const int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          set_nodelay(fd);
          auto* c = new server_conn{fd, {}, 0};
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
          cev.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
          if (!serve_conn(c, buf.get(), cap)) close_conn(ep, c);
        }
        continue;
      }
      auto* c = static_cast<server_conn*>(events[i].data.ptr);
      if (!serve_conn(c, buf.get(), cap)) close_conn(ep, c);
    }
  }
  return 0;
}

// ---- client ----------------------------------------------------------------------------

struct client_conn {
  int fd = -1;
  std::size_t to_send = 0;   // bytes the window allows us to write now
  std::size_t received = 0;  // bytes of the current message received so far
  bool failed = false;
};

int run_client(const options& o) {
  const sockaddr_in a = address(o);
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<client_conn> conns(static_cast<std::size_t>(o.connections));
  // One pattern buffer, written over and over; reads go to a scratch buffer.
  const std::size_t chunk = std::min<std::size_t>(o.size * static_cast<std::size_t>(o.in_flight), 1 << 20);
  std::vector<char> pattern(chunk);
  for (std::size_t i = 0; i < chunk; ++i) pattern[i] = static_cast<char>('a' + i % 26);
  std::vector<char> scratch(256 * 1024);

  for (std::size_t i = 0; i < conns.size(); ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      std::fprintf(stderr, "tcp_echo: connect %s:%d: %s\n", o.host.c_str(), o.port, std::strerror(errno));
      return 1;
    }
    set_nodelay(fd);
    set_nonblocking(fd);
    conns[i].fd = fd;
    conns[i].to_send = o.size * static_cast<std::size_t>(o.in_flight);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }

  const double t0 = now_s();
  const double t_measure = t0 + o.warmup;
  const double t_end = t_measure + o.seconds;
  bool measuring = false;
  uint64_t messages = 0, errors = 0;
  double cpu0 = 0;
  epoll_event events[256];
  for (;;) {
    const double t = now_s();
    if (!measuring && t >= t_measure) {
      measuring = true;
      messages = 0;
      cpu0 = cpu_s();
    }
    if (t >= t_end || g_stop) break;
    const int n = epoll_wait(ep, events, 256, 100);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int k = 0; k < n; ++k) {
      client_conn& c = conns[events[k].data.u64];
      if (c.failed) continue;
      for (;;) {  // drain what came back
        const ssize_t r = recv(c.fd, scratch.data(), scratch.size(), 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) {
          c.failed = true;
          ++errors;
          epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
          break;
        }
        c.received += static_cast<std::size_t>(r);
        while (c.received >= o.size) {
          c.received -= o.size;
          ++messages;
          c.to_send += o.size;
        }
      }
      while (!c.failed && c.to_send > 0) {  // refill the window
        const ssize_t w = send(c.fd, pattern.data(), std::min(c.to_send, chunk), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w < 0) {
          c.failed = true;
          ++errors;
          epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
          break;
        }
        c.to_send -= static_cast<std::size_t>(w);
      }
    }
  }
  const double elapsed = measuring ? now_s() - t_measure : 0;
  const double cpu = measuring ? cpu_s() - cpu0 : 0;
  for (auto& c : conns) close(c.fd);
  const double rate = elapsed > 0 ? messages / elapsed : 0;
  std::printf("msgs_per_s=%.1f MiB_per_s=%.2f errors=%llu connections=%d cpu_us_per_msg=%.3f\n", rate,
              rate * static_cast<double>(o.size) / (1024.0 * 1024.0), static_cast<unsigned long long>(errors),
              o.connections, messages ? cpu * 1e6 / static_cast<double>(messages) : 0.0);
  return errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  const std::string mode = argv[1];
  options o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (a == "--host") o.host = v;
    else if (a == "--port") o.port = std::atoi(v);
    else if (a == "-c") o.connections = std::atoi(v);
    else if (a == "-p") o.in_flight = std::atoi(v);
    else if (a == "-s") o.size = std::strtoull(v, nullptr, 10);
    else if (a == "-t") o.seconds = std::atof(v);
    else if (a == "--warmup") o.warmup = std::atof(v);
    else usage();
  }
  if (o.port <= 0 || o.port > 65535 || o.connections <= 0 || o.in_flight <= 0 || o.size == 0 || o.seconds <= 0)
    usage();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  if (mode == "server") return run_server(o);
  if (mode == "client") return run_client(o);
  usage();
}
