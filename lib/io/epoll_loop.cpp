// The epoll adapter: real sockets driven through the sans-I/O core.
// See include/ws6455/io/epoll_server.hpp for the contract; the comments here say why.
//
// Level-triggered epoll: a readable connection is read once per wake-up (one
// recv of up to read_buffer_size), which keeps the loop fair between connections
// without an edge-triggered "read until EAGAIN" loop. EPOLLIN is in the interest
// set only while we want to read; EPOLLOUT only while output is pending.
//
// Writes are batched: every path that may have produced output marks the
// connection dirty, and after each epoll batch the dirty connections are flushed
// (one sendmsg for the 101 response and the frames behind it). The same pass
// notices state changes (closing, transport close, resume after backpressure).
// Connections are destroyed only from loop code, never while a handler callback
// is running, so a handler may send to or close any handle at any time.
#include "io/epoll_loop.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "ws6455/io/epoll_server.hpp"

namespace ws6455::io {

namespace {

enum class phase : std::uint8_t {
  free,        // an unused slot
  handshake,   // reading the request head
  http_reply,  // writing an HTTP answer (error, page); then lingering
  open,        // a WebSocket (also while closing)
  lingering,   // we sent FIN (shutdown SHUT_WR); reading and dropping until the peer's EOF
};

// Events per feed() call. A full array makes feed() stop early; we call it again.
constexpr std::size_t events_per_feed = 64;
// Per epoll_wait.
constexpr int max_epoll_events = 256;
// Accepts per listening-socket wake-up, so a connect storm cannot starve the others.
constexpr int accepts_per_wake = 64;
// How long accepting pauses when the process is out of file descriptors.
constexpr std::int64_t accept_backoff_ms = 100;

// The tag that marks the listening socket and the stop eventfd in epoll data.
constexpr std::uint64_t listen_tag = ~std::uint64_t{0};
constexpr std::uint64_t wake_tag = ~std::uint64_t{0} - 1;

struct conn_state {
  int fd = -1;
  std::uint32_t gen = 1;  // bumped when the slot is freed: stale ids stop matching
  phase ph = phase::free;
  std::uint32_t interest = 0;  // what epoll watches now
  bool dirty = false;          // in the dirty list
  bool paused = false;         // not read because of backpressure
  bool opened = false;         // on_open accepted it: on_close is owed
  bool closing_seen = false;   // the close timer runs
  std::int64_t last_rx = 0;
  std::int64_t last_ping = 0;
  std::int64_t phase_deadline = 0;            // handshake, close and linger deadlines
  std::int64_t timer_at = detail::no_deadline;  // the live heap entry's deadline
  std::uint32_t timer_stamp = 0;
  std::unique_ptr<server_handshake> hs;  // only during the handshake
  std::optional<connection> ws;
  std::string http_out;  // the handshake's answer, written before any frame
  std::size_t http_pos = 0;
  // Input left unfed when reading paused mid-buffer (at most one read's worth).
  std::vector<std::byte> pending_in;
  std::uint16_t close_code = 1006;
  std::string close_reason;
  void* user = nullptr;
};

std::size_t output_size(const conn_state& c) noexcept {
  return (c.http_out.size() - c.http_pos) + (c.ws ? c.ws->pending_output().size() : 0);
}

}  // namespace

struct epoll_server::impl {
  impl(server_options o, handler& h) : opts(std::move(o)), app(h) {
    if (opts.low_water > opts.high_water) opts.low_water = opts.high_water;
    if (opts.read_buffer_size < 4096) opts.read_buffer_size = 4096;
    read_buf.resize(opts.read_buffer_size);
    dirty.reserve(1024);
    // The frame layer answers pings itself; keep it that way (keepalive depends on it).
    opts.ws.auto_pong = true;
  }
  ~impl() {
    for (auto& c : slots)
      if (c->fd >= 0) ::close(c->fd);
    if (listen_fd >= 0) ::close(listen_fd);
    if (wake_fd >= 0) ::close(wake_fd);
    if (epfd >= 0) ::close(epfd);
  }

  server_options opts;
  handler& app;
  int epfd = -1;
  int listen_fd = -1;
  int wake_fd = -1;
  std::uint16_t bound_port = 0;
  bool listening_paused = false;
  std::int64_t accept_resume_at = detail::no_deadline;
  bool stopping = false;
  std::int64_t stop_deadline = detail::no_deadline;
  std::int64_t now = 0;

  std::vector<std::unique_ptr<conn_state>> slots;
  std::vector<std::uint32_t> free_slots;
  std::vector<conn_id> dirty;
  detail::deadline_heap timers;
  std::vector<std::byte> read_buf;
  std::array<event, events_per_feed> events{};
  server_stats st;

  // ------------------------------------------------------------ handles

  static conn_id make_id(std::uint32_t slot, std::uint32_t gen) noexcept {
    return (static_cast<conn_id>(gen) << 32) | slot;
  }
  static conn_id id_of(const conn_state& c, std::uint32_t slot) noexcept { return make_id(slot, c.gen); }

  conn_state* lookup(conn_id id) const noexcept {
    const auto slot = static_cast<std::uint32_t>(id & 0xffffffffu);
    const auto gen = static_cast<std::uint32_t>(id >> 32);
    if (slot >= slots.size()) return nullptr;
    conn_state* c = slots[slot].get();
    return c->gen == gen && c->ph != phase::free ? c : nullptr;
  }
  conn_state* lookup_open(conn_id id) const noexcept {
    conn_state* c = lookup(id);
    return c && c->ph == phase::open && c->ws ? c : nullptr;
  }

  void mark_dirty(conn_state& c, conn_id id) {
    if (c.dirty) return;
    c.dirty = true;
    dirty.push_back(id);
  }

  // ------------------------------------------------------------ epoll interest

  void set_interest(conn_state& c, conn_id id) {
    std::uint32_t want = 0;
    const bool reads = c.ph == phase::handshake || c.ph == phase::lingering ||
                       (c.ph == phase::open && !c.paused && c.ws->want_read());
    if (reads) want |= EPOLLIN;
    if (output_size(c) != 0) want |= EPOLLOUT;
    if (want == c.interest) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = id;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
    c.interest = want;
  }

  // ------------------------------------------------------------ timers

  std::int64_t next_deadline(const conn_state& c) const noexcept {
    switch (c.ph) {
      case phase::handshake:
      case phase::http_reply:
      case phase::lingering:
        return c.phase_deadline;
      case phase::open: {
        if (c.closing_seen) return c.phase_deadline;
        std::int64_t d = detail::no_deadline;
        if (opts.idle_timeout.count() > 0) d = c.last_rx + opts.idle_timeout.count();
        if (opts.ping_interval.count() > 0)
          d = std::min(d, std::max(c.last_rx, c.last_ping) + opts.ping_interval.count());
        return d;
      }
      case phase::free:
        break;
    }
    return detail::no_deadline;
  }

  // Makes sure the heap wakes us no later than the connection's next deadline.
  void arm(conn_state& c, std::uint32_t slot) {
    const std::int64_t d = next_deadline(c);
    if (d >= c.timer_at) return;  // the live entry fires earlier: it re-arms then
    c.timer_at = d;
    timers.push({d, slot, ++c.timer_stamp});
  }

  // A close was sent or received: from now on the peer has close_timeout to finish.
  void note_closing(conn_state& c, std::uint32_t slot) {
    if (c.closing_seen) return;
    c.closing_seen = true;
    c.phase_deadline = now + opts.close_timeout.count();
    arm(c, slot);
  }

  void run_timers() {
    while (!timers.empty() && timers.next() <= now) {
      const auto e = timers.pop();
      conn_state& c = *slots[e.slot];
      if (c.ph == phase::free || e.stamp != c.timer_stamp) continue;  // stale
      c.timer_at = detail::no_deadline;
      on_timer(c, e.slot);
    }
  }

  void on_timer(conn_state& c, std::uint32_t slot) {
    const conn_id id = id_of(c, slot);
    switch (c.ph) {
      case phase::handshake:  // slowloris: no complete head in time
      case phase::http_reply:
      case phase::lingering:
        if (now >= c.phase_deadline) return destroy(c, slot);
        break;
      case phase::open:
        if (c.closing_seen) {
          if (now >= c.phase_deadline) return destroy(c, slot);  // the peer never finished
          break;
        }
        if (opts.idle_timeout.count() > 0 && now >= c.last_rx + opts.idle_timeout.count()) {
          (void)c.ws->close(1001, "idle timeout");
          note_closing(c, slot);  // before arm(): the idle deadline is in the past
          mark_dirty(c, id);
          break;
        }
        if (opts.ping_interval.count() > 0 && now >= std::max(c.last_rx, c.last_ping) + opts.ping_interval.count()) {
          // Ignored when the output is full: the idle timeout still bounds a dead peer.
          (void)c.ws->send_ping();
          c.last_ping = now;
          mark_dirty(c, id);
        }
        break;
      case phase::free:
        return;
    }
    arm(c, slot);
  }

  // ------------------------------------------------------------ lifetime

  void destroy(conn_state& c, std::uint32_t slot) {
    // First, while the handle still resolves (user_data works; sends are dropped).
    if (c.opened) {
      c.opened = false;
      app.on_close(id_of(c, slot), c.close_code, c.close_reason);
    }
    ::close(c.fd);  // also removes it from the epoll set
    c.fd = -1;
    c.ph = phase::free;
    c.gen = c.gen + 1 == 0 ? 1 : c.gen + 1;
    c.interest = 0;
    c.paused = c.opened = c.closing_seen = c.dirty = false;
    c.timer_at = detail::no_deadline;
    c.hs.reset();
    c.ws.reset();
    c.http_out = std::string();
    c.http_pos = 0;
    c.pending_in = std::vector<std::byte>();
    c.close_code = 1006;
    c.close_reason.clear();
    c.user = nullptr;
    // A stale id left in the dirty list no longer matches: the dirty pass skips it.
    free_slots.push_back(slot);
    --st.connections;
    if (listening_paused && !stopping && accept_resume_at == detail::no_deadline) resume_accepting();
  }

  // We are done writing: FIN, then read and drop until the peer's EOF (bounded by
  // close_timeout). Closing at once could turn unread input into an RST that makes
  // the peer's kernel discard our last bytes (the close frame, the HTTP answer).
  void begin_linger(conn_state& c, std::uint32_t slot) {
    ::shutdown(c.fd, SHUT_WR);
    c.ph = phase::lingering;
    c.paused = false;
    c.pending_in.clear();
    c.phase_deadline = now + opts.close_timeout.count();
    arm(c, slot);
  }

  // ------------------------------------------------------------ accepting

  void pause_accepting(std::int64_t until) {
    if (!listening_paused) epoll_ctl(epfd, EPOLL_CTL_DEL, listen_fd, nullptr);
    listening_paused = true;
    accept_resume_at = until;
  }
  void resume_accepting() {
    if (!listening_paused || listen_fd < 0) return;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = listen_tag;
    epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
    listening_paused = false;
    accept_resume_at = detail::no_deadline;
  }

  void on_acceptable() {
    for (int i = 0; i < accepts_per_wake; ++i) {
      if (st.connections >= opts.max_connections) {
        pause_accepting(detail::no_deadline);  // resumed when one goes away
        return;
      }
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
          pause_accepting(now + accept_backoff_ms);  // level-triggered: would spin otherwise
        return;  // EAGAIN, ECONNABORTED, EINTR ...
      }
      // We batch writes ourselves; Nagle would only add latency to small frames.
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::uint32_t slot;
      if (!free_slots.empty()) {
        slot = free_slots.back();
        free_slots.pop_back();
      } else {
        slot = static_cast<std::uint32_t>(slots.size());
        slots.push_back(std::make_unique<conn_state>());
      }
      conn_state& c = *slots[slot];
      c.fd = fd;
      c.ph = phase::handshake;
      c.hs = std::make_unique<server_handshake>(opts.limits);
      c.last_rx = c.last_ping = now;
      c.phase_deadline = now + opts.handshake_timeout.count();
      c.interest = EPOLLIN;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = id_of(c, slot);
      if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ++st.connections;
        destroy(c, slot);
        continue;
      }
      ++st.connections;
      ++st.accepted;
      arm(c, slot);
    }
  }

  // ------------------------------------------------------------ reading

  void on_ready(conn_id id, std::uint32_t events_mask) {
    conn_state* cp = lookup(id);
    if (!cp) return;  // destroyed earlier in this batch
    conn_state& c = *cp;
    const auto slot = static_cast<std::uint32_t>(id & 0xffffffffu);
    if (events_mask & EPOLLOUT) mark_dirty(c, id);  // the dirty pass writes
    if (events_mask & EPOLLERR) return destroy(c, slot);
    // No EPOLLRDHUP: it is level-triggered too and would spin while we do not read.
    // A half-close is seen as recv() == 0 once we read again.
    if (events_mask & (EPOLLIN | EPOLLHUP)) {
      if (c.interest & EPOLLIN) {
        on_readable(c, slot, id);
      } else if (events_mask & EPOLLHUP) {
        return destroy(c, slot);  // both directions gone and we are not reading: nothing to wait for
      }
    }
  }

  void on_readable(conn_state& c, std::uint32_t slot, conn_id id) {
    const ssize_t n = ::recv(c.fd, read_buf.data(), read_buf.size(), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      return destroy(c, slot);  // ECONNRESET ...
    }
    if (n == 0) return on_eof(c, slot, id);
    c.last_rx = now;
    std::span<std::byte> in(read_buf.data(), static_cast<std::size_t>(n));
    switch (c.ph) {
      case phase::handshake:
        return on_handshake_bytes(c, slot, id, in);
      case phase::open:
        feed_frames(c, id, in);
        mark_dirty(c, id);
        return;
      case phase::lingering:  // dropped: we only wait for the EOF
      case phase::http_reply:
      case phase::free:
        return;
    }
  }

  void on_eof(conn_state& c, std::uint32_t slot, conn_id id) {
    if (c.ph == phase::open && c.ws) {
      event ev;
      if (c.ws->feed_eof(ev)) dispatch(c, id, ev);  // 1006 when no close was seen
      if (!flush(c, slot, id)) return;              // a last try for a queued close reply
    }
    destroy(c, slot);
  }

  void on_handshake_bytes(conn_state& c, std::uint32_t slot, conn_id id, std::span<std::byte> in) {
    server_handshake& hs = *c.hs;
    const std::size_t used = hs.feed(std::span<const std::byte>(in));
    if (hs.state() == handshake_state::need_more) return;
    mark_dirty(c, id);
    if (hs.state() == handshake_state::request_ready) {
      accept_upgrade(c, slot, id);
      if (hs.state() == handshake_state::done) {
        c.http_out.assign(hs.response());
        c.http_pos = 0;
        c.hs.reset();
        c.ph = phase::open;
        c.opened = true;
        ++st.upgraded;
        arm(c, slot);
        // A client may send frames right behind its head, in the same packet.
        feed_frames(c, id, in.subspan(used));
        return;
      }
      c.ws.reset();  // rejected (or accept() refused its options)
    } else if (is_plain_get(hs)) {
      http_reply reply;
      if (app.on_http(hs.request(), reply)) {
        c.http_out = http_response(reply);
        c.http_pos = 0;
        return enter_http_reply(c, slot);
      }
    }
    c.http_out.assign(hs.response());  // 400/404/405/426/431 ...
    c.http_pos = 0;
    enter_http_reply(c, slot);
  }

  void enter_http_reply(conn_state& c, std::uint32_t slot) {
    c.hs.reset();
    c.ph = phase::http_reply;
    c.phase_deadline = now + opts.close_timeout.count();
    arm(c, slot);
  }

  // The handshake failed only because this is ordinary HTTP: a GET without
  // "Upgrade: websocket". (A head with a malformed header line may look like that
  // too; answering it with a page instead of a 400 is harmless.)
  static bool is_plain_get(const server_handshake& hs) {
    const http_request& r = hs.request();
    return hs.state() == handshake_state::failed && hs.status() == 400 && r.method() == "GET" &&
           r.header_count("Host") == 1 && !r.header_has_token("Upgrade", "websocket");
  }

  static std::string http_response(const http_reply& r) {
    const char* phrase = r.status == 200 ? " OK" : r.status == 404 ? " Not Found" : r.status < 400 ? " OK" : " Error";
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + phrase;
    out += "\r\nContent-Type: ";
    out += r.content_type;
    out += "\r\nContent-Length: " + std::to_string(r.body.size());
    out += "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
    out += r.body;
    return out;
  }

  void accept_upgrade(conn_state& c, std::uint32_t slot, conn_id id) {
    server_handshake& hs = *c.hs;
    config cfg = opts.ws;
    cfg.deflate.reset();
    std::string extensions;
    if (opts.deflate) {
      if (auto agreed = permessage_deflate::negotiate(hs.request().offered_extensions(), opts.deflate_options)) {
        extensions = std::move(agreed->response);
        cfg.deflate = agreed->params;
      }
    }
    // The connection exists before on_open so that the handler may queue a greeting.
    c.ws.emplace(role::server, cfg);
    c.ph = phase::open;  // so that send_* from on_open finds it
    upgrade_reply reply;
    app.on_open(id, hs.request(), reply);
    c.ph = phase::handshake;
    (void)slot;
    if (!reply.accepted) {
      hs.reject(reply.status, reply.body, reply.headers);
      return;
    }
    reply.options.extensions = std::move(extensions);
    if (!hs.accept(reply.options)) app.on_close(id, 1006, hs.reason());  // 400/500: it never opened
  }

  // Hands `in` to the frame layer, handling events as they come. Stops (and keeps
  // the rest) when the connection's output passes high_water: reading pauses.
  void feed_frames(conn_state& c, conn_id id, std::span<std::byte> in) {
    while (!in.empty() && c.ws->want_read()) {
      if (output_size(c) > opts.high_water) {
        // Backpressure: keep the unfed bytes (bounded by one read) and stop reading.
        c.pending_in.assign(in.begin(), in.end());
        if (!c.paused) ++st.paused_reads;
        c.paused = true;
        return;
      }
      const auto r = c.ws->feed(in, events);
      for (std::size_t i = 0; i < r.events; ++i) {
        dispatch(c, id, events[i]);
        if (c.ph != phase::open) return;  // cannot happen today; never touch a freed slot
      }
      in = in.subspan(r.consumed);
    }
  }

  void dispatch(conn_state& c, conn_id id, const event& ev) {
    switch (ev.type) {
      case event_type::text:
      case event_type::binary:
        app.on_message(id, ev);
        break;
      case event_type::close:
      case event_type::fail:
        c.close_code = ev.code;
        c.close_reason.assign(ev.reason);
        break;
      case event_type::ping:  // answered by auto_pong; receiving it already counted as activity
      case event_type::pong:
        break;
    }
  }

  // ------------------------------------------------------------ writing

  // Writes what is pending (the HTTP answer, then frames) until done or EAGAIN.
  // Returns false when the connection was destroyed.
  bool flush(conn_state& c, std::uint32_t slot, conn_id) {
    for (;;) {
      iovec iov[2];
      int n_iov = 0;
      const std::size_t http_left = c.http_out.size() - c.http_pos;
      if (http_left) iov[n_iov++] = {c.http_out.data() + c.http_pos, http_left};
      std::span<const std::byte> frames;
      if (c.ws && c.ph == phase::open) frames = c.ws->pending_output();
      if (!frames.empty()) iov[n_iov++] = {const_cast<std::byte*>(frames.data()), frames.size()};
      if (n_iov == 0) return true;
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<std::size_t>(n_iov);
      const ssize_t w = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL);  // no SIGPIPE on a closed peer
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;  // EPOLLOUT will call us back
        destroy(c, slot);
        return false;
      }
      auto written = static_cast<std::size_t>(w);
      const std::size_t from_http = std::min(written, http_left);
      c.http_pos += from_http;
      written -= from_http;
      if (c.http_pos == c.http_out.size() && http_left) {
        c.http_out = std::string();  // the head is sent: give its memory back
        c.http_pos = 0;
      }
      if (written) c.ws->consume_output(written);
      if (static_cast<std::size_t>(w) < http_left + frames.size()) return true;  // the socket is full
    }
  }

  // After anything happened to a connection: write, then act on its new state.
  void service(conn_state& c, std::uint32_t slot, conn_id id) {
    for (int round = 0; round < 64; ++round) {
      if (!flush(c, slot, id)) return;
      if (c.ph == phase::http_reply) {
        if (output_size(c) == 0) begin_linger(c, slot);
        break;
      }
      if (c.ph != phase::open) break;
      connection& ws = *c.ws;
      if (ws.state() != connection_state::open) note_closing(c, slot);
      if (ws.should_close_transport()) {
        begin_linger(c, slot);
        break;
      }
      // Resume reading once the output drained below low_water: first the bytes
      // kept when we paused, which may produce more output (hence the loop).
      if (c.paused && output_size(c) <= opts.low_water) {
        c.paused = false;
        if (!c.pending_in.empty()) {
          std::vector<std::byte> in;
          in.swap(c.pending_in);  // feed_frames may refill pending_in
          feed_frames(c, id, in);
          if (c.pending_in.empty()) {
            in.clear();
            c.pending_in.swap(in);  // keep the capacity for the next pause
          }
          continue;
        }
      }
      break;
    }
    set_interest(c, id);
  }

  void service_dirty() {
    // Handlers may dirty more connections while we go: index, not iterators.
    for (std::size_t i = 0; i < dirty.size(); ++i) {
      const conn_id id = dirty[i];
      conn_state* c = lookup(id);
      if (!c) continue;
      c->dirty = false;
      service(*c, static_cast<std::uint32_t>(id & 0xffffffffu), id);
    }
    dirty.clear();
  }

  // ------------------------------------------------------------ stop

  void begin_stop() {
    if (stopping) return;
    stopping = true;
    stop_deadline = now + opts.close_timeout.count();
    if (listen_fd >= 0) {
      ::close(listen_fd);  // no new connections
      listen_fd = -1;
    }
    for (std::uint32_t slot = 0; slot < slots.size(); ++slot) {
      conn_state& c = *slots[slot];
      const conn_id id = id_of(c, slot);
      if (c.ph == phase::handshake) {
        destroy(c, slot);
      } else if (c.ph == phase::open) {
        if (c.ws->state() == connection_state::open) (void)c.ws->close(1001, "server shutting down");
        mark_dirty(c, id);
      }
    }
  }

  int run() {
    if (epfd < 0) return -1;
    std::array<epoll_event, max_epoll_events> evs;
    now = detail::monotonic_ms();
    for (;;) {
      if (stopping && (st.connections == 0 || now >= stop_deadline)) break;
      std::int64_t wake = std::min(timers.next(), accept_resume_at);
      if (stopping) wake = std::min(wake, stop_deadline);
      const int n = epoll_wait(epfd, evs.data(), max_epoll_events, detail::wait_timeout_ms(wake, now));
      now = detail::monotonic_ms();
      if (n < 0) {
        if (errno == EINTR) continue;
        return -1;
      }
      for (int i = 0; i < n; ++i) {
        const std::uint64_t tag = evs[i].data.u64;
        if (tag == listen_tag) {
          if (!stopping) on_acceptable();
        } else if (tag == wake_tag) {
          std::uint64_t v;
          while (::read(wake_fd, &v, sizeof v) > 0) {
          }
          begin_stop();
        } else {
          on_ready(tag, evs[i].events);
        }
      }
      service_dirty();
      run_timers();
      service_dirty();  // output the timers produced (pings, closes)
      if (listening_paused && now >= accept_resume_at) resume_accepting();
    }
    // Past the deadline: whoever is left is dropped.
    for (std::uint32_t slot = 0; slot < slots.size(); ++slot)
      if (slots[slot]->ph != phase::free) destroy(*slots[slot], slot);
    return 0;
  }
};

// ------------------------------------------------------------ public surface

epoll_server::epoll_server(server_options options, handler& h)
    : impl_(std::make_unique<impl>(std::move(options), h)) {}
epoll_server::~epoll_server() = default;

expected<std::uint16_t, std::string> epoll_server::listen() {
  impl& s = *impl_;
  auto fail = [](std::string what) { return unexpected<std::string>{what + ": " + std::strerror(errno)}; };
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
  if (s.epfd < 0) s.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s.epfd < 0) return fail("epoll_create1");
  if (s.wake_fd < 0) {
    s.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s.wake_fd < 0) return fail("eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = wake_tag;
    epoll_ctl(s.epfd, EPOLL_CTL_ADD, s.wake_fd, &ev);
  }
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket");
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart while old sockets are in TIME_WAIT
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0 || ::listen(fd, s.opts.backlog) != 0) {
    auto e = fail("bind/listen " + s.opts.host + ":" + std::to_string(s.opts.port));
    ::close(fd);
    return e;
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  s.bound_port = ntohs(addr.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
  s.listen_fd = fd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = listen_tag;
  epoll_ctl(s.epfd, EPOLL_CTL_ADD, fd, &ev);
  return s.bound_port;
}

std::uint16_t epoll_server::port() const noexcept { return impl_->bound_port; }
int epoll_server::run() { return impl_->run(); }
// Deferred to the loop (through the eventfd): a handler calling stop() must not see
// connections destroyed under it.
void epoll_server::stop() { request_stop(); }

void epoll_server::request_stop() noexcept {
  // write(2) on an eventfd is async-signal-safe; the loop does the rest.
  const std::uint64_t one = 1;
  if (impl_->wake_fd >= 0) {
    const ssize_t r = ::write(impl_->wake_fd, &one, sizeof one);
    (void)r;
  }
}

namespace {
template <class F>
send_result with_open(epoll_server::impl& s, conn_id id, F f) {
  conn_state* c = s.lookup_open(id);
  if (!c) return send_result::closed;
  const send_result r = f(*c->ws);
  if (r == send_result::ok) s.mark_dirty(*c, id);  // the dirty pass writes it
  return r;
}
}  // namespace

send_result epoll_server::send_text(conn_id id, std::string_view text, bool trusted_utf8) {
  return with_open(*impl_, id, [&](connection& ws) { return ws.send_text(text, trusted_utf8); });
}
send_result epoll_server::send_binary(conn_id id, std::span<const std::byte> data) {
  return with_open(*impl_, id, [&](connection& ws) { return ws.send_binary(data); });
}
send_result epoll_server::send_ping(conn_id id, std::span<const std::byte> data) {
  return with_open(*impl_, id, [&](connection& ws) { return ws.send_ping(data); });
}
send_result epoll_server::close(conn_id id, std::uint16_t code, std::string_view reason) {
  return with_open(*impl_, id, [&](connection& ws) { return ws.close(code, reason); });
}

std::size_t epoll_server::broadcast(std::span<const conn_id> ids, const prepared_message& m) {
  impl& s = *impl_;
  std::size_t sent = 0;
  for (const conn_id id : ids) {
    conn_state* c = s.lookup_open(id);
    if (!c) continue;
    if (output_size(*c) > s.opts.high_water) {  // a slow consumer: drop its copy
      ++s.st.broadcast_dropped;
      continue;
    }
    if (c->ws->send_prepared(m) == send_result::ok) {
      s.mark_dirty(*c, id);
      ++sent;
    }
  }
  return sent;
}

connection* epoll_server::find(conn_id id) noexcept {
  conn_state* c = impl_->lookup_open(id);
  if (!c) return nullptr;
  impl_->mark_dirty(*c, id);  // whatever the caller queues gets written
  return &*c->ws;
}

std::size_t epoll_server::buffered_amount(conn_id id) const noexcept {
  const conn_state* c = impl_->lookup(id);
  return c ? output_size(*c) : 0;
}

void epoll_server::set_user_data(conn_id id, void* p) noexcept {
  if (conn_state* c = impl_->lookup(id)) c->user = p;
}
void* epoll_server::user_data(conn_id id) const noexcept {
  const conn_state* c = impl_->lookup(id);
  return c ? c->user : nullptr;
}

server_stats epoll_server::stats() const noexcept { return impl_->st; }

}  // namespace ws6455::io
