// The server: N loops, each with its own SO_REUSEPORT listening socket, run on N
// threads (loop 0 on the caller's).
#include "ws6455/io/server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "io/endpoint.hpp"
#include "io/tls.hpp"

namespace ws6455::io {

namespace {

struct server_state : endpoint::impl {
  server_options opts;
  handler* app = nullptr;
  std::uint16_t bound_port = 0;
  std::shared_ptr<detail::tls_context> tls;
};

server_state& state(endpoint::impl* p) { return *static_cast<server_state*>(p); }

detail::loop_options loop_options_of(const server_options& o) {
  detail::loop_options l;
  detail::copy_common(o, l);
  l.server_deflate = o.deflate_options;
  l.limits = o.limits;
  l.max_connections = o.max_connections;
  return l;
}

}  // namespace

server::server(server_options options, handler& h) {
  auto* s = new server_state;
  impl_ = s;
  if (options.threads == 0) options.threads = std::max(1u, std::thread::hardware_concurrency());
  if (options.threads > 64) options.threads = 64;
  s->opts = std::move(options);
  s->app = &h;
  s->wanted = s->opts.backend;
  for (unsigned i = 0; i < s->opts.threads; ++i)
    s->loops.push_back(std::make_unique<detail::loop>(i, loop_options_of(s->opts), &h, nullptr));
}

server::~server() { delete static_cast<server_state*>(impl_); }

std::uint16_t server::port() const noexcept { return state(impl_).bound_port; }
unsigned server::threads() const noexcept { return static_cast<unsigned>(impl_->loops.size()); }

expected<std::uint16_t, std::string> server::listen() {
  server_state& s = state(impl_);
  auto fail = [](std::string what) { return unexpected<std::string>{what + ": " + std::strerror(errno)}; };
  // Decide the backend once, here, so that a fallback is said once and before serving.
  if (s.wanted != backend::epoll) {
    const std::string why = detail::probe_uring();
    if (why.empty()) {
      s.wanted = backend::io_uring;
    } else if (s.wanted == backend::io_uring) {
      return unexpected<std::string>{"io_uring: " + why};
    } else {
      std::fprintf(stderr, "ws6455: io_uring unavailable (%s); using epoll\n", why.c_str());
      s.wanted = backend::epoll;
    }
  }
  if (!s.opts.tls.cert_file.empty() || !s.opts.tls.key_file.empty()) {
    // Before binding: a missing or mismatched certificate is said before serving.
    auto ctx = detail::tls_context::make_server(s.opts.tls);
    if (!ctx) return unexpected<std::string>{"TLS: " + ctx.error()};
    s.tls = std::move(*ctx);
    for (auto& l : s.loops) l->set_tls(s.tls);
  }
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, s.opts.host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(s.opts.port);
    addr_len = sizeof *a4;
  } else if (inet_pton(AF_INET6, s.opts.host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(s.opts.port);
    addr_len = sizeof *a6;
  } else {
    return unexpected<std::string>{"not an IP address: " + s.opts.host};
  }
  const bool several = s.loops.size() > 1;
  for (std::size_t i = 0; i < s.loops.size(); ++i) {
    const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket");
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart while old sockets are in TIME_WAIT
    // One socket per loop, the kernel spreading connections between them. Only
    // then: with one loop, a second server on the same port must fail to bind.
    if (several) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0 || ::listen(fd, s.opts.backlog) != 0) {
      auto e = fail("bind/listen " + s.opts.host + ":" + std::to_string(s.opts.port));
      ::close(fd);
      return e;
    }
    if (i == 0) {  // port 0: the others bind the port the kernel chose
      socklen_t len = sizeof addr;
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      s.bound_port = ntohs(addr.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    }
    s.loops[i]->add_listener(fd);
  }
  return s.bound_port;
}

int server::run() {
  server_state& s = state(impl_);
  auto run_loop = [&s](detail::loop& l) {
    // The backend is made on the loop's own thread: an io_uring ring belongs to it.
    if (auto why = l.start_backend(s.wanted, nullptr); !why.empty()) {
      std::fprintf(stderr, "ws6455: loop cannot start: %s\n", why.c_str());
      return -1;
    }
    return l.run();
  };
  std::vector<std::thread> threads;
  std::vector<int> results(s.loops.size(), 0);
  // Loop 0 finishes last: tasks the others post to it while they stop still run.
  std::atomic<unsigned> others_running{static_cast<unsigned>(s.loops.size() - 1)};
  s.loops[0]->finish_after(&others_running);
  for (std::size_t i = 1; i < s.loops.size(); ++i)
    threads.emplace_back([&, i] {
      results[i] = run_loop(*s.loops[i]);
      --others_running;
      s.loops[0]->post([] {});  // wakes loop 0 to see it
    });
  results[0] = run_loop(*s.loops[0]);
  if (results[0] != 0) request_stop();  // the others must not run on alone
  for (auto& t : threads) t.join();
  s.loops[0]->finish_after(nullptr);
  for (int r : results)
    if (r != 0) return -1;
  return 0;
}

std::string server::reload_tls() {
  server_state& s = state(impl_);
  if (!s.tls) return "this server has no TLS";
  return s.tls->reload();
}

void server::request_stop() noexcept {
  for (auto& l : impl_->loops) l->request_stop();
}

void server::subscribe(conn_id id, std::string_view topic) {
  if (detail::loop* l = impl_->loop_for(id)) l->subscribe(id, topic);
}

void server::unsubscribe(conn_id id, std::string_view topic) {
  if (detail::loop* l = impl_->loop_for(id)) l->unsubscribe(id, topic);
}

std::size_t server::publish(std::string_view topic, prepared_message m) {
  // One encoding, shared by every loop's copy of the delivery.
  auto shared = std::make_shared<const prepared_message>(std::move(m));
  detail::loop* self = detail::current_loop();
  std::size_t here = 0;
  for (auto& l : impl_->loops) {
    if (l.get() == self) {
      here = l->deliver(topic, shared);
    } else {
      detail::loop* target = l.get();
      target->post([target, t = std::string(topic), shared] { (void)target->deliver(t, shared); });
    }
  }
  return here;
}

}  // namespace ws6455::io
