// ws6455 serve: an echo or chat server over the socket adapters (epoll or
// io_uring, one loop per thread), with a small browser page at GET /.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <optional>
#include <thread>
#include <vector>

#include "chat.hpp"
#include "cli_options.hpp"
#include "page.hpp"
#include "ws6455/io/server.hpp"

namespace ws6455::tools {
namespace {

constexpr const char* serve_usage =
    "usage: ws6455 serve [--host 127.0.0.1] [--port 8080] [--mode echo|chat] [--deflate]\n"
    "                    [--backend auto|epoll|io_uring] [--threads N]\n"
    "                    [--protocols a,b,... | --accept-any-protocol]\n"
    "                    [--max-message N] [--idle-timeout S] [--ping-interval S]\n"
    "                    [--handshake-timeout S] [--close-timeout S]\n"
    "                    [--tls-cert FILE --tls-key FILE [--tls-sni CERT,KEY]...]\n"
    "                    [--redis redis://[:PASSWORD@]HOST[:PORT][/DB] [--redis-channel-prefix P]\n"
    "                     [--redis-max-pending BYTES] [--redis-presence-ttl S]] [--instance ID]\n"
    "  echo: every text or binary message is sent back (any path)\n"
    "  chat: JSON rooms (docs/chat.md): ws://HOST:PORT/chat/ROOM joins ROOM, /chat or /?room=ROOM;\n"
    "    ?name=NAME; GET /stats answers counters as JSON. --max-message bounds a message's content\n"
    "    (default 64 KiB). --redis: rooms span every instance on that Redis (pub/sub channels\n"
    "    PREFIX+ROOM, default prefix 'ws6455:chat:'); publications awaiting Redis are bounded by\n"
    "    --redis-max-pending (default 16 MiB; dropped and counted past it). A newcomer's members\n"
    "    list names every instance's members (kept in Redis hashes PREFIX+'members:'+ROOM); a\n"
    "    crashed instance's members stay listed --redis-presence-ttl seconds (default 15).\n"
    "    --instance: this process's id in message ids and Redis tags (default: random)\n"
    "  GET or HEAD / without an upgrade answers a test page (chat: and /stats); other plain requests get 404.\n"
    "  --backend: auto (default) uses io_uring where the kernel allows it, else epoll (and says so)\n"
    "  --threads: loops, one per thread, sharing the port (SO_REUSEPORT); 0 = one per core; default 1\n"
    "  --protocols: the subprotocols served; the client's first offer that is listed wins\n"
    "    (default: --accept-any-protocol, the client's first offer whatever it is)\n"
    "  Limits: --max-message default 64 MiB in echo mode (frames 16 MiB, or the message limit if smaller);\n"
    "    output refused past 128 MiB per connection (then closed with 1008); reading a\n"
    "    connection pauses above 512 KiB of pending output.\n"
    "  Timeouts in seconds (fractions allowed; 0 disables idle and ping); defaults: handshake 10,\n"
    "    idle 120, ping 30, close 5. SIGINT/SIGTERM: close 1001, exit 0.\n"
    "  --tls-cert/--tls-key: serve wss:// and https:// (PEM certificate chain and key; TLS 1.2\n"
    "    and 1.3, user space). SIGHUP reads them again: new connections get the new certificate,\n"
    "    open ones stay. --tls-sni CERT,KEY (repeatable): more certificates, each served to the\n"
    "    clients that ask for one of its names (SNI); others get --tls-cert's.\n";

// The echo server: every message goes back to its sender.
class echo_app final : public io::handler {
 public:
  echo_app(std::string page, io::upgrade_reply protocols) : page_(std::move(page)), protocols_(std::move(protocols)) {}
  io::server* server = nullptr;

  void on_open(io::conn_id, const http_request&, io::upgrade_reply& reply) override {
    reply.options.policy = protocols_.options.policy;
    reply.options.protocols = protocols_.options.protocols;
  }

  bool on_http(const http_request& req, io::http_reply& reply) override {
    (void)answer_page(req, reply, page_);
    return true;
  }

  void on_message(io::conn_id id, const event& ev) override {
    const send_result s = ev.type == event_type::text ? server->send_text(id, ev.text(), /*trusted_utf8=*/true)
                                                      : server->send_binary(id, ev.data);
    // Past max_write_buffer_size: the peer does not read its echoes; give up on it.
    if (s == send_result::backpressure) (void)server->close(id, 1008, "output buffer full");
  }

 private:
  std::string page_;
  io::upgrade_reply protocols_;
};

io::server* g_server = nullptr;

extern "C" void on_stop_signal(int) {
  if (g_server) g_server->request_stop();  // eventfd writes: async-signal-safe
}

// SIGHUP: the handler only writes a byte to a pipe (async-signal-safe); a thread
// reads it and reloads the certificate (OpenSSL is not signal-safe).
int g_hup_pipe[2] = {-1, -1};
extern "C" void on_hup_signal(int) {
  const char b = 'h';
  const ssize_t r = ::write(g_hup_pipe[1], &b, 1);
  (void)r;
}

void reload_thread(io::server& server, const std::atomic<bool>& quit) {
  while (!quit) {
    pollfd p{g_hup_pipe[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;  // wakes to notice `quit`
    char buf[64];
    if (::read(g_hup_pipe[0], buf, sizeof buf) <= 0) continue;
    const std::string why = server.reload_tls();
    if (why.empty()) std::fprintf(stderr, "ws6455 serve: SIGHUP: certificate reloaded\n");
    else std::fprintf(stderr, "ws6455 serve: SIGHUP: reload failed, the old certificate stays: %s\n", why.c_str());
  }
}

std::optional<std::chrono::milliseconds> parse_seconds(std::string_view s) {
  const std::string str(s);
  char* end = nullptr;
  const double v = std::strtod(str.c_str(), &end);
  if (str.empty() || *end != '\0' || !(v >= 0) || v > 1e7) return std::nullopt;
  return std::chrono::milliseconds(static_cast<long long>(v * 1000 + 0.5));
}

}  // namespace
}  // namespace ws6455::tools

int serve_main(int argc, char** argv) {
  using namespace ws6455;
  using namespace ws6455::tools;
  io::server_options opts;  // the library's limits: 64 MiB messages, 16 MiB frames
  io::upgrade_reply protocols;
  protocols.options.policy = subprotocol_policy::accept_any;
  bool chat = false;
  std::optional<std::size_t> max_message;
  chat_options chat_opts;
  std::string redis_url;
  std::chrono::milliseconds presence_ttl{chat_opts.redis_options.presence_ttl_ms};
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto seconds = [&](std::string_view name, std::chrono::milliseconds& out) {
      auto v = option_value(argc, argv, i, name);
      if (!v) return false;
      auto ms = parse_seconds(*v);
      if (!ms) {
        std::fprintf(stderr, "ws6455 serve: %.*s takes seconds\n", static_cast<int>(name.size()), name.data());
        std::exit(2);
      }
      out = *ms;
      return true;
    };
    if (auto v = option_value(argc, argv, i, "--host")) {
      opts.host = std::string(*v);
    } else if (auto v = option_value(argc, argv, i, "--port")) {
      auto n = parse_size(*v);
      if (!n || *n > 65535) { std::fprintf(stderr, "ws6455 serve: --port takes 0..65535\n"); return 2; }
      opts.port = static_cast<std::uint16_t>(*n);
    } else if (auto v = option_value(argc, argv, i, "--mode")) {
      if (*v != "echo" && *v != "chat") { std::fprintf(stderr, "ws6455 serve: --mode is echo or chat\n"); return 2; }
      chat = *v == "chat";
    } else if (arg == "--deflate") {
      opts.deflate = true;
    } else if (auto v = option_value(argc, argv, i, "--backend")) {
      if (*v == "auto") opts.backend = io::backend::automatic;
      else if (*v == "epoll") opts.backend = io::backend::epoll;
      else if (*v == "io_uring") opts.backend = io::backend::io_uring;
      else { std::fprintf(stderr, "ws6455 serve: --backend is auto, epoll or io_uring\n"); return 2; }
    } else if (auto v = option_value(argc, argv, i, "--threads")) {
      auto n = parse_size(*v);
      if (!n || *n > 64) { std::fprintf(stderr, "ws6455 serve: --threads takes 0..64\n"); return 2; }
      opts.threads = static_cast<unsigned>(*n);
    } else if (auto v = option_value(argc, argv, i, "--protocols")) {
      protocols.options.policy = subprotocol_policy::prefer_client;
      protocols.options.protocols = split_commas(*v);
    } else if (arg == "--accept-any-protocol") {
      protocols.options.policy = subprotocol_policy::accept_any;
      protocols.options.protocols.clear();
    } else if (auto v = option_value(argc, argv, i, "--max-message")) {
      auto n = parse_size(*v);
      if (!n || *n == 0 || *n > (std::size_t{1} << 40)) {
        std::fprintf(stderr, "ws6455 serve: --max-message takes a positive number\n");
        return 2;
      }
      max_message = *n;
    } else if (auto v = option_value(argc, argv, i, "--redis")) {
      redis_url = std::string(*v);
    } else if (auto v = option_value(argc, argv, i, "--redis-channel-prefix")) {
      chat_opts.redis_options.channel_prefix = std::string(*v);
    } else if (auto v = option_value(argc, argv, i, "--redis-max-pending")) {
      auto n = parse_size(*v);
      if (!n || *n == 0) { std::fprintf(stderr, "ws6455 serve: --redis-max-pending takes a positive number\n"); return 2; }
      chat_opts.redis_options.max_pending = *n;
    } else if (auto v = option_value(argc, argv, i, "--instance")) {
      if (v->empty() || v->size() > 64 || v->find_first_of("\n\r ") != std::string_view::npos) {
        std::fprintf(stderr, "ws6455 serve: --instance takes 1 to 64 bytes, no spaces or line breaks\n");
        return 2;
      }
      chat_opts.instance = std::string(*v);
    } else if (auto v = option_value(argc, argv, i, "--tls-cert")) {
      opts.tls.cert_file = std::string(*v);
    } else if (auto v = option_value(argc, argv, i, "--tls-key")) {
      opts.tls.key_file = std::string(*v);
    } else if (auto v = option_value(argc, argv, i, "--tls-sni")) {
      // Another certificate, for the names it carries (SNI, RFC 6066 §3).
      const auto comma = v->find(',');
      if (comma == std::string_view::npos || comma == 0 || comma + 1 == v->size()) {
        std::fprintf(stderr, "ws6455 serve: --tls-sni takes CERT,KEY\n");
        return 2;
      }
      opts.tls.sni_certificates.push_back({std::string(v->substr(0, comma)), std::string(v->substr(comma + 1))});
    } else if (seconds("--idle-timeout", opts.idle_timeout) || seconds("--ping-interval", opts.ping_interval) ||
               seconds("--handshake-timeout", opts.handshake_timeout) ||
               seconds("--close-timeout", opts.close_timeout) || seconds("--redis-presence-ttl", presence_ttl)) {
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(serve_usage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "ws6455 serve: unknown option '%s'\n%s", argv[i], serve_usage);
      return 2;
    }
  }
  if (opts.handshake_timeout.count() == 0 || opts.close_timeout.count() == 0) {
    std::fprintf(stderr, "ws6455 serve: handshake and close timeouts must be positive\n");
    return 2;
  }

  if (opts.tls.cert_file.empty() != opts.tls.key_file.empty()) {
    std::fprintf(stderr, "ws6455 serve: --tls-cert and --tls-key go together\n");
    return 2;
  }
  const bool tls = !opts.tls.cert_file.empty();
  if (!redis_url.empty() && !chat) {
    std::fprintf(stderr, "ws6455 serve: --redis is for --mode chat\n");
    return 2;
  }
  if (!redis_url.empty()) {
    auto url = parse_redis_url(redis_url);
    if (!url) {
      std::fprintf(stderr, "ws6455 serve: --redis: %s\n", url.error().c_str());
      return 2;
    }
    chat_opts.redis = true;
    chat_opts.redis_options.url = std::move(*url);
    if (presence_ttl.count() < 1000) {  // renewed every third of it
      std::fprintf(stderr, "ws6455 serve: --redis-presence-ttl takes at least 1 second\n");
      return 2;
    }
    chat_opts.redis_options.presence_ttl_ms = presence_ttl.count();
  }
  if (chat) {
    // --max-message bounds a chat message's content; the frame layer lets its JSON
    // envelope through (escapes may take 6 bytes a byte, plus the other fields).
    chat_opts.max_content = max_message.value_or(64u << 10);
    opts.ws.max_message_size = std::min<std::size_t>(opts.ws.max_message_size, 6 * chat_opts.max_content + 4096);
    opts.ws.max_frame_size = std::min(opts.ws.max_frame_size, opts.ws.max_message_size);
    if (chat_opts.instance.empty()) chat_opts.instance = random_instance_id();
    chat_opts.protocols = protocols;
  } else if (max_message) {
    opts.ws.max_message_size = *max_message;
    opts.ws.max_frame_size = std::min(opts.ws.max_frame_size, *max_message);
    opts.ws.max_write_buffer_size = std::max<std::size_t>(opts.ws.max_write_buffer_size, 2 * *max_message + 64);
  }

  echo_app echo(make_page(false), std::move(protocols));
  chat_app chat_handler(std::move(chat_opts), make_page(true));
  io::handler& handler = chat ? static_cast<io::handler&>(chat_handler) : echo;
  io::server server(opts, handler);
  echo.server = &server;
  auto port = server.listen();
  if (!port) {
    std::fprintf(stderr, "ws6455 serve: %s\n", port.error().c_str());
    return 1;
  }
  if (chat) chat_handler.attach(server);  // Redis connects once loop 0 runs
  g_server = &server;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // sendmsg uses MSG_NOSIGNAL; this is belt and braces

  const bool v6 = opts.host.find(':') != std::string::npos;
  std::fprintf(stderr, "ws6455 serve: %s, %u loop%s%s\n", std::string(io::to_string(server.active_backend())).c_str(),
               server.threads(), server.threads() == 1 ? "" : "s",
               tls ? ", TLS (sent through kernel TLS where the kernel has it)" : "");
  std::atomic<bool> quit_reload{false};
  std::thread reloader;
  if (tls && pipe2(g_hup_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
    struct sigaction hup {};
    hup.sa_handler = on_hup_signal;
    sigemptyset(&hup.sa_mask);
    hup.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &hup, nullptr);
    reloader = std::thread(reload_thread, std::ref(server), std::cref(quit_reload));
  }
  std::printf("listening on %s://%s%s%s:%u/\n", tls ? "wss" : "ws", v6 ? "[" : "", opts.host.c_str(), v6 ? "]" : "",
              *port);
  std::fflush(stdout);
  const int rc = server.run();
  g_server = nullptr;
  chat_handler.stop();  // Redis: after the loops, whose thread (this one) drove it
  if (reloader.joinable()) {
    quit_reload = true;
    reloader.join();
  }
  if (rc != 0) {
    std::fprintf(stderr, "ws6455 serve: the event loop failed: %s\n", std::strerror(errno));
    return 1;
  }
  if (tls) {
    const io::io_stats st = server.stats();
    std::fprintf(stderr, "ws6455 serve: TLS: %llu handshakes, %llu sent through kernel TLS, %llu failed\n",
                 static_cast<unsigned long long>(st.tls_handshakes), static_cast<unsigned long long>(st.ktls_switched),
                 static_cast<unsigned long long>(st.tls_failures));
  }
  return 0;
}
