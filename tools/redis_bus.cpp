#include "redis_bus.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <charconv>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <memory>
#include <random>

#include "hiredis_loop.hpp"
#include "ws6455/url.hpp"

namespace ws6455::tools {

namespace {

constexpr std::int64_t backoff_first_ms = 100;
constexpr std::int64_t backoff_max_ms = 5000;
constexpr std::int64_t dropped_log_every_ms = 10'000;
constexpr std::int64_t setup_timeout_ms = 5'000;
// A members list not read by then is this instance's alone: a stalled Redis must
// not hold a join up.
constexpr std::int64_t members_timeout_ms = 1'000;

// KEYS[1]: a room's members hash; ARGV[1]: the session key prefix. The names of
// live sessions; fields of sessions that are gone (crashed, or an earlier
// connection of a live instance) are removed. EXISTS on keys not in KEYS: fine on
// a single Redis, not on a cluster.
constexpr const char* members_script = R"(local live, names = {}, {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local nl = string.find(f, '\n', 1, true)
  local s = nl and string.sub(f, 1, nl - 1)
  if s and live[s] == nil then live[s] = redis.call('EXISTS', ARGV[1] .. s) == 1 end
  if s and live[s] then names[#names + 1] = string.sub(f, nl + 1) else redis.call('HDEL', KEYS[1], f) end
end
return names)";

// Answered once: by Redis' reply or by the timeout, whichever comes first.
struct members_request {
  redis_bus::members_fn done;
  std::size_t bytes = 0;
  io::endpoint::timer_id timer = 0;
  bool answered = false;
};
using members_holder = std::shared_ptr<members_request>;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string_view str_of(const redisReply* r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
             ? std::string_view(r->str, r->len)
             : std::string_view();
}

}  // namespace

expected<redis_url, std::string> parse_redis_url(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (!url.starts_with(scheme)) return unexpected<std::string>{"not a redis:// URL"};
  url.remove_prefix(scheme.size());
  redis_url out;
  if (const auto at = url.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = url.substr(0, at);  // [USER]:PASSWORD; the user is not supported (AUTH PASSWORD)
    url.remove_prefix(at + 1);
    const auto colon = auth.find(':');
    if (colon == std::string_view::npos || colon != 0) return unexpected<std::string>{"credentials are :PASSWORD@"};
    out.password = percent_decode(auth.substr(1));  // RFC 3986 §2.1: a password may be percent-encoded
  }
  std::string_view db;
  if (const auto slash = url.find('/'); slash != std::string_view::npos) {
    db = url.substr(slash + 1);
    url = url.substr(0, slash);
  }
  std::string_view port;
  if (const auto colon = url.rfind(':'); colon != std::string_view::npos && url.find(']') == std::string_view::npos) {
    port = url.substr(colon + 1);
    url = url.substr(0, colon);
  }
  if (url.empty()) return unexpected<std::string>{"no host"};
  out.host = std::string(url);
  auto number = [](std::string_view s, int max, int& v) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size() && v >= 0 && v <= max;
  };
  if (!port.empty() && (!number(port, 65535, out.port) || out.port == 0))
    return unexpected<std::string>{"bad port"};
  if (!db.empty() && !number(db, 1 << 20, out.db)) return unexpected<std::string>{"bad database number"};
  return out;
}

redis_bus::redis_bus(io::endpoint& ep, options o, on_message_fn on_message)
    : ep_(ep), o_(std::move(o)), on_message_(std::move(on_message)) {
  std::random_device rd;
  char nonce[17];
  std::snprintf(nonce, sizeof nonce, "%08x%08x", static_cast<unsigned>(rd()), static_cast<unsigned>(rd()));
  session_base_ = o_.instance + "." + nonce + ".";
}

redis_bus::~redis_bus() { stop(); }

void redis_bus::start() {
  stopped_ = false;
  // Resolved here, once, before the loop runs: hiredis resolves with a blocking
  // getaddrinfo on every connect, which on loop 0 would stall its WebSockets for as
  // long as a slow resolver takes, on every reconnect.
  connect_host_ = o_.url.host;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(o_.url.host.c_str(), nullptr, &hints, &res) == 0 && res) {
    char ip[INET6_ADDRSTRLEN];
    if (getnameinfo(res->ai_addr, res->ai_addrlen, ip, sizeof ip, nullptr, 0, NI_NUMERICHOST) == 0) connect_host_ = ip;
    freeaddrinfo(res);
  } else {
    std::fprintf(stderr, "ws6455 serve: redis: cannot resolve %s now; every attempt will try again\n",
                 o_.url.host.c_str());
  }
  connect();
}

void redis_bus::stop(std::chrono::milliseconds flush) {
  if (setup_timer_) ep_.cancel_timer(setup_timer_);
  setup_timer_ = 0;
  if (renew_timer_) ep_.cancel_timer(renew_timer_);
  renew_timer_ = 0;
  if (up_ && !session_.empty() && flush.count() > 0) end_session(session_, registered_);  // at once, not after the TTL
  if (pub_ && up_ && flush.count() > 0) {
    redisContext* c = &pub_->c;
    const std::int64_t until = now_ms() + flush.count();
    int done = 0;
    while (redisBufferWrite(c, &done) == REDIS_OK && !done) {
      const std::int64_t left = until - now_ms();
      if (left <= 0) break;
      pollfd p{c->fd, POLLOUT, 0};
      (void)::poll(&p, 1, static_cast<int>(left));
    }
  }
  stopped_ = true;
  if (retry_timer_) ep_.cancel_timer(retry_timer_);
  retry_timer_ = 0;
  // Null first: the disconnect callbacks of a context being freed see it is not ours.
  for (redisAsyncContext** ac : {&pub_, &sub_}) {
    if (redisAsyncContext* c = *ac) {
      *ac = nullptr;
      redisAsyncFree(c);  // pending PUBLISH callbacks run with no reply: counted lost
    }
  }
  up_ = pub_up_ = sub_up_ = false;
  stats_.connected = false;
  rooms_.clear();
}

void redis_bus::connect() {
  retry_timer_ = 0;
  if (stopped_) return;
  // hiredis 0.14 has no timeout of its own here: an address that never answers would
  // wait for TCP's (minutes).
  if (setup_timer_) ep_.cancel_timer(setup_timer_);
  setup_timer_ = ep_.call_after(o_.loop, std::chrono::milliseconds(setup_timeout_ms), [this] {
    setup_timer_ = 0;
    if (!up_ && !stopped_) lose_connection("no answer within 5 s");
  });
  for (redisAsyncContext** slot : {&pub_, &sub_}) {
    redisAsyncContext* ac = redisAsyncConnect(connect_host_.c_str(), o_.url.port);
    if (!ac || ac->err) {
      const std::string why = ac ? ac->errstr : "out of memory";
      if (ac) redisAsyncFree(ac);
      return lose_connection(why.c_str());
    }
    ac->data = this;
    if (attach_hiredis(ac, ep_, o_.loop) != REDIS_OK) {
      redisAsyncFree(ac);
      return lose_connection("cannot watch its socket");
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    *slot = ac;
    // Pipelined: AUTH, SELECT (pub/sub channels are not scoped by database; it is for
    // whatever else shares the connection), then PING, whose PONG says the connection
    // is usable. hiredis reports the TCP connect before any of them is answered.
    if (!o_.url.password.empty())
      redisAsyncCommand(ac, auth_cb, this, "AUTH %b", o_.url.password.data(), o_.url.password.size());
    if (o_.url.db != 0 && ac == pub_) redisAsyncCommand(ac, setup_cb, this, "SELECT %d", o_.url.db);
    redisAsyncCommand(ac, setup_cb, this, "PING");
  }
}

// AUTH, SELECT and PING replies. A refusal (WRONGPASS, NOAUTH, a bad database) is
// said once per outage and the connection is retried with the growing backoff.
void redis_bus::setup_cb(redisAsyncContext* ac, void* reply, void* priv) {
  static_cast<redis_bus*>(priv)->on_setup_reply(ac, reply, "refused us");
}

void redis_bus::auth_cb(redisAsyncContext* ac, void* reply, void* priv) {
  static_cast<redis_bus*>(priv)->on_setup_reply(ac, reply, "AUTH refused");
}

void redis_bus::on_setup_reply(redisAsyncContext* ac, const void* reply, const char* what) {
  const auto* r = static_cast<const redisReply*>(reply);
  if (!r) return;  // the connection is going
  if (r->type == REDIS_REPLY_ERROR) {
    if (!said_down_) {
      std::fprintf(stderr, "ws6455 serve: redis: %s:%d: %s (%.*s); retrying\n", o_.url.host.c_str(), o_.url.port,
                   what, static_cast<int>(r->len), r->str);
      said_down_ = true;
    }
    redisAsyncDisconnect(ac);  // then the disconnect callback retries later
    return;
  }
  if (r->type == REDIS_REPLY_STATUS && str_of(r) == "PONG") on_ready(ac);
}

void redis_bus::connect_cb(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<redis_bus*>(ac->data);
  self->on_connected(const_cast<redisAsyncContext*>(ac), status == REDIS_OK);
}

void redis_bus::disconnect_cb(const redisAsyncContext* ac, int) {
  auto* self = static_cast<redis_bus*>(ac->data);
  self->on_disconnected(const_cast<redisAsyncContext*>(ac));
}

void redis_bus::on_connected(redisAsyncContext* ac, bool ok) {
  if (!ok) {
    // hiredis frees the context after this callback.
    const std::string why = ac->errstr;
    if (ac == pub_) pub_ = nullptr;
    if (ac == sub_) sub_ = nullptr;
    return lose_connection(why.c_str());
  }
  // Usable once PING is answered (setup_cb): after AUTH and SELECT.
}

void redis_bus::on_ready(redisAsyncContext* ac) {
  if (ac == pub_) pub_up_ = true;
  if (ac == sub_) sub_up_ = true;
  if (!pub_up_ || !sub_up_ || up_) return;
  if (setup_timer_) ep_.cancel_timer(setup_timer_);
  setup_timer_ = 0;
  up_ = true;
  stats_.connected = true;
  backoff_ms_ = backoff_first_ms;
  if (ever_up_) {
    ++stats_.reconnects;
    std::fprintf(stderr,
                 "ws6455 serve: redis: back after %.1f s; messages for other instances lost meanwhile: %llu\n",
                 static_cast<double>(now_ms() - down_since_) / 1000.0,
                 static_cast<unsigned long long>(stats_.lost - lost_at_down_));
  } else {
    std::fprintf(stderr, "ws6455 serve: redis: connected to %s:%d\n", o_.url.host.c_str(), o_.url.port);
  }
  ever_up_ = true;
  said_down_ = false;
  for (auto& [room, s] : rooms_)
    if (s.refs > 0 && s.state == sub_state::none) send_subscribe(room, s);
  start_session();
}

void redis_bus::on_disconnected(redisAsyncContext* ac) {
  // hiredis frees `ac` after this callback.
  if (ac == pub_) pub_ = nullptr;
  else if (ac == sub_) sub_ = nullptr;
  else return;  // one we are freeing ourselves
  lose_connection(ac->err ? ac->errstr : "closed");
}

void redis_bus::lose_connection(const char* why) {
  if (up_) {
    up_ = false;
    stats_.connected = false;
    down_since_ = now_ms();
    lost_at_down_ = stats_.lost;
    std::fprintf(stderr,
                 "ws6455 serve: redis: connection lost (%s); local delivery goes on, messages for other instances "
                 "are lost until it is back; reconnecting\n",
                 why);
    said_down_ = true;
  } else if (!said_down_) {
    if (!ever_up_) down_since_ = now_ms();
    std::fprintf(stderr, "ws6455 serve: redis: cannot connect to %s:%d (%s); retrying\n", o_.url.host.c_str(),
                 o_.url.port, why);
    said_down_ = true;
  }
  pub_up_ = sub_up_ = false;
  // Subscriptions are gone with the connection: members waiting for one are told
  // now (local delivery only), and every room with members subscribes again later.
  for (auto it = rooms_.begin(); it != rooms_.end();) {
    room_sub& s = it->second;
    s.state = sub_state::none;
    auto waiting = std::move(s.waiting);
    s.waiting.clear();
    for (auto& ready : waiting) ready();
    it = s.refs == 0 ? rooms_.erase(it) : std::next(it);
  }
  retry_later();
}

void redis_bus::retry_later() {
  if (stopped_ || retry_timer_) return;
  retry_timer_ = ep_.call_after(o_.loop, std::chrono::milliseconds(backoff_ms_), [this] {
    retry_timer_ = 0;
    // Whichever connection is still there goes too: both are made again together.
    for (redisAsyncContext** ac : {&pub_, &sub_}) {
      if (redisAsyncContext* c = *ac) {
        *ac = nullptr;
        redisAsyncFree(c);
      }
    }
    connect();
  });
  backoff_ms_ = std::min(backoff_ms_ * 2, backoff_max_ms);
}

void redis_bus::note_lost(std::uint64_t n) { stats_.lost += n; }

// From any thread (the chat's loops drop before posting to the bus's loop too):
// counted, and said at most once per 10 s.
void redis_bus::note_dropped() noexcept {
  const std::uint64_t n = ++stats_.dropped;
  const std::int64_t t = now_ms();
  std::int64_t said = dropped_said_at_.load(std::memory_order_relaxed);
  if (t - said < dropped_log_every_ms || !dropped_said_at_.compare_exchange_strong(said, t)) return;
  std::fprintf(stderr,
               "ws6455 serve: redis: too slow: more than %zu bytes of publications await it; dropping them (%llu so "
               "far)\n",
               o_.max_pending, static_cast<unsigned long long>(n));
}

void redis_bus::publish(std::string_view room, std::string_view payload) {
  if (!up_) return note_lost(1);
  const std::size_t bytes = o_.instance.size() + 1 + payload.size();
  if (pending_bytes_ + bytes > o_.max_pending) return note_dropped();
  std::string channel = o_.channel_prefix;
  channel += room;
  std::string body;
  body.reserve(bytes);
  body += o_.instance;
  body += '\n';
  body += payload;
  if (redisAsyncCommand(pub_, publish_cb, reinterpret_cast<void*>(static_cast<std::uintptr_t>(bytes)),
                        "PUBLISH %b %b", channel.data(), channel.size(), body.data(), body.size()) != REDIS_OK)
    return note_lost(1);
  pending_bytes_ += bytes;
}

void redis_bus::publish_cb(redisAsyncContext* ac, void* reply, void* priv) {
  auto* self = static_cast<redis_bus*>(ac->data);
  self->on_publish_reply(reply, static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(priv)));
}

void redis_bus::on_publish_reply(void* reply, std::size_t bytes) {
  pending_bytes_ -= std::min(bytes, pending_bytes_);
  const auto* r = static_cast<const redisReply*>(reply);
  // No reply: the connection broke before Redis answered; whether it went out is unknown.
  if (r && r->type == REDIS_REPLY_INTEGER) return (void)++stats_.published;
  note_lost(1);
  // Refused for want of credentials (a password set on Redis meanwhile): reconnect.
  const std::string_view err = str_of(r);
  if (pub_ && (err.starts_with("NOAUTH") || err.starts_with("WRONGPASS"))) redisAsyncDisconnect(pub_);
}

// ------------------------------------------------------------ presence

std::string redis_bus::session_key(const std::string& session) const {
  return o_.channel_prefix + "session:" + session;
}

std::string redis_bus::members_key(const std::string& room) const { return o_.channel_prefix + "members:" + room; }

// A command on the publishing connection, counted with the publications against
// max_pending (a stalled Redis cannot grow our buffers through presence either).
// Past it the command is skipped: presence may then be stale until the next connect.
bool redis_bus::bounded_command(std::size_t bytes, const char* format, ...) {
  if (!up_ || !pub_ || pending_bytes_ + bytes > o_.max_pending) return false;
  va_list ap;
  va_start(ap, format);
  const int r = redisvAsyncCommand(pub_, bytes_cb, reinterpret_cast<void*>(static_cast<std::uintptr_t>(bytes)),
                                   format, ap);
  va_end(ap);
  if (r != REDIS_OK) return false;
  pending_bytes_ += bytes;
  return true;
}

void redis_bus::bytes_cb(redisAsyncContext* ac, void*, void* priv) {
  auto* self = static_cast<redis_bus*>(ac->data);
  self->pending_bytes_ -= std::min(static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(priv)),
                                   self->pending_bytes_);
}

// A new session per connection (and when the current one lapsed or missed an
// update): the previous one's fields and key go, and the source registers every
// local name again (names that left while Redis was away are gone with the old).
void redis_bus::start_session() {
  const std::string old = session_;
  const auto old_fields = std::move(registered_);
  registered_.clear();
  session_ = session_base_ + std::to_string(++sessions_);
  presence_dirty_ = false;
  const std::string key = session_key(session_);
  if (!bounded_command(key.size() + 24, "SET %b 1 PX %lld", key.data(), key.size(),
                       static_cast<long long>(o_.presence_ttl_ms)))
    presence_dirty_ = true;
  if (!old.empty()) end_session(old, old_fields);
  if (presence_)
    for (const auto& [room, name] : presence_()) set_present(room, name, true);
  if (!renew_timer_) arm_renew();
}

// Deletes a session's fields and key (what a skipped command leaves, the members
// script removes, or the hash's expiry).
void redis_bus::end_session(const std::string& session, const std::set<std::pair<std::string, std::string>>& fields) {
  for (const auto& [room, name] : fields) (void)forget(session, room, name);
  const std::string key = session_key(session);
  (void)bounded_command(key.size(), "DEL %b", key.data(), key.size());
}

// One timer for the bus's life, re-armed from itself.
void redis_bus::arm_renew() {
  const auto every = std::chrono::milliseconds(std::max<std::int64_t>(o_.presence_ttl_ms / 3, 1));
  renew_timer_ = ep_.call_after(o_.loop, every, [this] {
    renew_timer_ = 0;
    if (stopped_) return;
    if (up_) renew_session();
    arm_renew();
  });
}

// The session key's lifetime, and the hashes of the rooms we have members in (a
// room whose every instance is gone expires with its dead fields).
void redis_bus::renew_session() {
  if (presence_dirty_ || session_.empty()) return start_session();
  const std::string key = session_key(session_);
  // Not bounded: one a renewal; its reply says whether the key lapsed meanwhile.
  redisAsyncCommand(pub_, renew_cb, reinterpret_cast<void*>(static_cast<std::uintptr_t>(sessions_)),
                    "PEXPIRE %b %lld", key.data(), key.size(), static_cast<long long>(o_.presence_ttl_ms));
  const std::string* last = nullptr;
  for (const auto& [room, name] : registered_) {
    if (last && *last == room) continue;
    last = &room;
    const std::string hash = members_key(room);
    (void)bounded_command(hash.size() + 24, "PEXPIRE %b %lld", hash.data(), hash.size(),
                          static_cast<long long>(3 * o_.presence_ttl_ms));
  }
}

void redis_bus::renew_cb(redisAsyncContext* ac, void* reply, void* priv) {
  auto* self = static_cast<redis_bus*>(ac->data);
  const auto* r = static_cast<const redisReply*>(reply);
  // 0: the key was gone (expired while Redis or we stalled, evicted, deleted): other
  // instances' reads may have removed our fields already. Only for the current session.
  if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0 && self->up_ &&
      reinterpret_cast<std::uintptr_t>(priv) == self->sessions_)
    self->start_session();
}

void redis_bus::set_present(const std::string& room, const std::string& name, bool present) {
  if (!up_ || session_.empty()) return;  // registered again on connecting
  bool sent;
  if (present) {
    const std::string key = members_key(room);
    const std::string field = session_ + '\n' + name;
    sent = bounded_command(key.size() + field.size(), "HSET %b %b 1", key.data(), key.size(), field.data(),
                           field.size()) &&
           bounded_command(key.size() + 24, "PEXPIRE %b %lld", key.data(), key.size(),
                           static_cast<long long>(3 * o_.presence_ttl_ms));
    registered_.emplace(room, name);
  } else {
    sent = forget(session_, room, name);
    registered_.erase({room, name});
  }
  if (!sent) presence_dirty_ = true;
}

// `session`'s field for `name` in `room`'s hash goes.
bool redis_bus::forget(const std::string& session, const std::string& room, const std::string& name) {
  const std::string key = members_key(room);
  const std::string field = session + '\n' + name;
  return bounded_command(key.size() + field.size(), "HDEL %b %b", key.data(), key.size(), field.data(),
                         field.size());
}

void redis_bus::members(const std::string& room, members_fn done) {
  const std::string key = members_key(room);
  const std::string prefix = session_key("");
  const std::size_t bytes = key.size() + prefix.size() + 512;
  if (!up_ || !pub_ || pending_bytes_ + bytes > o_.max_pending) return done(std::nullopt);
  auto req = std::make_shared<members_request>();
  req->done = std::move(done);
  req->bytes = bytes;
  auto* holder = new members_holder(req);
  if (redisAsyncCommand(pub_, members_cb, holder, "EVAL %s 1 %b %b", members_script, key.data(), key.size(),
                        prefix.data(), prefix.size()) != REDIS_OK) {
    delete holder;
    return req->done(std::nullopt);
  }
  pending_bytes_ += bytes;
  req->timer = ep_.call_after(o_.loop, std::chrono::milliseconds(members_timeout_ms), [req] {
    req->timer = 0;
    if (req->answered) return;
    req->answered = true;
    req->done(std::nullopt);  // the late reply finds it answered
  });
}

void redis_bus::members_cb(redisAsyncContext* ac, void* reply, void* priv) {
  auto* self = static_cast<redis_bus*>(ac->data);
  const std::unique_ptr<members_holder> holder(static_cast<members_holder*>(priv));
  members_request& req = **holder;
  self->pending_bytes_ -= std::min(req.bytes, self->pending_bytes_);
  if (req.timer) self->ep_.cancel_timer(req.timer);
  req.timer = 0;
  if (req.answered) return;
  req.answered = true;
  const auto* r = static_cast<const redisReply*>(reply);
  if (!r || r->type != REDIS_REPLY_ARRAY) return req.done(std::nullopt);  // gone, or an error (no scripts?)
  std::vector<std::string> names;
  names.reserve(r->elements);
  for (std::size_t i = 0; i < r->elements; ++i)
    if (r->element[i]->type == REDIS_REPLY_STRING) names.emplace_back(r->element[i]->str, r->element[i]->len);
  req.done(std::move(names));
}

// ------------------------------------------------------------ subscriptions

void redis_bus::ref(const std::string& room, std::function<void()> ready) {
  room_sub& s = rooms_[room];
  ++s.refs;
  if (!up_ || s.state == sub_state::subscribed) return ready();
  s.waiting.push_back(std::move(ready));
  if (s.state == sub_state::none) send_subscribe(room, s);
  // subscribing: the reply runs it; unsubscribing: the reply subscribes again.
}

void redis_bus::unref(const std::string& room) {
  auto it = rooms_.find(room);
  if (it == rooms_.end() || it->second.refs == 0) return;
  room_sub& s = it->second;
  if (--s.refs > 0) return;
  s.waiting.clear();  // members that left meanwhile
  if (s.state == sub_state::subscribed && up_) send_unsubscribe(room, s);
  else if (s.state == sub_state::none) rooms_.erase(it);
  // subscribing: the reply unsubscribes; unsubscribing: already on its way.
}

// One command per channel in flight at most: hiredis 0.14 keeps one callback per
// channel, and an UNSUBSCRIBE answered after a newer SUBSCRIBE would remove it.
void redis_bus::send_subscribe(const std::string& room, room_sub& s) {
  const std::string channel = o_.channel_prefix + room;
  if (redisAsyncCommand(sub_, sub_cb, this, "SUBSCRIBE %b", channel.data(), channel.size()) == REDIS_OK)
    s.state = sub_state::subscribing;
}

void redis_bus::send_unsubscribe(const std::string& room, room_sub& s) {
  const std::string channel = o_.channel_prefix + room;
  if (redisAsyncCommand(sub_, sub_cb, this, "UNSUBSCRIBE %b", channel.data(), channel.size()) == REDIS_OK)
    s.state = sub_state::unsubscribing;
}

void redis_bus::sub_cb(redisAsyncContext*, void* reply, void* priv) {
  static_cast<redis_bus*>(priv)->on_sub_reply(reply);
}

void redis_bus::on_sub_reply(void* reply) {
  const auto* r = static_cast<const redisReply*>(reply);
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;  // null: the connection is going
  const std::string_view kind = str_of(r->element[0]);
  std::string_view channel = str_of(r->element[1]);
  if (!channel.starts_with(o_.channel_prefix)) return;
  const std::string room(channel.substr(o_.channel_prefix.size()));
  if (kind == "message") {
    const std::string_view body = str_of(r->element[2]);
    const auto nl = body.find('\n');
    if (nl == std::string_view::npos) return;
    if (body.substr(0, nl) == o_.instance) return;  // ours: delivered locally already
    ++stats_.received;
    on_message_(room, body.substr(nl + 1));
    return;
  }
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  room_sub& s = it->second;
  if (kind == "subscribe" && s.state == sub_state::subscribing) {
    s.state = sub_state::subscribed;
    if (s.refs == 0) return send_unsubscribe(room, s);
    auto waiting = std::move(s.waiting);
    s.waiting.clear();
    for (auto& ready : waiting) ready();
  } else if (kind == "unsubscribe" && s.state == sub_state::unsubscribing) {
    s.state = sub_state::none;
    if (s.refs > 0) send_subscribe(room, s);
    else rooms_.erase(it);
  }
}

}  // namespace ws6455::tools
