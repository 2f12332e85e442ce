#include "chat.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <span>

#include "page.hpp"
#include "utf8.hpp"

namespace ws6455::tools {

namespace {

using json = nlohmann::json;

constexpr std::size_t max_room_bytes = 128;
constexpr std::size_t max_name_bytes = 64;
// Rooms one connection may be in: bounds what a client can make the server (and its
// Redis subscriptions) hold.
constexpr std::size_t max_rooms_per_connection = 64;

// Never throws: strings that came in are valid UTF-8 (the frame layer checked them,
// names are checked below); `replace` is only a guard.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

prepared_message text_message(std::string_view s) {
  return prepared_message(opcode::text, std::as_bytes(std::span(s.data(), s.size())));
}

// 1..64 bytes of UTF-8 without control characters.
bool good_name(std::string_view s) {
  if (s.empty() || s.size() > max_name_bytes) return false;
  for (const unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  detail::utf8_state st = 0;
  return detail::utf8_validate(st, reinterpret_cast<const std::byte*>(s.data()), s.size()) &&
         detail::utf8_complete(st);
}

}  // namespace

std::string random_instance_id() {
  std::random_device rd;
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(rd()));
  return buf;
}

bool chat_app::member::in(std::string_view room) const {
  return std::find(rooms.begin(), rooms.end(), room) != rooms.end();
}

bool chat_app::member::in(std::string_view room, std::uint64_t join) const {
  const auto it = std::find(rooms.begin(), rooms.end(), room);
  return it != rooms.end() && joins[static_cast<std::size_t>(it - rooms.begin())] == join;
}

chat_app::chat_app(chat_options o, std::string page) : o_(std::move(o)), page_(std::move(page)) {}

chat_app::~chat_app() { stop(); }

void chat_app::attach(io::server& server) {
  server_ = &server;
  if (!o_.redis) return;
  o_.redis_options.instance = o_.instance;
  o_.redis_options.loop = 0;
  // What other instances publish reaches this instance's members on every loop.
  bus_ = std::make_unique<redis_bus>(server, o_.redis_options, [this](std::string_view room, std::string_view msg) {
    server_->publish(room, text_message(msg));
  });
  // Every (room, name) here: registered again each time the bus connects.
  bus_->set_presence_source([this] {
    std::vector<std::pair<std::string, std::string>> all;
    std::lock_guard<std::mutex> lock(directory_mu_);
    for (const auto& [room, names] : directory_)
      for (const auto& [name, count] : names) all.emplace_back(room, name);
    return all;
  });
  bus_->start();
}

void chat_app::stop() {
  // The loops have stopped: the `left` of every member closed by the stop is still to
  // reach the other instances.
  if (bus_) bus_->stop(std::chrono::milliseconds(1000));
}

void chat_app::on_open(io::conn_id id, const http_request& req, io::upgrade_reply& reply) {
  reply.options.policy = o_.protocols.options.policy;
  reply.options.protocols = o_.protocols.options.protocols;
  std::string room;
  if (req.path().starts_with("/chat/") && req.path().size() > 6) {
    room = percent_decode(req.path().substr(6));
  } else if (req.path() == "/" || req.path() == "/chat") {
    room = req.query_param("room").value_or("");
  } else {
    reply.reject(404, "no such path: use /chat, /chat/ROOM or /?room=ROOM\n");
    return;
  }
  if (room.size() > max_room_bytes) {
    reply.reject(400, "room name over 128 bytes\n");
    return;
  }
  std::string name;
  if (auto n = req.query_param("name")) {
    if (!good_name(*n)) {
      reply.reject(400, "name: 1 to 64 bytes of UTF-8, no control characters\n");
      return;
    }
    name = std::move(*n);
  } else {
    name = "guest-" + std::to_string(next_guest_++);
  }
  auto* m = new member;
  m->name = std::move(name);
  server_->set_user_data(id, m);
  (void)server_->send_text(id, dump({{"type", "welcome"}, {"name", m->name}, {"instance", o_.instance}}));
  if (!room.empty()) join(id, *m, room);
}

bool chat_app::on_http(const http_request& req, io::http_reply& reply) {
  if (req.path() == "/stats") {
    thread_local std::string body;  // valid until on_http returns; loops answer at once
    body = stats_json();
    reply.status = 200;
    reply.content_type = "application/json";
    reply.body = body;
  } else {
    (void)answer_page(req, reply, page_);
  }
  return true;
}

void chat_app::on_message(io::conn_id id, const event& ev) {
  auto* m = static_cast<member*>(server_->user_data(id));
  if (!m) return;
  if (ev.type != event_type::text) return error(id, "binary messages are not part of the chat protocol");
  const json j = json::parse(ev.text(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return error(id, "not JSON");
  if (!j.is_object()) return error(id, "not a JSON object");
  std::string missing;
  auto field = [&](const char* key) -> const std::string* {
    const auto it = j.find(key);
    if (it != j.end() && it->is_string()) return &it->get_ref<const std::string&>();
    if (missing.empty())
      missing = it == j.end() ? std::string("missing field \"") + key + "\""
                              : std::string("field \"") + key + "\" must be a string";
    return nullptr;
  };
  const std::string* type = field("type");
  if (!type) return error(id, missing);
  if (*type != "join" && *type != "leave" && *type != "chat") return error(id, "unknown type \"" + *type + "\"");
  const std::string* room = field("room");
  if (!room) return error(id, missing);
  if (room->empty()) return error(id, "empty room name");
  if (room->size() > max_room_bytes) return error(id, "room name over 128 bytes");
  if (*type == "join") {
    if (m->in(*room)) return error(id, "already in room \"" + *room + "\"");
    if (m->rooms.size() >= max_rooms_per_connection)
      return error(id, "in too many rooms (" + std::to_string(max_rooms_per_connection) + ")");
    return join(id, *m, *room);
  }
  if (!m->in(*room)) return error(id, "not in room \"" + *room + "\"");
  if (*type == "leave") return leave(id, *m, *room);
  const std::string* content = field("content");
  if (!content) return error(id, missing);
  if (content->size() > o_.max_content)
    return error(id, "content over " + std::to_string(o_.max_content) + " bytes");
  to_room(*room, dump({{"type", "chat"},
                       {"room", *room},
                       {"from", m->name},
                       {"content", *content},
                       {"id", o_.instance + "-" + std::to_string(next_id_++)}}));
}

void chat_app::on_close(io::conn_id id, std::uint16_t, std::string_view) {
  std::unique_ptr<member> m(static_cast<member*>(server_->user_data(id)));
  if (!m) return;
  // Tasks still posted for this id find nothing (an upgrade refused after on_open
  // keeps the connection, answering, for a while).
  server_->set_user_data(id, nullptr);
  const std::vector<std::string> rooms = m->rooms;  // leave() edits m->rooms
  for (const std::string& room : rooms) leave(id, *m, room);  // the server left the topics already
}

void chat_app::join(io::conn_id id, member& m, const std::string& room) {
  const std::uint64_t join = m.next_join++;
  m.rooms.push_back(room);
  m.joins.push_back(join);
  server_->subscribe(id, room);  // local messages reach it from now on
  {
    std::lock_guard<std::mutex> lock(directory_mu_);
    ++directory_[room][m.name];
  }
  const unsigned loop = io::loop_of(id);
  // `joined` goes out from the connection's loop, after the 101 (joins at open),
  // and with Redis once the instance's subscription to the room is confirmed: from
  // then on the member gets every instance's messages.
  // And with Redis, `members` names every instance's members: our own name is
  // registered before the list is read (one connection: in that order), so of two
  // members joining at once on two instances at least one lists the other, and the
  // other gets its `joined`.
  if (!bus_) return server_->post(loop, [this, id, room, join] { joined(id, room, join, {}); });
  server_->post(0, [this, id, room, loop, join, name = m.name] {
    sync_presence(room, name);
    bus_->ref(room, [this, id, room, loop, join] {
      bus_->members(room, [this, id, room, loop, join](std::optional<std::vector<std::string>> others) {
        server_->post(loop, [this, id, room, join, others = std::move(others)] { joined(id, room, join, others); });
      });
    });
  });
}

void chat_app::joined(io::conn_id id, const std::string& room, std::uint64_t join,
                      const std::optional<std::vector<std::string>>& elsewhere) {
  const auto* m = static_cast<const member*>(server_->user_data(id));
  if (!m || !m->in(room, join)) return;  // gone, or left (and maybe joined again) meanwhile
  to_room(room, dump({{"type", "joined"}, {"room", room}, {"who", m->name}}));
  // Each name once, ours (here now) and the other instances' (Redis' list).
  std::set<std::string> names;
  if (elsewhere) names.insert(elsewhere->begin(), elsewhere->end());
  {
    std::lock_guard<std::mutex> lock(directory_mu_);
    if (auto it = directory_.find(room); it != directory_.end())
      for (const auto& [name, count] : it->second) names.insert(name);
  }
  json who = json::array();
  for (const std::string& name : names) who.push_back(name);
  (void)server_->send_text(id, dump({{"type", "members"}, {"room", room}, {"who", std::move(who)}}));
}

// On loop 0: tells Redis whether `name` is in `room` here now. Read from the
// directory then, not passed along: a join and a leave of one name on two loops
// may reach loop 0 in either order, and the last word must be the directory's.
void chat_app::sync_presence(const std::string& room, const std::string& name) {
  bool present = false;
  {
    std::lock_guard<std::mutex> lock(directory_mu_);
    if (auto it = directory_.find(room); it != directory_.end()) present = it->second.contains(name);
  }
  bus_->set_present(room, name, present);
}

void chat_app::leave(io::conn_id id, member& m, const std::string& room) {
  {
    std::lock_guard<std::mutex> lock(directory_mu_);
    auto it = directory_.find(room);
    if (it != directory_.end()) {
      auto n = it->second.find(m.name);
      if (n != it->second.end() && --n->second == 0) it->second.erase(n);
      if (it->second.empty()) directory_.erase(it);
    }
  }
  // Out of Redis' list before `left` is published (loop 0 runs them in this order):
  // a newcomer elsewhere either reads the list without the leaver or gets its `left`.
  if (bus_)
    server_->post(0, [this, room, name = m.name] {
      sync_presence(room, name);
      bus_->unref(room);
    });
  to_room(room, dump({{"type", "left"}, {"room", room}, {"who", m.name}}));  // the leaver too, if still open
  server_->unsubscribe(id, room);
  // Last: `room` may refer to the entry erased here.
  const auto at = std::find(m.rooms.begin(), m.rooms.end(), room) - m.rooms.begin();
  if (static_cast<std::size_t>(at) < m.rooms.size()) {
    m.joins.erase(m.joins.begin() + at);
    m.rooms.erase(m.rooms.begin() + at);
  }
}

void chat_app::to_room(const std::string& room, const std::string& msg) {
  server_->publish(room, text_message(msg));
  // The bus is loop 0's: a loop's posts run in order, so a sender's messages reach
  // Redis in the order they were sent.
  if (bus_) post_to_bus([this, room, msg] { bus_->publish(room, msg); }, room.size() + msg.size());
}

void chat_app::post_to_bus(std::function<void()> task, std::size_t bytes) {
  if (posted_bytes_.fetch_add(bytes) + bytes > o_.redis_options.max_pending) {
    posted_bytes_ -= bytes;
    bus_->note_dropped();  // counted with the bus's own drops
    return;
  }
  server_->post(0, [this, task = std::move(task), bytes] {
    posted_bytes_ -= bytes;
    task();
  });
}

void chat_app::error(io::conn_id id, std::string_view reason) {
  (void)server_->send_text(id, dump({{"type", "error"}, {"reason", reason}}));
}

std::string chat_app::stats_json() const {
  const io::io_stats io = server_->stats();
  // slow_dropped: copies a member above high_water did not get (server.hpp, backpressure).
  json j = {{"instance", o_.instance}, {"connections", io.connections}, {"slow_dropped", io.broadcast_dropped}};
  if (bus_) {
    const redis_stats& s = bus_->stats();
    j["redis"] = {{"connected", s.connected.load()}, {"published", s.published.load()},
                  {"received", s.received.load()},   {"lost", s.lost.load()},
                  {"dropped", s.dropped.load()},     {"reconnects", s.reconnects.load()}};
  } else {
    j["redis"] = nullptr;
  }
  return dump(j);
}

}  // namespace ws6455::tools
