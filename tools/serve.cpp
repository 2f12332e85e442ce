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
#include <thread>
#include <unordered_map>
#include <vector>

#include "cli_options.hpp"
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
    "  echo: every text or binary message is sent back (any path)\n"
    "  chat: ws://HOST:PORT/chat/ROOM (or /?room=ROOM; default room 'lobby'): messages go to the room\n"
    "  GET or HEAD / without an upgrade answers a test page; other plain requests get 404.\n"
    "  --backend: auto (default) uses io_uring where the kernel allows it, else epoll (and says so)\n"
    "  --threads: loops, one per thread, sharing the port (SO_REUSEPORT); 0 = one per core; default 1\n"
    "  --protocols: the subprotocols served; the client's first offer that is listed wins\n"
    "    (default: --accept-any-protocol, the client's first offer whatever it is)\n"
    "  Limits: --max-message default 64 MiB (frames 16 MiB, or the message limit if smaller);\n"
    "    output refused past 128 MiB per connection (then closed with 1008); reading a\n"
    "    connection pauses above 512 KiB of pending output.\n"
    "  Timeouts in seconds (fractions allowed; 0 disables idle and ping); defaults: handshake 10,\n"
    "    idle 120, ping 30, close 5. SIGINT/SIGTERM: close 1001, exit 0.\n"
    "  --tls-cert/--tls-key: serve wss:// and https:// (PEM certificate chain and key; TLS 1.2\n"
    "    and 1.3, user space). SIGHUP reads them again: new connections get the new certificate,\n"
    "    open ones stay. --tls-sni CERT,KEY (repeatable): more certificates, each served to the\n"
    "    clients that ask for one of its names (SNI); others get --tls-cert's.\n";

// The test page: connects back to the server it came from. @PATH@ is the default path.
constexpr const char* page_template = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ws6455</title><link rel="icon" href="data:,">
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:50em}#log{border:1px solid #ccc;margin-bottom:.5em;
height:20em;overflow:auto;padding:.5em;white-space:pre-wrap;font-family:monospace}input{font:inherit}</style>
</head><body>
<h1>ws6455 @MODE@</h1>
<p>Path <input id="path" value="@PATH@" size="30"> <button id="connect">connect</button>
<button id="close" disabled>close</button></p>
<div id="log"></div>
<form id="form"><input id="text" size="50" autocomplete="off" placeholder="message" disabled>
<button id="send" disabled>send</button></form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let ws = null;
function log(s) { const d = $("log"); d.textContent += s + "\n"; d.scrollTop = d.scrollHeight; }
function ui(open) { $("text").disabled = $("send").disabled = $("close").disabled = !open; $("connect").disabled = open; }
$("connect").onclick = () => {
  $("connect").disabled = true;  // one socket at a time, even on a double click
  if (ws) ws.close();
  let path = $("path").value;
  if (!path.startsWith("/")) path = "/" + path;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  try { ws = new WebSocket(url); } catch (err) { log("-- error " + err.message); ui(false); return; }
  ws.onopen = () => { log("-- open " + url); ui(true); $("text").focus(); };
  ws.onmessage = (e) => log("<< " + (typeof e.data === "string" ? e.data : "[binary]"));
  ws.onclose = (e) => { log("-- close " + e.code + " " + e.reason); ui(false); };
  ws.onerror = () => log("-- error");
};
$("close").onclick = () => ws && ws.close(1000, "bye");
$("form").onsubmit = (e) => { e.preventDefault(); if (ws && $("text").value) { ws.send($("text").value); log(">> " + $("text").value); $("text").value = ""; } };
</script></body></html>
)html";

std::string make_page(bool chat) {
  std::string page = page_template;
  auto put = [&](std::string_view key, std::string_view value) {
    const auto at = page.find(key);
    if (at != std::string::npos) page.replace(at, key.size(), value);
  };
  put("@MODE@", chat ? "chat" : "echo");
  put("@PATH@", chat ? "/chat/lobby" : "/");
  return page;
}

// Chat rooms are the server's topics, which span loops (--threads): a message is
// encoded once and reaches every member, on whichever loop, once.
class app final : public io::handler {
 public:
  app(bool chat, std::string page, io::upgrade_reply protocols)
      : chat_(chat), page_(std::move(page)), protocols_(std::move(protocols)) {}
  io::server* server = nullptr;

  void on_open(io::conn_id id, const http_request& req, io::upgrade_reply& reply) override {
    reply.options.policy = protocols_.options.policy;
    reply.options.protocols = protocols_.options.protocols;
    if (!chat_) return;
    std::string name;
    if (req.path().starts_with("/chat/") && req.path().size() > 6) {
      name = percent_decode(req.path().substr(6));
    } else if (req.path() == "/" || req.path() == "/chat") {
      name = req.query_param("room").value_or("lobby");
    } else {
      reply.reject(404, "no such room path: use /chat/ROOM\n");
      return;
    }
    server->subscribe(id, name);
    server->set_user_data(id, new std::string(std::move(name)));  // this connection's room
  }

  bool on_http(const http_request& req, io::http_reply& reply) override {
    if (req.path() == "/") {
      reply.status = 200;
      reply.content_type = "text/html; charset=utf-8";
      reply.body = page_;
    } else {
      reply.status = 404;
      reply.body = "not found\n";
    }
    return true;
  }

  void on_message(io::conn_id id, const event& ev) override {
    if (chat_) {
      const auto* room = static_cast<const std::string*>(server->user_data(id));
      if (!room) return;
      server->publish(*room, prepared_message(ev.type == event_type::text ? opcode::text : opcode::binary, ev.data));
      return;
    }
    const send_result s = ev.type == event_type::text ? server->send_text(id, ev.text(), /*trusted_utf8=*/true)
                                                      : server->send_binary(id, ev.data);
    // Past max_write_buffer_size: the peer does not read its echoes; give up on it.
    if (s == send_result::backpressure) (void)server->close(id, 1008, "output buffer full");
  }

  void on_close(io::conn_id id, std::uint16_t, std::string_view) override {
    delete static_cast<std::string*>(server->user_data(id));  // topics are left by the server
  }

 private:
  bool chat_;
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
      if (!n || *n == 0) { std::fprintf(stderr, "ws6455 serve: --max-message takes a positive number\n"); return 2; }
      opts.ws.max_message_size = *n;
      opts.ws.max_frame_size = std::min(opts.ws.max_frame_size, *n);
      opts.ws.max_write_buffer_size = std::max<std::size_t>(opts.ws.max_write_buffer_size, 2 * *n + 64);
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
               seconds("--close-timeout", opts.close_timeout)) {
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

  app handler(chat, make_page(chat), std::move(protocols));
  io::server server(opts, handler);
  handler.server = &server;
  auto port = server.listen();
  if (!port) {
    std::fprintf(stderr, "ws6455 serve: %s\n", port.error().c_str());
    return 1;
  }
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
               tls ? ", user-space TLS (kernel TLS is not implemented)" : "");
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
  if (reloader.joinable()) {
    quit_reload = true;
    reloader.join();
  }
  if (rc != 0) {
    std::fprintf(stderr, "ws6455 serve: the event loop failed: %s\n", std::strerror(errno));
    return 1;
  }
  return 0;
}
