// The driver: one event loop's connections, from accept (or connect) to close,
// over any backend. One thread runs a loop; every callback runs on it.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/backend.hpp"
#include "io/slab.hpp"
#include "io/timers.hpp"
#include "io/tls.hpp"
#include "ws6455/connection.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/io/client.hpp"
#include "ws6455/io/server.hpp"
#include "ws6455/permessage_deflate.hpp"

namespace ws6455::io::detail {

enum class phase : std::uint8_t {
  free,        // an unused slot
  connecting,  // client: TCP connect in progress
  handshake,   // reading the request head (server) or the response head (client)
  http_reply,  // writing an HTTP answer (error, page); then lingering
  open,        // a WebSocket (also while closing)
  lingering,   // we sent FIN (shutdown SHUT_WR); reading and dropping until the peer's EOF
  draining,    // closed; the backend still has an operation on it (io_uring)
};

// What a client connection needs until it is open.
struct client_spec {
  ws_url url;
  ws6455::client_options handshake;
  std::vector<sockaddr_storage> addrs;  // from getaddrinfo, tried in order
  std::vector<socklen_t> addr_lens;
  std::size_t next_addr = 0;
  std::string last_error;
  bool tls = false;  // wss://: a TLS session (SNI and verification from url.host)
};

// A prepared frame queued by reference (broadcast, publish): written from the
// shared encoding, never copied per recipient. `after` counts the connection's own
// pending output bytes that go before it; `sent` how much of it went out.
struct shared_frame {
  std::shared_ptr<const prepared_message> msg;
  std::size_t after = 0;
  std::size_t sent = 0;
};

// Per-connection state that an idle, open connection does not need: allocated for
// the handshake, an HTTP answer, a pause, a close or topics, and freed after.
struct conn_extra {
  std::unique_ptr<server_handshake> server_hs;
  std::unique_ptr<client_handshake> client_hs;
  std::unique_ptr<client_spec> client;
  std::string http_out;  // the handshake's answer (or the client's request), before any frame
  std::size_t http_pos = 0;
  std::vector<std::byte> pending_in;  // input left unfed when reading paused ...
  std::size_t pending_pos = 0;        // ... from here (fed in place, never shifted)
  std::string close_reason;
  std::vector<std::string> topics;
  std::vector<shared_frame> shared_out;  // in order; written interleaved with the own output

  bool idle() const noexcept {
    return !server_hs && !client_hs && !client && http_out.empty() && pending_in.capacity() == 0 &&
           close_reason.empty() && topics.empty() && shared_out.empty();
  }
};

struct conn {
  // Packed: an idle connection is this, its frame layer and one timer entry.
  int fd = -1;
  std::uint32_t slot = 0;
  std::uint32_t gen = 1;  // 24 bits used; bumped when the slot is freed: stale ids stop matching
  std::uint32_t timer_stamp = 0;
  std::uint32_t bdata = 0;    // backend: epoll interest / io_uring send slot
  std::uint16_t close_code = 1006;
  phase ph = phase::free;
  std::uint8_t ops = 0;       // backend: operations in flight (io_uring)
  std::uint8_t bflags = 0;    // backend: its own flags
  bool is_client : 1 = false;
  bool dirty : 1 = false;         // in the dirty list
  bool paused : 1 = false;        // not read because of backpressure
  bool opened : 1 = false;        // on_open accepted it: on_close is owed
  bool closing_seen : 1 = false;  // the close timer runs
  bool writing : 1 = false;       // a write is in flight (io_uring) or waits for EPOLLOUT
  bool reading : 1 = false;       // what the driver last asked the backend for
  bool tls : 1 = false;           // bytes go through a tls_session (the loop's tls_[slot])
  std::int64_t last_rx = 0;
  std::int64_t last_ping = 0;
  std::int64_t deadline = 0;                   // connect, handshake, close and linger deadlines
  std::int64_t timer_at = no_deadline;         // the live heap entry's deadline
  void* user = nullptr;
  std::unique_ptr<conn_extra> x;
  std::optional<connection> ws;

  conn_extra& extra() {
    if (!x) x = std::make_unique<conn_extra>();
    return *x;
  }
};

// Options of a loop, from server_options or client_options.
struct loop_options {
  config ws;
  bool deflate = false;
  permessage_deflate::server_options server_deflate;
  permessage_deflate::client_options client_deflate;
  handshake_limits limits;
  std::int64_t connect_timeout = 10'000;
  std::int64_t handshake_timeout = 10'000;
  std::int64_t idle_timeout = 0;
  std::int64_t ping_interval = 0;
  std::int64_t close_timeout = 5'000;
  std::size_t read_buffer_size = 256u << 10;
  std::size_t high_water = 512u << 10;
  std::size_t low_water = 128u << 10;
  std::size_t max_connections = 100'000;
  bool exit_when_idle = false;
};

// Counters, readable from other threads.
struct loop_counters {
  std::atomic<std::size_t> connections{0};
  std::atomic<std::uint64_t> accepted{0}, connected{0}, upgraded{0}, broadcast_dropped{0}, paused_reads{0};
  std::atomic<std::size_t> tls{0}, ktls{0};
  std::atomic<std::uint64_t> tls_handshakes{0}, tls_failures{0}, ktls_switched{0};
};

class loop;
// The loop whose run() is on this thread's stack, or nullptr.
loop* current_loop() noexcept;

class loop {
 public:
  loop(unsigned index, loop_options opts, handler* server_app, client_handler* client_app);
  ~loop();
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  // Creates the backend; call on the thread that will run the loop (io_uring rings
  // belong to their thread). `fallback_note` gets a line when automatic fell back.
  // Returns why it failed, or an empty string.
  std::string start_backend(io::backend wanted, std::string* fallback_note);
  bool has_backend() const noexcept { return be_ != nullptr; }
  io::backend kind() const noexcept;
  void add_listener(int fd);  // owned by the loop from now on
  // TLS: server loops make every accepted connection a TLS one; client loops use it
  // for wss:// connections. Before run() (or on the loop thread).
  void set_tls(std::shared_ptr<tls_context> ctx);
  bool has_tls() const noexcept { return tls_ctx_ != nullptr; }
  // Runs until the graceful stop completed (or, with exit_when_idle, no connection
  // is left). Returns 0, or -1 if the backend failed.
  int run();
  // After its own graceful stop, run() keeps running posted tasks, application
  // descriptors and timers while *others_running > 0 (server loop 0: what the other
  // loops post while their connections close still runs). Before run().
  void finish_after(const std::atomic<unsigned>* others_running) noexcept { others_running_ = others_running; }
  void request_stop() noexcept;  // async-signal-safe
  void post(std::function<void()> task);  // thread-safe

  // Application descriptors and timers (endpoint::watch, call_after; loop_app.cpp).
  // Ids carry the loop's index in their top byte. From the loop thread, or while
  // the loop is not running.
  std::uint64_t add_watch(int fd, unsigned events, std::function<void(unsigned)> on_ready);
  bool set_watch(std::uint64_t id, unsigned events);
  void remove_watch(std::uint64_t id);
  std::uint64_t add_app_timer(std::int64_t delay_ms, std::function<void()> fn);
  void cancel_app_timer(std::uint64_t id);

  // Client connections.
  expected<conn_id, std::string> connect(std::unique_ptr<client_spec> spec);

  // Connection calls (loop thread).
  conn* lookup(conn_id id) noexcept;
  const conn* lookup(conn_id id) const noexcept;
  conn* lookup_open(conn_id id) noexcept;
  void mark_dirty(conn& c);
  std::size_t output_size(const conn& c) const noexcept;
  std::size_t broadcast(std::span<const conn_id> ids, const prepared_message& m);
  // The same, by reference: large frames are written from `m` itself.
  std::size_t broadcast(std::span<const conn_id> ids, const std::shared_ptr<const prepared_message>& m);
  void subscribe(conn_id id, std::string_view topic);
  void unsubscribe(conn_id id, std::string_view topic);
  std::size_t deliver(std::string_view topic, const std::shared_ptr<const prepared_message>& m);
  const loop_counters& counters() const noexcept { return st_; }
  conn_id id_of(const conn& c) const noexcept;

  // Reports from the backend.
  void on_accept(int fd);
  void on_accept_error(int err);
  void on_connected(conn& c, int err);
  void on_bytes(conn& c, std::span<std::byte> in);
  void on_eof(conn& c);
  void on_transport_error(conn& c);
  void on_write_done(conn& c, ssize_t result);
  void on_released(conn& c);
  void on_wake();
  void on_app_ready();
  conn* slot_conn(std::uint32_t slot, std::uint32_t gen) noexcept;
  std::span<std::byte> read_buffer() noexcept { return read_buf_; }
  std::int64_t now() const noexcept { return now_; }
  void set_now(std::int64_t t) noexcept { now_ = t; }
  const loop_options& options() const noexcept { return opts_; }

 private:
  conn& new_conn(int fd, phase ph);
  void destroy(conn& c);
  void free_slot(conn& c);
  void begin_linger(conn& c);
  void pause_accepting(std::int64_t until);
  void resume_accepting();
  std::int64_t next_deadline(const conn& c) const noexcept;
  bool holds_idle_storage(const conn& c, bool any) const noexcept;
  void release_idle_storage(conn& c);
  void arm(conn& c);
  void note_closing(conn& c);
  void run_timers();
  void on_timer(conn& c);
  void try_next_address(conn& c);
  void on_server_handshake_bytes(conn& c, std::span<std::byte> in);
  void on_client_handshake_bytes(conn& c, std::span<std::byte> in);
  void accept_upgrade(conn& c);
  void enter_http_reply(conn& c);
  void fail_client(conn& c, std::string reason);
  void feed_frames(conn& c, std::span<std::byte> in, bool from_pending = false);
  void on_plain_bytes(conn& c, std::span<std::byte> in);
  // TLS hooks (the session sits between the backend's bytes and the above).
  bool tls_attach(conn& c, std::string_view host);
  void tls_input(conn& c, std::span<std::byte> in);
  void tls_failed(conn& c);
  void tls_send_alert(conn& c);
  void tls_plain_http(conn& c);
  bool flush_tls(conn& c);
  bool tls_close_notify(conn& c);
  void tls_log(int kind, const std::string& line);
  void dispatch(conn& c, const event& ev);
  bool flush(conn& c);
  bool flush_plain(conn& c);
  bool try_kernel_tls(conn& c, tls_session& t);
  void send_kernel_alert(conn& c, tls_session& t);
  int gather(conn& c, iovec* iov, int max_iov);
  bool queue_shared(conn& c, const std::shared_ptr<const prepared_message>& m);
  void consume(conn& c, std::size_t n);
  void service(conn& c);
  void service_dirty();
  void update_reading(conn& c);
  void begin_stop();
  void run_posted();
  void trim_extra(conn& c);
  std::int64_t next_app_deadline() const noexcept;
  void run_app_timers();

  unsigned index_;
  loop_options opts_;
  handler* server_app_;
  client_handler* client_app_;
  std::unique_ptr<backend_base> be_;
  std::vector<int> listen_fds_;
  int wake_fd_ = -1;
  bool listening_paused_ = false;
  std::int64_t accept_resume_at_ = no_deadline;
  bool stopping_ = false;
  std::atomic<bool> stop_requested_{false};
  const std::atomic<unsigned>* others_running_ = nullptr;
  std::int64_t stop_deadline_ = no_deadline;
  std::int64_t now_ = 0;

  slab<conn> slots_;  // stable addresses, no allocation per connection
  std::vector<std::uint32_t> free_slots_;
  std::vector<conn_id> dirty_;
  deadline_heap timers_;
  std::vector<std::byte> read_buf_;
  std::array<event, 64> events_{};
  loop_counters st_;
  std::unordered_map<std::string, std::vector<conn_id>> topics_;

  // TLS: the context, sessions by slot (only TLS connections have one: a plain
  // connection does not grow), decrypted input and small pieces to encrypt.
  std::shared_ptr<tls_context> tls_ctx_;
  std::vector<std::unique_ptr<tls_session>> tls_;
  byte_buffer tls_plain_;
  byte_buffer tls_stage_;
  std::int64_t tls_log_at_[3] = {0, 0, 0};  // by kind: 0 plain HTTP, 1 handshake failures, 2 kernel TLS
  unsigned tls_log_skipped_[3] = {0, 0, 0};

  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;

  // Application descriptors: an epoll set of their own (made on first use), which
  // the backend watches like the wake-up eventfd; and application timers by
  // (deadline, id).
  struct app_watch {
    int fd;
    unsigned events;
    std::function<void(unsigned)> on_ready;
  };
  int app_epfd_ = -1;
  bool app_again_ = false;  // descriptors were still ready after a bounded round
  std::uint64_t app_seq_ = 0;
  std::unordered_map<std::uint64_t, app_watch> watches_;
  std::map<std::pair<std::int64_t, std::uint64_t>, std::function<void()>> app_timers_;
  std::unordered_map<std::uint64_t, std::int64_t> app_timer_at_;

 public:
  tls_session* tls_of(const conn& c) const noexcept { return c.tls ? tls_[c.slot].get() : nullptr; }
};

}  // namespace ws6455::io::detail
