// The chat application of `ws6455 serve --mode chat` (docs/chat.md): JSON messages,
// rooms that span the server's loops (its topics) and, with Redis, processes and
// hosts (redis_bus, driven by loop 0).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "redis_bus.hpp"
#include "ws6455/io/server.hpp"

namespace ws6455::tools {

struct chat_options {
  std::string instance;              // names this process in message ids and Redis tags
  std::size_t max_content = 64u << 10;
  bool redis = false;
  redis_bus::options redis_options;  // with redis
  io::upgrade_reply protocols;       // the subprotocol policy
};

class chat_app final : public io::handler {
 public:
  chat_app(chat_options o, std::string page);
  ~chat_app() override;

  // Before server.run(): the Redis bus (if any) is made on loop 0 and connects
  // when that loop runs. After run() returned: stop().
  void attach(io::server& server);
  void stop();

  void on_open(io::conn_id id, const http_request& req, io::upgrade_reply& reply) override;
  bool on_http(const http_request& req, io::http_reply& reply) override;
  void on_message(io::conn_id id, const event& ev) override;
  void on_close(io::conn_id id, std::uint16_t code, std::string_view reason) override;

 private:
  struct member {
    std::string name;
    std::vector<std::string> rooms;
    std::vector<std::uint64_t> joins;  // per room: which join it is (a stale `joined` task is ignored)
    std::uint64_t next_join = 0;
    bool in(std::string_view room) const;
    bool in(std::string_view room, std::uint64_t join) const;
  };

  void join(io::conn_id id, member& m, const std::string& room);
  void joined(io::conn_id id, const std::string& room, std::uint64_t join,
              const std::optional<std::vector<std::string>>& elsewhere);
  void sync_presence(const std::string& room, const std::string& name);
  void post_to_bus(std::function<void()> task, std::size_t bytes);
  void leave(io::conn_id id, member& m, const std::string& room);
  void to_room(const std::string& room, const std::string& json);
  void error(io::conn_id id, std::string_view reason);
  std::string stats_json() const;

  chat_options o_;
  std::string page_;
  io::server* server_ = nullptr;
  std::unique_ptr<redis_bus> bus_;  // loop 0's
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<std::uint64_t> next_guest_{1};
  // Publications posted to loop 0 and not yet handed to the bus: bounded like the
  // bus's own queue, so a loop 0 that falls behind cannot grow the others' posts.
  std::atomic<std::size_t> posted_bytes_{0};

  // Who is in which room on this instance (every loop), for `members`.
  mutable std::mutex directory_mu_;
  std::unordered_map<std::string, std::unordered_map<std::string, unsigned>> directory_;
};

// A random instance id: 8 hex digits.
std::string random_instance_id();

}  // namespace ws6455::tools
