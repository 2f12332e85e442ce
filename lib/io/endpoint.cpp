// The calls on one connection, shared by server and client: each goes to the
// connection's own loop.
#include "io/endpoint.hpp"

#include <cerrno>

namespace ws6455::io {

std::string_view to_string(backend b) noexcept {
  switch (b) {
    case backend::automatic: return "automatic";
    case backend::epoll: return "epoll";
    case backend::io_uring: return "io_uring";
  }
  return "?";
}

endpoint::~endpoint() = default;

namespace {
template <class F>
send_result with_open(const endpoint::impl* s, conn_id id, F f) {
  detail::loop* l = s ? s->loop_for(id) : nullptr;
  detail::conn* c = l ? l->lookup_open(id) : nullptr;
  if (!c) return send_result::closed;
  const send_result r = f(*c->ws);
  if (r == send_result::ok) l->mark_dirty(*c);  // the loop writes it after this callback
  return r;
}
}  // namespace

send_result endpoint::send_text(conn_id id, std::string_view text, bool trusted_utf8) {
  return with_open(impl_, id, [&](connection& ws) { return ws.send_text(text, trusted_utf8); });
}
send_result endpoint::send_binary(conn_id id, std::span<const std::byte> data) {
  return with_open(impl_, id, [&](connection& ws) { return ws.send_binary(data); });
}
send_result endpoint::send_ping(conn_id id, std::span<const std::byte> data) {
  return with_open(impl_, id, [&](connection& ws) { return ws.send_ping(data); });
}
send_result endpoint::close(conn_id id, std::uint16_t code, std::string_view reason) {
  return with_open(impl_, id, [&](connection& ws) { return ws.close(code, reason); });
}

std::size_t endpoint::broadcast(std::span<const conn_id> ids, const prepared_message& m) {
  if (!impl_ || ids.empty()) return 0;
  detail::loop* l = impl_->loop_for(ids.front());
  return l ? l->broadcast(ids, m) : 0;
}

endpoint::watch_id endpoint::watch(unsigned loop, int fd, unsigned events, std::function<void(unsigned)> on_ready) {
  detail::loop* l = impl_ ? impl_->loop_at(loop) : nullptr;
  if (!l) {
    errno = EINVAL;
    return 0;
  }
  return l->add_watch(fd, events, std::move(on_ready));
}

bool endpoint::rewatch(watch_id w, unsigned events) {
  detail::loop* l = impl_ ? impl_->loop_for(w) : nullptr;
  return l && l->set_watch(w, events);
}

void endpoint::unwatch(watch_id w) {
  if (detail::loop* l = impl_ ? impl_->loop_for(w) : nullptr) l->remove_watch(w);
}

endpoint::timer_id endpoint::call_after(unsigned loop, std::chrono::milliseconds delay, std::function<void()> fn) {
  detail::loop* l = impl_ ? impl_->loop_at(loop) : nullptr;
  return l ? l->add_app_timer(delay.count(), std::move(fn)) : 0;
}

void endpoint::cancel_timer(timer_id t) {
  if (detail::loop* l = impl_ ? impl_->loop_for(t) : nullptr) l->cancel_app_timer(t);
}

void endpoint::post(unsigned loop, std::function<void()> task) {
  if (detail::loop* l = impl_ ? impl_->loop_at(loop) : nullptr) l->post(std::move(task));
}

connection* endpoint::find(conn_id id) noexcept {
  detail::loop* l = impl_ ? impl_->loop_for(id) : nullptr;
  detail::conn* c = l ? l->lookup_open(id) : nullptr;
  if (!c) return nullptr;
  l->mark_dirty(*c);  // whatever the caller queues gets written
  return &*c->ws;
}

std::size_t endpoint::buffered_amount(conn_id id) const noexcept {
  detail::loop* l = impl_ ? impl_->loop_for(id) : nullptr;
  const detail::conn* c = l ? l->lookup(id) : nullptr;
  return c ? l->output_size(*c) : 0;
}

void endpoint::set_user_data(conn_id id, void* p) noexcept {
  detail::loop* l = impl_ ? impl_->loop_for(id) : nullptr;
  if (detail::conn* c = l ? l->lookup(id) : nullptr) c->user = p;
}
void* endpoint::user_data(conn_id id) const noexcept {
  detail::loop* l = impl_ ? impl_->loop_for(id) : nullptr;
  const detail::conn* c = l ? l->lookup(id) : nullptr;
  return c ? c->user : nullptr;
}

io_stats endpoint::stats() const noexcept {
  io_stats s;
  if (!impl_) return s;
  for (const auto& l : impl_->loops) {
    const auto& k = l->counters();
    s.connections += k.connections.load(std::memory_order_relaxed);
    s.accepted += k.accepted.load(std::memory_order_relaxed);
    s.connected += k.connected.load(std::memory_order_relaxed);
    s.upgraded += k.upgraded.load(std::memory_order_relaxed);
    s.broadcast_dropped += k.broadcast_dropped.load(std::memory_order_relaxed);
    s.paused_reads += k.paused_reads.load(std::memory_order_relaxed);
    s.tls += k.tls.load(std::memory_order_relaxed);
    s.tls_handshakes += k.tls_handshakes.load(std::memory_order_relaxed);
    s.ktls += k.ktls.load(std::memory_order_relaxed);
    s.ktls_switched += k.ktls_switched.load(std::memory_order_relaxed);
    s.tls_failures += k.tls_failures.load(std::memory_order_relaxed);
  }
  return s;
}

std::string_view endpoint::transport(conn_id id) const noexcept {
  detail::loop* l = impl_ ? impl_->loop_for(id) : nullptr;
  const detail::conn* c = l ? l->lookup(id) : nullptr;
  if (!c) return {};
  if (!c->tls) return "tcp";
  const detail::tls_session* t = l->tls_of(*c);
  return t && t->kernel_tx() ? "kernel TLS" : "user-space TLS";
}

backend endpoint::active_backend() const noexcept {
  if (!impl_ || impl_->loops.empty() || !impl_->loops[0]->has_backend()) return impl_ ? impl_->wanted : backend::automatic;
  return impl_->loops[0]->kind();
}

}  // namespace ws6455::io
