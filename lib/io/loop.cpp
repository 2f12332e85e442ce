// The driver: what every backend shares, written once. See server.hpp and
// client.hpp for the contract; the comments here say why.
//
// Writes are batched: every path that may have produced output marks the
// connection dirty, and after each batch of backend events the dirty connections
// are serviced (one vectored write of the HTTP answer and the frames behind it,
// then the state changes: closing, transport close, resume after backpressure).
// Connections are destroyed only from loop code, never while a handler callback
// for them is running, so a handler may send to or close any handle at any time.
#include "io/loop.hpp"

#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "handshake/head_parser.hpp"
#include "io/tls.hpp"

namespace ws6455::io::detail {

namespace {

// A connection holding more than this (reassembly, output capacity) past its output
// buffer gives it back after release_delay_ms without input, its output drained.
constexpr std::size_t idle_storage_slack = 64u << 10;
constexpr std::int64_t release_delay_ms = 500;

// Accepts per wake-up are bounded by the backend; this is how long accepting
// pauses when the process is out of file descriptors.
constexpr std::int64_t accept_backoff_ms = 100;

// "HTTP/1.1 200 OK" ... for the adapter's plain HTTP answers. A content type with
// a CR, LF or other control character would split the response: refused.
std::string http_response(const http_reply& r, bool head) {
  const bool type_ok = std::all_of(r.content_type.begin(), r.content_type.end(), [](char ch) {
    const auto u = static_cast<unsigned char>(ch);
    return u >= 0x20 && u != 0x7f;
  });
  const int status = type_ok && r.status >= 200 && r.status <= 599 ? r.status : 500;
  const std::string_view body = status == r.status ? r.body : std::string_view("bad reply\n");
  std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
  out += ws6455::detail::reason_phrase(status);
  out += "\r\nContent-Type: ";
  out += status == r.status ? std::string_view(r.content_type) : std::string_view("text/plain; charset=utf-8");
  out += "\r\nContent-Length: " + std::to_string(body.size());
  out += "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
  if (!head) out += body;  // RFC 9110 §9.3.2: never a body in the answer to HEAD
  return out;
}

// The handshake failed only because this is ordinary HTTP: a GET or HEAD without
// "Upgrade: websocket".
bool is_plain_http(const server_handshake& hs) {
  const http_request& r = hs.request();
  return hs.state() == handshake_state::failed && (r.method() == "GET" || r.method() == "HEAD") &&
         r.header_count("Host") == 1 && !r.header_has_token("Upgrade", "websocket") &&
         (hs.status() == 400 || hs.status() == 405);
}

thread_local loop* running_loop = nullptr;

}  // namespace

loop* current_loop() noexcept { return running_loop; }

loop::loop(unsigned index, loop_options opts, handler* server_app, client_handler* client_app)
    : index_(index), opts_(std::move(opts)), server_app_(server_app), client_app_(client_app) {
  if (opts_.low_water > opts_.high_water) opts_.low_water = opts_.high_water;
  if (opts_.read_buffer_size < 4096) opts_.read_buffer_size = 4096;
  // The frame layer answers pings itself; keepalive depends on it.
  opts_.ws.auto_pong = true;
  // Storage is kept across messages (no allocation, no page faults per large message)
  // and given back when the connection idles (release_delay_ms, below).
  opts_.ws.retain_storage = true;
  dirty_.reserve(1024);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

loop::~loop() {
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].fd >= 0) ::close(slots_[i].fd);
  for (int fd : listen_fds_)
    if (fd >= 0) ::close(fd);
  be_.reset();  // before the wake fd: the backend may watch it
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (app_epfd_ >= 0) ::close(app_epfd_);
}

std::string loop::start_backend(io::backend wanted, std::string* fallback_note) {
  if (be_) return {};
  if (wake_fd_ < 0) return std::string("eventfd: ") + std::strerror(errno);
  if (wanted != io::backend::epoll) {
    auto u = make_uring_backend(*this);
    if (u) {
      be_ = std::move(*u);
    } else if (wanted == io::backend::io_uring) {
      return "io_uring: " + u.error();
    } else if (fallback_note) {
      *fallback_note = "io_uring unavailable (" + u.error() + "); using epoll";
    }
  }
  if (!be_) {
    auto e = make_epoll_backend(*this);
    if (!e) return "epoll: " + e.error();
    be_ = std::move(*e);
    read_buf_.resize(opts_.read_buffer_size);  // io_uring reads into its own buffer ring
  }
  be_->add_wakeup(wake_fd_);
  if (app_epfd_ >= 0) be_->add_app_fd(app_epfd_);
  for (int fd : listen_fds_) be_->add_listener(fd);
  return {};
}

void loop::set_tls(std::shared_ptr<tls_context> ctx) { tls_ctx_ = std::move(ctx); }

io::backend loop::kind() const noexcept { return be_ ? be_->kind() : io::backend::automatic; }

void loop::add_listener(int fd) {
  listen_fds_.push_back(fd);
  if (be_) be_->add_listener(fd);
}

// ------------------------------------------------------------ handles

conn_id loop::id_of(const conn& c) const noexcept {
  return (static_cast<conn_id>(index_) << 56) | (static_cast<conn_id>(c.gen & 0xffffffu) << 32) | c.slot;
}

conn* loop::lookup(conn_id id) noexcept {
  const auto slot = static_cast<std::uint32_t>(id & 0xffffffffu);
  const auto gen = static_cast<std::uint32_t>((id >> 32) & 0xffffffu);
  if (slot >= slots_.size()) return nullptr;
  conn& c = slots_[slot];
  return (c.gen & 0xffffffu) == gen && c.ph != phase::free && c.ph != phase::draining ? &c : nullptr;
}
const conn* loop::lookup(conn_id id) const noexcept { return const_cast<loop*>(this)->lookup(id); }
conn* loop::lookup_open(conn_id id) noexcept {
  conn* c = lookup(id);
  return c && c->ph == phase::open && c->ws ? c : nullptr;
}
conn* loop::slot_conn(std::uint32_t slot, std::uint32_t gen) noexcept {
  if (slot >= slots_.size()) return nullptr;
  conn& c = slots_[slot];
  return (c.gen & 0xffffffu) == (gen & 0xffffffu) && c.ph != phase::free ? &c : nullptr;
}

void loop::mark_dirty(conn& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_.push_back(id_of(c));
}

std::size_t loop::output_size(const conn& c) const noexcept {
  std::size_t n = c.ws ? c.ws->pending_output().size() : 0;
  if (c.x) {
    n += c.x->http_out.size() - c.x->http_pos;
    for (const auto& f : c.x->shared_out) n += f.msg->bytes().size() - f.sent;
  }
  if (c.tls) n += tls_[c.slot]->pending_bytes();  // encrypted, not yet written
  return n;
}

conn& loop::new_conn(int fd, phase ph) {
  std::uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.grow().slot = slot;
  }
  conn& c = slots_[slot];
  c.fd = fd;
  c.ph = ph;
  c.last_rx = c.last_ping = now_;
  ++st_.connections;
  return c;
}

// ------------------------------------------------------------ timers

std::int64_t loop::next_deadline(const conn& c) const noexcept {
  switch (c.ph) {
    case phase::connecting:
    case phase::handshake:
    case phase::http_reply:
    case phase::lingering:
      return c.deadline;
    case phase::open: {
      if (c.closing_seen) return c.deadline;
      std::int64_t d = no_deadline;
      if (opts_.idle_timeout > 0) d = c.last_rx + opts_.idle_timeout;
      if (opts_.ping_interval > 0) d = std::min(d, std::max(c.last_rx, c.last_ping) + opts_.ping_interval);
      // Only ahead: a release that could not give anything back must not spin.
      if (c.last_rx + release_delay_ms > now_ && holds_idle_storage(c, true))
        d = std::min(d, c.last_rx + release_delay_ms);
      return d;
    }
    case phase::free:
    case phase::draining:
      break;
  }
  return no_deadline;
}

// Storage worth giving back once the peer is quiet (checked only with the output
// drained: a pending write keeps it, and its completion re-arms the timer). `any`:
// however little (the timer, release_delay_ms after the peer's last input: an idle
// connection keeps no buffer); else only large storage (a write that drained for a
// peer quiet for long: a member that only receives broadcasts keeps its small
// output buffer rather than allocate and free one per message).
bool loop::holds_idle_storage(const conn& c, bool any) const noexcept {
  if (c.writing || output_size(c) != 0) return false;
  const std::size_t kept = c.x ? c.x->pending_in.capacity() : 0;
  const std::size_t above = any ? 0 : opts_.ws.write_buffer_size + idle_storage_slack;
  return c.ws->memory_usage() + kept > above || (c.tls && tls_[c.slot]->holds_storage());
}

void loop::release_idle_storage(conn& c) {
  const std::size_t before = c.ws->memory_usage();
  c.ws->release_storage();
#ifdef __GLIBC__
  // Large blocks freed in a thread's malloc arena stay mapped (glibc trims only the
  // main heap's top): hand them back to the kernel, or RSS never shows the release.
  // Rare: only after a connection that held megabytes went quiet.
  if (before - std::min(before, c.ws->memory_usage()) >= (1u << 20)) malloc_trim(0);
#endif
  if (c.x && c.x->pending_pos == c.x->pending_in.size()) {
    std::vector<std::byte>().swap(c.x->pending_in);
    c.x->pending_pos = 0;
  }
  if (c.tls) tls_[c.slot]->trim();
  trim_extra(c);
}

// Makes sure the heap wakes us no later than the connection's next deadline. An
// entry is never removed: a later deadline (data arrived) leaves the heap alone,
// the entry fires, and the connection re-arms; a stale stamp is skipped.
void loop::arm(conn& c) {
  const std::int64_t d = next_deadline(c);
  if (d >= c.timer_at) return;
  c.timer_at = d;
  timers_.push({d, c.slot, ++c.timer_stamp});
}

// A close was sent or received: from now on the peer has close_timeout to finish.
void loop::note_closing(conn& c) {
  if (c.closing_seen) return;
  c.closing_seen = true;
  c.deadline = now_ + opts_.close_timeout;
  arm(c);
}

void loop::run_timers() {
  while (!timers_.empty() && timers_.next() <= now_) {
    const auto e = timers_.pop();
    conn& c = slots_[e.slot];
    if (c.ph == phase::free || c.ph == phase::draining || e.stamp != c.timer_stamp) continue;
    c.timer_at = no_deadline;
    on_timer(c);
  }
}

void loop::on_timer(conn& c) {
  switch (c.ph) {
    case phase::connecting:
      if (now_ >= c.deadline) {
        c.x->client->last_error = "connect timed out";
        return try_next_address(c);
      }
      break;
    case phase::handshake:  // slowloris: no complete head in time
      if (now_ >= c.deadline) {
        if (c.is_client) return fail_client(c, "handshake timed out");
        return destroy(c);
      }
      break;
    case phase::http_reply:
    case phase::lingering:
      if (now_ >= c.deadline) return destroy(c);
      break;
    case phase::open:
      if (c.closing_seen) {
        if (now_ >= c.deadline) return destroy(c);  // the peer never finished
        break;
      }
      if (opts_.idle_timeout > 0 && now_ >= c.last_rx + opts_.idle_timeout) {
        (void)c.ws->close(1001, "idle timeout");
        note_closing(c);  // before arm(): the idle deadline is in the past
        mark_dirty(c);
        break;
      }
      if (holds_idle_storage(c, true) && now_ >= c.last_rx + release_delay_ms) release_idle_storage(c);
      if (opts_.ping_interval > 0 && now_ >= std::max(c.last_rx, c.last_ping) + opts_.ping_interval) {
        // Ignored when the output is full: the idle timeout still bounds a dead peer.
        (void)c.ws->send_ping();
        c.last_ping = now_;
        mark_dirty(c);
      }
      break;
    case phase::free:
    case phase::draining:
      return;
  }
  arm(c);
}

// ------------------------------------------------------------ lifetime

void loop::destroy(conn& c) {
  if (c.ph == phase::free || c.ph == phase::draining) return;
  // First, while the handle still resolves (user_data works; sends are dropped).
  if (c.opened) {
    c.opened = false;
    const conn_id id = id_of(c);
    std::string_view reason = c.x ? std::string_view(c.x->close_reason) : std::string_view();
    if (c.is_client) client_app_->on_close(id, c.close_code, reason);
    else server_app_->on_close(id, c.close_code, reason);
  }
  if (c.x && !c.x->topics.empty()) {
    const conn_id id = id_of(c);
    for (const auto& t : c.x->topics) {
      auto it = topics_.find(t);
      if (it == topics_.end()) continue;
      auto& m = it->second;
      m.erase(std::remove(m.begin(), m.end(), id), m.end());
      if (m.empty()) topics_.erase(it);
    }
  }
  --st_.connections;
  if (!be_->release(c)) {
    c.ph = phase::draining;  // the backend still reads our memory: on_released frees
    c.fd = -1;
    return;
  }
  c.fd = -1;
  free_slot(c);
}

void loop::on_released(conn& c) {
  if (c.ph == phase::draining) free_slot(c);
}

void loop::free_slot(conn& c) {
  c.ph = phase::free;
  c.gen = (c.gen + 1) & 0xffffffu;
  if (c.gen == 0) c.gen = 1;
  c.is_client = c.paused = c.opened = c.closing_seen = c.dirty = c.writing = c.reading = false;
  c.ops = c.bflags = 0;
  c.bdata = 0;
  c.timer_at = no_deadline;
  c.x.reset();
  c.ws.reset();
  c.close_code = 1006;
  c.user = nullptr;
  if (c.tls) {  // only now: an io_uring send may have read its ciphertext until the slot drained
    if (tls_[c.slot]->kernel_tx()) --st_.ktls;
    tls_[c.slot].reset();
    c.tls = false;
    --st_.tls;
  }
  // A stale id left in the dirty list no longer matches: the dirty pass skips it.
  free_slots_.push_back(c.slot);
  if (listening_paused_ && !stopping_ && accept_resume_at_ == no_deadline) resume_accepting();
}

// We are done writing: FIN, then read and drop until the peer's EOF (bounded by
// close_timeout). Closing at once could turn unread input into an RST that makes
// the peer's kernel discard our last bytes (the close frame, the HTTP answer).
void loop::begin_linger(conn& c) {
  ::shutdown(c.fd, SHUT_WR);
  c.ph = phase::lingering;
  c.paused = false;
  if (c.x) {
    c.x->pending_in.clear();
    c.x->pending_pos = 0;
  }
  c.deadline = now_ + opts_.close_timeout;
  arm(c);
}

// The extra state goes once nothing in it is needed: an idle connection holds none.
void loop::trim_extra(conn& c) {
  if (c.x && c.ph == phase::open && !c.writing && c.x->idle()) c.x.reset();
}

// ------------------------------------------------------------ accepting

void loop::pause_accepting(std::int64_t until) {
  if (!listening_paused_) be_->pause_accepting(true);
  listening_paused_ = true;
  accept_resume_at_ = until;
}

void loop::resume_accepting() {
  if (!listening_paused_ || stopping_) return;
  be_->pause_accepting(false);
  listening_paused_ = false;
  accept_resume_at_ = no_deadline;
}

void loop::on_accept_error(int err) {
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) pause_accepting(now_ + accept_backoff_ms);
}

void loop::on_accept(int fd) {
  if (stopping_) {
    ::close(fd);
    return;
  }
  // We batch writes ourselves; Nagle would only add latency to small frames.
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  conn& c = new_conn(fd, phase::handshake);
  if (tls_ctx_ && !tls_attach(c, {})) return destroy(c);
  c.extra().server_hs = std::make_unique<server_handshake>(opts_.limits);
  c.deadline = now_ + opts_.handshake_timeout;
  ++st_.accepted;
  be_->attach(c);
  c.reading = true;
  be_->set_reading(c, true);
  arm(c);
  if (st_.connections >= opts_.max_connections) pause_accepting(no_deadline);  // resumed when one goes
}

// ------------------------------------------------------------ connecting (client)

expected<conn_id, std::string> loop::connect(std::unique_ptr<client_spec> spec) {
  if (running_loop != this) now_ = monotonic_ms();  // before run(): the clock is not running yet
  conn& c = new_conn(-1, phase::connecting);
  c.is_client = true;
  c.extra().client = std::move(spec);
  c.opened = true;  // on_close is owed from here: a failed connect is reported there
  const conn_id id = id_of(c);
  try_next_address(c);
  return id;
}

void loop::try_next_address(conn& c) {
  client_spec& s = *c.x->client;
  if (c.fd >= 0) {
    // A failed attempt: drop its socket (the backend may still hold it).
    if (!be_->release(c)) {
      // io_uring: an operation is in flight on the old socket. Its completion for
      // this generation is ignored once we move on, so bump the generation now.
    }
    c.fd = -1;
  }
  while (s.next_addr < s.addrs.size()) {
    const auto& a = s.addrs[s.next_addr];
    const socklen_t len = s.addr_lens[s.next_addr];
    ++s.next_addr;
    const int fd = ::socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      s.last_error = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.fd = fd;
    c.ph = phase::connecting;
    c.deadline = now_ + opts_.connect_timeout;
    arm(c);
    be_->start_connect(c, reinterpret_cast<const sockaddr*>(&a), len);
    return;
  }
  fail_client(c, s.last_error.empty() ? "no address to connect to" : s.last_error);
}

void loop::on_connected(conn& c, int err) {
  if (c.ph != phase::connecting) return;
  client_spec& s = *c.x->client;
  if (err != 0) {
    s.last_error = std::string("connect: ") + std::strerror(err);
    return try_next_address(c);
  }
  ++st_.connected;
  conn_extra& x = *c.x;
  ws6455::client_options hs_opts = s.handshake;
  if (opts_.deflate && hs_opts.extensions.empty())
    hs_opts.extensions = permessage_deflate::make_offer(opts_.client_deflate);
  x.client_hs = std::make_unique<client_handshake>(s.url, hs_opts);
  if (x.client_hs->state() == handshake_state::failed)
    return fail_client(c, std::string(x.client_hs->reason()));
  if (s.tls && !c.tls && !tls_attach(c, s.url.host)) return;  // the request is written once TLS is up
  x.http_out.assign(x.client_hs->request());
  x.http_pos = 0;
  c.ph = phase::handshake;
  c.deadline = now_ + opts_.handshake_timeout;
  c.last_rx = now_;
  be_->attach(c);
  c.reading = true;
  be_->set_reading(c, true);
  arm(c);
  mark_dirty(c);
}

// A client connection that never opened: on_close with 1006 and the reason.
void loop::fail_client(conn& c, std::string reason) {
  c.close_code = 1006;
  c.extra().close_reason = std::move(reason);
  destroy(c);
}

// ------------------------------------------------------------ reading

void loop::on_bytes(conn& c, std::span<std::byte> in) {
  if (in.empty()) return;
  if (c.tls) return tls_input(c, in);
  on_plain_bytes(c, in);
}

void loop::on_plain_bytes(conn& c, std::span<std::byte> in) {
  c.last_rx = now_;
  switch (c.ph) {
    case phase::handshake:
      if (c.is_client) return on_client_handshake_bytes(c, in);
      return on_server_handshake_bytes(c, in);
    case phase::open:
      if (c.paused || (c.x && c.x->pending_pos < c.x->pending_in.size())) {
        // Bytes that were on their way when reading paused: kept, fed on resume.
        auto& p = c.extra().pending_in;
        p.insert(p.end(), in.begin(), in.end());
        return;
      }
      feed_frames(c, in);
      mark_dirty(c);
      return;
    case phase::lingering:  // dropped: we only wait for the EOF
    case phase::http_reply:
    case phase::connecting:
    case phase::free:
    case phase::draining:
      return;
  }
}

void loop::on_eof(conn& c) {
  if (c.ph == phase::open && c.ws) {
    event ev;
    if (c.ws->feed_eof(ev)) dispatch(c, ev);  // 1006 when no close was seen
    if (!flush(c)) return;                    // a last try for a queued close reply
  } else if (c.ph == phase::handshake && c.is_client) {
    return fail_client(c, "the server closed the connection during the handshake");
  }
  destroy(c);
}

void loop::on_transport_error(conn& c) {
  if (c.ph == phase::handshake && c.is_client) return fail_client(c, "connection reset during the handshake");
  destroy(c);
}

void loop::on_server_handshake_bytes(conn& c, std::span<std::byte> in) {
  server_handshake& hs = *c.x->server_hs;
  const std::size_t used = hs.feed(std::span<const std::byte>(in));
  if (hs.state() == handshake_state::need_more) return;
  mark_dirty(c);
  conn_extra& x = *c.x;
  if (hs.state() == handshake_state::request_ready) {
    accept_upgrade(c);
    if (c.ph == phase::free || c.ph == phase::draining) return;
    if (hs.state() == handshake_state::done) {
      x.http_out.assign(hs.response());
      x.http_pos = 0;
      x.server_hs.reset();
      c.ph = phase::open;
      c.opened = true;
      ++st_.upgraded;
      arm(c);
      // A client may send frames right behind its head, in the same packet.
      feed_frames(c, in.subspan(used));
      return;
    }
    c.ws.reset();  // rejected (or accept() refused its options)
  } else if (is_plain_http(hs)) {
    http_reply reply;
    if (server_app_->on_http(hs.request(), reply)) {
      x.http_out = http_response(reply, hs.request().method() == "HEAD");
      x.http_pos = 0;
      return enter_http_reply(c);
    }
  }
  x.http_out.assign(hs.response());  // 400/404/405/426/431 ...
  x.http_pos = 0;
  enter_http_reply(c);
}

void loop::enter_http_reply(conn& c) {
  c.x->server_hs.reset();
  c.ph = phase::http_reply;
  c.deadline = now_ + opts_.close_timeout;
  arm(c);
}

void loop::accept_upgrade(conn& c) {
  server_handshake& hs = *c.x->server_hs;
  config cfg = opts_.ws;
  cfg.deflate.reset();
  std::string extensions;
  if (opts_.deflate) {
    if (auto agreed = permessage_deflate::negotiate(hs.request().offered_extensions(), opts_.server_deflate)) {
      extensions = std::move(agreed->response);
      cfg.deflate = agreed->params;
    }
  }
  // The connection exists before on_open so that the handler may queue a greeting.
  c.ws.emplace(role::server, cfg);
  c.ph = phase::open;  // so that send_* from on_open finds it
  upgrade_reply reply;
  const conn_id id = id_of(c);
  server_app_->on_open(id, hs.request(), reply);
  c.ph = phase::handshake;
  if (!reply.accepted) {
    hs.reject(reply.status, reply.body, reply.headers);
    return;
  }
  reply.options.extensions = std::move(extensions);
  if (!hs.accept(reply.options)) server_app_->on_close(id, 1006, hs.reason());  // 400/500: it never opened
}

void loop::on_client_handshake_bytes(conn& c, std::span<std::byte> in) {
  client_handshake& hs = *c.x->client_hs;
  const std::size_t used = hs.feed(std::span<const std::byte>(in));
  if (hs.state() == handshake_state::need_more) return;
  if (hs.state() == handshake_state::failed) {
    std::string why = "handshake failed";
    if (hs.status() != 0) why += " (" + std::to_string(hs.status()) + ")";
    why += ": ";
    why += hs.reason();
    return fail_client(c, std::move(why));
  }
  config cfg = opts_.ws;
  cfg.deflate.reset();
  if (!hs.extensions().empty()) {
    auto params = permessage_deflate::validate_response(hs.extensions(), opts_.client_deflate);
    if (!params) return fail_client(c, "bad extension response: " + params.error());
    cfg.deflate = *params;
  }
  c.ws.emplace(role::client, cfg);
  c.ph = phase::open;
  ++st_.upgraded;
  c.x->client.reset();
  arm(c);
  mark_dirty(c);
  const conn_id id = id_of(c);
  client_app_->on_open(id, hs.response());
  if (c.ph != phase::open) return;
  c.x->client_hs.reset();  // after on_open: the response it saw lives there
  feed_frames(c, in.subspan(used));
}

// Hands `in` to the frame layer, handling events as they come. Stops (and keeps
// the rest) when the connection's output passes high_water: reading pauses.
void loop::feed_frames(conn& c, std::span<std::byte> in, bool from_pending) {
  while (!in.empty() && c.ws->want_read()) {
    if (output_size(c) > opts_.high_water) {
      // Backpressure: keep the unfed bytes (bounded by what was read) and stop
      // reading. Kept input is not copied again: only where to resume moves.
      auto& p = c.extra().pending_in;
      if (from_pending) c.x->pending_pos = static_cast<std::size_t>(in.data() - p.data());
      else p.insert(p.end(), in.begin(), in.end());
      if (!c.paused) ++st_.paused_reads;
      c.paused = true;
      return;
    }
    // Take no more input than the output has room for (at least 16 KiB): an
    // application that answers each message (echo) then stays near high_water, where
    // a batch of 64 large messages would overshoot it by 64 answers.
    const std::size_t out = output_size(c);
    const std::size_t room = std::max<std::size_t>(opts_.high_water - out, 16u << 10);
    // Near the limit, one event at a time, for the same reason.
    const std::span<event> evs = out > opts_.low_water ? std::span<event>(events_).first(1)
                                                       : std::span<event>(events_);
    const auto r = c.ws->feed(in.first(std::min(in.size(), room)), evs);
    for (std::size_t i = 0; i < r.events; ++i) {
      dispatch(c, evs[i]);
      if (c.ph != phase::open) return;  // never touch a freed slot
    }
    in = in.subspan(r.consumed);
  }
}

void loop::dispatch(conn& c, const event& ev) {
  switch (ev.type) {
    case event_type::text:
    case event_type::binary:
      if (c.is_client) client_app_->on_message(id_of(c), ev);
      else server_app_->on_message(id_of(c), ev);
      break;
    case event_type::close:
    case event_type::fail:
      c.close_code = ev.code;
      if (!ev.reason.empty()) c.extra().close_reason.assign(ev.reason);
      [[fallthrough]];
    case event_type::ping:  // answered by auto_pong; receiving it already counted as activity
    case event_type::pong:
      if (c.is_client) client_app_->on_event(id_of(c), ev);
      else server_app_->on_event(id_of(c), ev);
      break;
  }
}

// ------------------------------------------------------------ writing

// What goes out next, in order: the HTTP answer, then the connection's own frames
// interleaved with the frames queued by reference. Returns the iovec count.
int loop::gather(conn& c, iovec* iov, int max_iov) {
  int n = 0;
  if (c.x && c.x->http_pos < c.x->http_out.size())
    iov[n++] = {c.x->http_out.data() + c.x->http_pos, c.x->http_out.size() - c.x->http_pos};
  std::span<const std::byte> own;
  if (c.ws && c.ph == phase::open) own = c.ws->pending_output();
  std::size_t own_pos = 0;
  if (c.x && c.ph == phase::open) {
    for (const shared_frame& f : c.x->shared_out) {
      if (n + 2 > max_iov) return n;
      if (f.after > own_pos) {
        iov[n++] = {const_cast<std::byte*>(own.data() + own_pos), f.after - own_pos};
        own_pos = f.after;
      }
      const auto b = f.msg->bytes();
      iov[n++] = {const_cast<std::byte*>(b.data() + f.sent), b.size() - f.sent};
    }
  }
  if (own_pos < own.size() && n < max_iov)
    iov[n++] = {const_cast<std::byte*>(own.data() + own_pos), own.size() - own_pos};
  return n;
}

// Writes what is pending until done, blocked or in flight. Returns false when the
// connection was destroyed.
bool loop::flush(conn& c) {
  if (c.tls) return flush_tls(c);
  return flush_plain(c);
}

// The frames themselves to the socket: plain TCP, or kernel TLS (which encrypts them).
bool loop::flush_plain(conn& c) {
  while (!c.writing) {
    iovec iov[16];
    const int n = gather(c, iov, 16);
    if (n == 0) return true;
    const ssize_t w = be_->write(c, iov, n);
    if (w >= 0) {
      consume(c, static_cast<std::size_t>(w));
      continue;  // a short write is followed by write_blocked
    }
    if (w == write_blocked) {
      c.writing = true;
      return true;
    }
    if (w == write_submitted) {
      // The kernel reads these bytes later: they must not move meanwhile (the
      // shared frames are kept alive by their queue entries).
      if (c.ws && c.ph == phase::open) c.ws->pin_output();
      c.writing = true;
      return true;
    }
    destroy(c);
    return false;
  }
  return true;
}

// `n` bytes went out: take them off the HTTP answer, the own output and the
// shared frames, in the order gather() put them.
void loop::consume(conn& c, std::size_t n) {
  if (c.x && c.x->http_pos < c.x->http_out.size()) {
    const std::size_t from_http = std::min(n, c.x->http_out.size() - c.x->http_pos);
    c.x->http_pos += from_http;
    n -= from_http;
    if (c.x->http_pos == c.x->http_out.size()) {
      c.x->http_out = std::string();  // the head is sent: give its memory back
      c.x->http_pos = 0;
    }
  }
  if (c.x && !c.x->shared_out.empty()) {
    auto& q = c.x->shared_out;
    std::size_t done = 0;
    while (n && done < q.size()) {
      shared_frame& f = q[done];
      if (f.after) {  // own bytes before this frame
        const std::size_t k = std::min(n, f.after);
        c.ws->consume_output(k);
        for (std::size_t i = done; i < q.size(); ++i) q[i].after -= k;
        n -= k;
        continue;
      }
      const std::size_t k = std::min(n, f.msg->bytes().size() - f.sent);
      f.sent += k;
      n -= k;
      if (f.sent == f.msg->bytes().size()) ++done;
    }
    q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(done));
  }
  if (n && c.ws) c.ws->consume_output(n);
}

void loop::on_write_done(conn& c, ssize_t result) {
  c.writing = false;
  if (c.ph == phase::draining) return;
  if (result < 0) return on_transport_error(c);
  // Ciphertext went out; or, with kernel TLS, the frames themselves (which it encrypted).
  if (c.tls && !tls_[c.slot]->kernel_tx()) tls_[c.slot]->consume(static_cast<std::size_t>(result));
  else consume(c, static_cast<std::size_t>(result));
  mark_dirty(c);
}

void loop::update_reading(conn& c) {
  // A client keeps reading after a clean close: the server closes TCP first
  // (RFC 6455 §7.1.1) and its EOF ends the connection (the close timer bounds it).
  const bool want = c.ph == phase::handshake || c.ph == phase::lingering ||
                    (c.ph == phase::open && !c.paused &&
                     (c.ws->want_read() || (c.is_client && c.ws->state() == connection_state::closed)));
  if (want == c.reading) return;
  c.reading = want;
  be_->set_reading(c, want);
}

// After anything happened to a connection: write, then act on its new state.
void loop::service(conn& c) {
  for (int round = 0; round < 64; ++round) {
    if (!flush(c)) return;
    if (c.ph == phase::http_reply) {
      if (output_size(c) != 0) break;
      if (tls_close_notify(c)) continue;  // written before the FIN
      begin_linger(c);
      break;
    }
    if (c.ph != phase::open) break;
    connection& ws = *c.ws;
    if (ws.state() != connection_state::open) note_closing(c);
    if (ws.should_close_transport() && !c.writing && output_size(c) == 0) {
      if (tls_close_notify(c)) continue;  // written before the FIN
      begin_linger(c);
      break;
    }
    // A client after a clean close waits for the server's EOF (RFC 6455 §7.1.1), but
    // its TLS layer closes now: close_notify (RFC 8446 §6.1) once our close went out.
    if (c.is_client && ws.state() == connection_state::closed && !c.writing && output_size(c) == 0 &&
        tls_close_notify(c))
      continue;
    // Resume reading once the output drained below low_water: first the bytes
    // kept when we paused, which may produce more output (hence the loop).
    if (c.paused && output_size(c) <= opts_.low_water) {
      c.paused = false;
      if (c.x && c.x->pending_pos < c.x->pending_in.size()) {
        auto& p = c.x->pending_in;
        const std::span<std::byte> in(p.data() + c.x->pending_pos, p.size() - c.x->pending_pos);
        c.x->pending_pos = p.size();  // all fed, unless feed_frames pauses again (it sets it)
        feed_frames(c, in, true);
        if (c.ph != phase::open) return;
        if (c.x->pending_pos == p.size()) {  // keep the capacity for the next pause
          p.clear();
          c.x->pending_pos = 0;
        }
        continue;
      }
    }
    break;
  }
  if (c.ph == phase::free || c.ph == phase::draining) return;
  update_reading(c);
  if (c.ph == phase::open) {
    // Storage to give back once the peer is quiet: now, if it already is (a slow
    // write just finished), else by the timer.
    if (now_ >= c.last_rx + release_delay_ms && holds_idle_storage(c, false)) release_idle_storage(c);
    arm(c);
  }
  trim_extra(c);
}

void loop::service_dirty() {
  // Handlers may dirty more connections while we go: index, not iterators.
  for (std::size_t i = 0; i < dirty_.size(); ++i) {
    conn* c = lookup(dirty_[i]);
    if (!c) continue;
    c->dirty = false;
    service(*c);
  }
  dirty_.clear();
}

// ------------------------------------------------------------ broadcast and topics

std::size_t loop::broadcast(std::span<const conn_id> ids, const prepared_message& m) {
  std::size_t sent = 0;
  for (const conn_id id : ids) {
    if (loop_of(id) != index_) continue;
    conn* c = lookup_open(id);
    if (!c || c->is_client) continue;
    if (output_size(*c) > opts_.high_water) {  // a slow consumer: drop its copy
      ++st_.broadcast_dropped;
      continue;
    }
    if (c->ws->send_prepared(m) == send_result::ok) {
      mark_dirty(*c);
      ++sent;
    }
  }
  return sent;
}

// Below this a frame is copied into each recipient's output (cheaper than another
// iovec and a reference count); above it, it is written from the shared encoding.
constexpr std::size_t shared_frame_threshold = 2048;

bool loop::queue_shared(conn& c, const std::shared_ptr<const prepared_message>& m) {
  connection& ws = *c.ws;
  // The frame layer's own rules for a prepared frame (open, not inside a
  // fragmented message of ours, server role): a zero-length probe.
  if (ws.state() != connection_state::open || ws.which_role() != role::server || ws.sending_fragmented()) return false;
  auto& q = c.extra().shared_out;
  q.push_back({m, ws.pending_output().size(), 0});
  // `after` counts the bytes queued so far: they must keep their sizes (the frame
  // layer may otherwise replace an unsent pong by a newer one of another size, RFC
  // 6455 §5.5.3). Not pin_output(): that one is for the write being submitted.
  ws.hold_output();
  return true;
}

std::size_t loop::broadcast(std::span<const conn_id> ids, const std::shared_ptr<const prepared_message>& m) {
  if (m->bytes().size() < shared_frame_threshold) return broadcast(ids, *m);
  std::size_t sent = 0;
  for (const conn_id id : ids) {
    if (loop_of(id) != index_) continue;
    conn* c = lookup_open(id);
    if (!c || c->is_client) continue;
    if (output_size(*c) > opts_.high_water) {
      ++st_.broadcast_dropped;
      continue;
    }
    if (queue_shared(*c, m)) {
      mark_dirty(*c);
      ++sent;
    }
  }
  return sent;
}

void loop::subscribe(conn_id id, std::string_view topic) {
  conn* c = lookup(id);
  if (!c) return;
  auto& mine = c->extra().topics;
  if (std::find(mine.begin(), mine.end(), topic) != mine.end()) return;
  mine.emplace_back(topic);
  topics_[std::string(topic)].push_back(id);
}

void loop::unsubscribe(conn_id id, std::string_view topic) {
  conn* c = lookup(id);
  if (!c || !c->x) return;
  auto& mine = c->x->topics;
  const auto at = std::find(mine.begin(), mine.end(), topic);
  if (at == mine.end()) return;
  mine.erase(at);
  auto it = topics_.find(std::string(topic));
  if (it == topics_.end()) return;
  auto& m = it->second;
  m.erase(std::remove(m.begin(), m.end(), id), m.end());
  if (m.empty()) topics_.erase(it);
}

std::size_t loop::deliver(std::string_view topic, const std::shared_ptr<const prepared_message>& m) {
  auto it = topics_.find(std::string(topic));
  return it == topics_.end() ? 0 : broadcast(it->second, m);
}

// ------------------------------------------------------------ stop, wake, post

void loop::request_stop() noexcept {
  stop_requested_.store(true, std::memory_order_relaxed);
  // write(2) on an eventfd is async-signal-safe; the loop does the rest.
  const std::uint64_t one = 1;
  if (wake_fd_ >= 0) {
    const ssize_t r = ::write(wake_fd_, &one, sizeof one);
    (void)r;
  }
}

void loop::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(task));
  }
  const std::uint64_t one = 1;
  const ssize_t r = ::write(wake_fd_, &one, sizeof one);
  (void)r;
}

void loop::on_wake() {
  std::uint64_t v;
  while (::read(wake_fd_, &v, sizeof v) > 0) {
  }
  run_posted();
  if (stop_requested_.load(std::memory_order_relaxed)) begin_stop();
}

void loop::run_posted() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void loop::begin_stop() {
  if (stopping_) return;
  stopping_ = true;
  stop_deadline_ = now_ + opts_.close_timeout;
  if (!listen_fds_.empty()) {
    if (!listening_paused_) be_->pause_accepting(true);  // no new connections
    listening_paused_ = true;
  }
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    conn& c = slots_[i];
    if (c.ph == phase::handshake || c.ph == phase::connecting) {
      if (c.is_client) fail_client(c, "stopped");
      else destroy(c);
    } else if (c.ph == phase::open) {
      if (c.ws->state() == connection_state::open)
        (void)c.ws->close(c.is_client ? 1000 : 1001, c.is_client ? "" : "server shutting down");
      mark_dirty(c);
    }
  }
}

int loop::run() {
  if (!be_) return -1;
  running_loop = this;
  struct reset_running {
    ~reset_running() { running_loop = nullptr; }
  } reset;
  now_ = monotonic_ms();
  for (;;) {
    run_posted();
    service_dirty();
    if (stopping_ && (st_.connections == 0 || now_ >= stop_deadline_)) break;
    if (!stopping_ && opts_.exit_when_idle && st_.connections == 0) break;
    std::int64_t wake = std::min({timers_.next(), accept_resume_at_, next_app_deadline()});
    if (stopping_) wake = std::min(wake, stop_deadline_);
    if (!be_->wait(wake, now_)) return -1;
    now_ = monotonic_ms();
    service_dirty();
    run_app_timers();
    run_timers();
    service_dirty();  // output the timers produced (pings, closes)
    if (listening_paused_ && now_ >= accept_resume_at_) resume_accepting();
  }
  // Past the deadline: whoever is left is dropped.
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].ph != phase::free && slots_[i].ph != phase::draining) destroy(slots_[i]);
  for (int& fd : listen_fds_) {
    ::close(fd);
    fd = -1;
  }
  // The other loops still stopping may post work here (their connections' on_close):
  // it runs, with the application's descriptors and timers, until they are done.
  while (others_running_ && others_running_->load() > 0) {
    if (!be_->wait(next_app_deadline(), now_)) break;
    now_ = monotonic_ms();
    run_posted();
    run_app_timers();
  }
  run_posted();
  // io_uring: wait (bounded) for the cancelled operations, so no memory is read after.
  for (int i = 0; i < 100; ++i) {
    bool draining = false;
    for (std::size_t s = 0; s < slots_.size() && !draining; ++s) draining = slots_[s].ph == phase::draining;
    if (!draining) break;
    now_ = monotonic_ms();
    if (!be_->wait(now_ + 10, now_)) break;
  }
  return 0;
}

}  // namespace ws6455::io::detail
