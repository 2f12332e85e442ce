// Rooms across processes through Redis pub/sub, driven by one loop of the server
// (hiredis' asynchronous API on io::endpoint::watch): a publishing connection and a
// subscribing one, subscribed to the rooms that have local members.
//
// Everything published is tagged with the instance id, and what comes back with
// our own id is skipped: the instance delivered it locally already. Redis down:
// publications are counted as lost (never queued without bound, never blocking),
// the bus reconnects with backoff and subscribes again.
//
// One thread: every call is made on the bus's loop (or while it is not running);
// other loops reach it with endpoint::post. stats() may be read from anywhere.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
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

  const redis_stats& stats() const noexcept { return stats_; }
  // A publication dropped before it reached the bus (any thread).
  void note_dropped() noexcept { ++stats_.dropped; }

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
  std::int64_t dropped_said_at_ = 0;
  std::size_t pending_bytes_ = 0;
  std::unordered_map<std::string, room_sub> rooms_;
  redis_stats stats_;
};

}  // namespace ws6455::tools
