// The client: one loop on the caller's thread, many connections.
#include "ws6455/io/client.hpp"

#include <netdb.h>

#include <cstdio>
#include <cstring>

#include "io/endpoint.hpp"
#include "io/tls.hpp"
#include "ws6455/url.hpp"

namespace ws6455::io {

namespace {

struct client_state : endpoint::impl {
  client_options opts;
  std::string fallback_note;
};

client_state& state(endpoint::impl* p) { return *static_cast<client_state*>(p); }

detail::loop_options loop_options_of(const client_options& o) {
  detail::loop_options l;
  detail::copy_common(o, l);
  l.client_deflate = o.deflate_options;
  l.connect_timeout = o.connect_timeout.count();
  l.exit_when_idle = o.exit_when_idle;
  return l;
}

}  // namespace

client::client(client_options options, client_handler& h) {
  auto* s = new client_state;
  impl_ = s;
  s->opts = std::move(options);
  s->wanted = s->opts.backend;
  s->loops.push_back(std::make_unique<detail::loop>(0, loop_options_of(s->opts), nullptr, &h));
}

client::~client() { delete static_cast<client_state*>(impl_); }

expected<conn_id, std::string> client::connect(std::string_view url_text, const ws6455::client_options& handshake) {
  client_state& s = state(impl_);
  detail::loop& l = *s.loops[0];
  if (!l.has_backend()) {
    if (auto why = l.start_backend(s.wanted, &s.fallback_note); !why.empty()) return unexpected<std::string>{why};
    if (!s.fallback_note.empty()) std::fprintf(stderr, "ws6455: %s\n", s.fallback_note.c_str());
  }
  auto url = parse_ws_url(url_text);
  if (!url) return unexpected<std::string>{url.error()};
  if (url->secure && !l.has_tls()) {
    // One context for every wss:// connection of this client (CA store, verification).
    auto ctx = detail::tls_context::make_client(s.opts.ca_file, s.opts.insecure);
    if (!ctx) return unexpected<std::string>{"TLS: " + ctx.error()};
    l.set_tls(std::move(*ctx));
  }
  auto spec = std::make_unique<detail::client_spec>();
  spec->url = *url;
  spec->tls = url->secure;
  spec->handshake = handshake;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  // getaddrinfo wants the bare address: [::1] is written ::1.
  std::string host = url->host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = std::to_string(url->port);
  if (const int e = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); e != 0)
    return unexpected<std::string>{url->host + ": " + gai_strerror(e)};
  for (addrinfo* a = res; a; a = a->ai_next) {
    sockaddr_storage ss{};
    std::memcpy(&ss, a->ai_addr, a->ai_addrlen);
    spec->addrs.push_back(ss);
    spec->addr_lens.push_back(a->ai_addrlen);
  }
  freeaddrinfo(res);
  return l.connect(std::move(spec));
}

int client::run() {
  client_state& s = state(impl_);
  detail::loop& l = *s.loops[0];
  if (!l.has_backend()) {
    if (auto why = l.start_backend(s.wanted, &s.fallback_note); !why.empty()) {
      std::fprintf(stderr, "ws6455: %s\n", why.c_str());
      return -1;
    }
  }
  return l.run();
}

void client::request_stop() noexcept { impl_->loops[0]->request_stop(); }

void client::post(std::function<void()> task) { impl_->loops[0]->post(std::move(task)); }

}  // namespace ws6455::io
