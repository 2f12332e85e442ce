// Rooms across processes through Redis pub/sub, driven by one loop of the server
// (hiredis' asynchronous API on io::endpoint::watch): a publishing connection and a
// subscribing one, subscribed to the rooms that have local members.
//
// Everything published is tagged with the instance id, and what comes back with
// our own id is skipped: the instance delivered it locally already. Redis down:
// publications are counted as lost (never queued without bound, never blocking),
// the bus reconnects with backoff and subscribes again.
//
// Presence (who is in a room on any instance): each instance keeps its own names in
// a hash per room, PREFIX "members:" ROOM, field SESSION "\n" NAME. A session is one
// connection of the bus (instance id "." a random nonce of this process "." count)
// and lives while its key PREFIX "session:" SESSION does: set on connecting, renewed
// every presence_ttl / 3, gone presence_ttl after a crash; on the next connect or a
// clean stop its fields and key are deleted. A read (a script, atomic in Redis)
// lists the names of live sessions and removes the rest. A session whose key lapsed
// or that missed an update (past max_pending) is replaced by a new one at the next
// renewal. The hashes expire 3 presence_ttl after the last renewal of an instance
// with members there.
//
// One thread: every call is made on the bus's loop (or while it is not running);
// other loops reach it with endpoint::post. stats() may be read from anywhere.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ws6455/expected.hpp"
#include "ws6455/io/common.hpp"

struct redisAsyncContext;

namespace ws6455::tools {

// redis://[:PASSWORD@]HOST[:PORT][/DB]
struct redis_url {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string password;
};
expected<redis_url, std::string> parse_redis_url(std::string_view url);

struct redis_stats {
  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> published{0};  // PUBLISH acknowledged by Redis
  std::atomic<std::uint64_t> received{0};   // messages from other instances
  std::atomic<std::uint64_t> lost{0};       // not published: Redis was away, or the connection broke first
  std::atomic<std::uint64_t> dropped{0};    // not published: over max_pending
  std::atomic<std::uint64_t> reconnects{0};
};

class redis_bus {
 public:
  struct options {
    redis_url url;
    std::string channel_prefix = "ws6455:chat:";
    std::string instance;                   // tags what this instance publishes
    std::size_t max_pending = 16u << 20;    // bytes published and not yet acknowledged
    std::int64_t presence_ttl_ms = 15'000;  // how long a crashed instance's members stay listed
    unsigned loop = 0;
  };
  // A message another instance published to `room`.
  using on_message_fn = std::function<void(std::string_view room, std::string_view payload)>;

  redis_bus(io::endpoint& ep, options o, on_message_fn on_message);
  ~redis_bus();
  redis_bus(const redis_bus&) = delete;
  redis_bus& operator=(const redis_bus&) = delete;

  void start();  // connects (and keeps reconnecting)
  // Disconnects for good. With `flush`, what is still buffered for Redis (the last
  // publications, such as the `left` of members closed by a graceful stop) is
  // written first, waiting at most that long: for a loop that is not running any more.
  void stop(std::chrono::milliseconds flush = {});

  void publish(std::string_view room, std::string_view payload);
  // A local member joined `room`: subscribe if it is the first. `ready` runs once
  // the subscription is confirmed (from then on every instance's messages of the
  // room arrive), or at once while Redis is away (local delivery only).
  void ref(const std::string& room, std::function<void()> ready);
  void unref(const std::string& room);  // the last local member left: unsubscribe

  // Presence. The source lists every (room, name) of this instance now: registered
  // again on every connect (Redis may have restarted empty; what changed while it
  // was away is then right).
  using presence_source = std::function<std::vector<std::pair<std::string, std::string>>()>;
  void set_presence_source(presence_source f) { presence_ = std::move(f); }
  // `name` now is (present) or is no longer in `room` on this instance.
  void set_present(const std::string& room, const std::string& name, bool present);
  // The names in `room` on every live instance (each session's once; the caller
  // merges); nullopt when Redis is away or did not answer within a second.
  using members_fn = std::function<void(std::optional<std::vector<std::string>>)>;
  void members(const std::string& room, members_fn done);

  const redis_stats& stats() const noexcept { return stats_; }
  // A publication dropped for want of room (--redis-max-pending): counted, and
  // logged at most once per 10 s. Any thread.
  void note_dropped() noexcept;

 private:
  enum class sub_state : std::uint8_t { none, subscribing, subscribed, unsubscribing };
  struct room_sub {
    std::size_t refs = 0;
    sub_state state = sub_state::none;
    std::vector<std::function<void()>> waiting;  // ready callbacks until confirmed
  };

  void connect();
  void on_connected(redisAsyncContext* ac, bool ok);
  void on_ready(redisAsyncContext* ac);
  void on_disconnected(redisAsyncContext* ac);
  void lose_connection(const char* why);
  void retry_later();
  void send_subscribe(const std::string& room, room_sub& s);
  void send_unsubscribe(const std::string& room, room_sub& s);
  void on_sub_reply(void* reply);
  void on_publish_reply(void* reply, std::size_t bytes);
  void start_session();
  bool forget(const std::string& session, const std::string& room, const std::string& name);
  void end_session(const std::string& session, const std::set<std::pair<std::string, std::string>>& fields);
  void renew_session();
  void arm_renew();
  static void renew_cb(redisAsyncContext* ac, void* reply, void* priv);
  bool bounded_command(std::size_t bytes, const char* format, ...);
  std::string session_key(const std::string& session) const;
  std::string members_key(const std::string& room) const;
  static void bytes_cb(redisAsyncContext* ac, void* reply, void* priv);
  static void members_cb(redisAsyncContext* ac, void* reply, void* priv);
  void note_lost(std::uint64_t n);

  static void setup_cb(redisAsyncContext* ac, void* reply, void* priv);
  static void auth_cb(redisAsyncContext* ac, void* reply, void* priv);
  void on_setup_reply(redisAsyncContext* ac, const void* reply, const char* what);
  static void connect_cb(const redisAsyncContext* ac, int status);
  static void disconnect_cb(const redisAsyncContext* ac, int status);
  static void sub_cb(redisAsyncContext* ac, void* reply, void* priv);
  static void publish_cb(redisAsyncContext* ac, void* reply, void* priv);

  io::endpoint& ep_;
  options o_;
  on_message_fn on_message_;
  redisAsyncContext* pub_ = nullptr;
  redisAsyncContext* sub_ = nullptr;
  bool pub_up_ = false, sub_up_ = false;
  bool up_ = false;
  bool stopped_ = true;
  bool ever_up_ = false;
  std::int64_t backoff_ms_ = 100;
  io::endpoint::timer_id retry_timer_ = 0;
  io::endpoint::timer_id setup_timer_ = 0;  // a connection attempt that never answers
  std::string connect_host_;                // the host, resolved once at start()
  std::int64_t down_since_ = 0;      // monotonic ms
  std::uint64_t lost_at_down_ = 0;   // stats_.lost when the outage began
  bool said_down_ = false;
  std::atomic<std::int64_t> dropped_said_at_{-(1LL << 40)};  // monotonic ms of the last "too slow" line
  std::size_t pending_bytes_ = 0;
  std::unordered_map<std::string, room_sub> rooms_;
  presence_source presence_;
  std::string session_base_;     // instance "." nonce ".": a restart under the same --instance is another session
  std::string session_;          // the current connection's presence session ("" before the first)
  std::uint64_t sessions_ = 0;
  std::set<std::pair<std::string, std::string>> registered_;  // (room, name) the session set in Redis
  bool presence_dirty_ = false;  // an update was skipped: the next renewal starts a new session
  io::endpoint::timer_id renew_timer_ = 0;
  redis_stats stats_;
};

}  // namespace ws6455::tools
