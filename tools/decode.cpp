// ws6455 decode: a raw byte stream on stdin, its events as JSON lines on stdout.
#include <array>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli_options.hpp"
#include "json.hpp"
#include "ws6455/connection.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/permessage_deflate.hpp"

namespace ws6455::tools {
namespace {

constexpr const char* decode_usage =
    "usage: ws6455 decode [--role server|client] [--chunk N] [--max-frame N] [--max-message N]\n"
    "                     [--accept-unmasked] [--deflate[=PARAMS]]\n"
    "       ws6455 decode --handshake [--protocols a,b | --accept-any-protocol] [--deflate] [options]\n"
    "       ws6455 decode --role client --handshake --key KEY [--protocols a,b] [--deflate] [options]\n"
    "       ws6455 decode --help\n";

constexpr const char* decode_help =
    "\n"
    "Reads a raw WebSocket byte stream on stdin and prints its events, one JSON object a\n"
    "line: text (data), binary, ping, pong (hex), close (code, reason), fail (code, reason).\n"
    "A stream that ends without a close frame ends with the connection's end-of-input\n"
    "event, a close with code 1006, marked \"truncated\":\"frame\" when the input stopped\n"
    "inside a frame, or \"truncated\":\"message\" inside a fragmented message.\n"
    "\n"
    "  --role server|client   which end reads the stream (server: frames must be masked)\n"
    "  --chunk N              feed N bytes at a time (the output must not change)\n"
    "  --max-frame N, --max-message N   the limits (config::max_frame_size, max_message_size)\n"
    "  --accept-unmasked      a server takes unmasked frames\n"
    "  --deflate[=PARAMS]     as if permessage-deflate had been negotiated with PARAMS\n"
    "  --handshake            the input starts with an HTTP request (or, as a client, response) head\n"
    "Exit status: 0 when the input was processed, 2 on bad usage.\n";

std::vector<std::byte> read_all(std::FILE* f) {
  std::vector<std::byte> data;
  std::byte buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  return data;
}

std::string event_json(const event& ev) {
  std::string line;
  switch (ev.type) {
    case event_type::text:
      line = "{\"type\":\"text\",\"data\":";
      append_json_string(line, ev.text());
      line += '}';
      break;
    case event_type::binary:
    case event_type::ping:
    case event_type::pong:
      line = ev.type == event_type::binary ? "{\"type\":\"binary\",\"hex\":\""
             : ev.type == event_type::ping ? "{\"type\":\"ping\",\"hex\":\""
                                           : "{\"type\":\"pong\",\"hex\":\"";
      append_hex(line, ev.data);
      line += "\"}";
      break;
    case event_type::close:
      line = "{\"type\":\"close\"";
      if (ev.code != 1005) {  // a close frame without a body has neither code nor reason
        line += ",\"code\":" + std::to_string(ev.code) + ",\"reason\":";
        append_json_string(line, ev.reason);
      }
      line += '}';
      break;
    case event_type::fail:
      line = "{\"type\":\"fail\",\"code\":" + std::to_string(ev.code) + ",\"reason\":";
      append_json_string(line, ev.reason);
      line += '}';
      break;
  }
  return line;
}

// Where a stream that ended without a close stops: inside a frame ("frame"), between
// the fragments of a message ("message"), or between messages (nullptr). Called only
// when the connection took every byte without failing, so the frames are well formed.
const char* truncation(std::span<const std::byte> s) {
  bool in_message = false;
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t left = s.size() - pos;
    if (left < 2) return "frame";
    const auto b0 = static_cast<unsigned>(s[pos]);
    const auto b1 = static_cast<unsigned>(s[pos + 1]);
    const unsigned len7 = b1 & 0x7f;
    const std::size_t header = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((b1 & 0x80) ? 4 : 0);
    if (left < header) return "frame";
    std::uint64_t len = len7;
    if (len7 >= 126) {  // §5.2: 16- or 64-bit network order
      len = 0;
      for (std::size_t i = 0; i < (len7 == 126 ? 2u : 8u); ++i) len = (len << 8) | static_cast<unsigned>(s[pos + 2 + i]);
    }
    if (len > left - header) return "frame";
    pos += header + static_cast<std::size_t>(len);
    if ((b0 & 0x08) == 0) in_message = (b0 & 0x80) == 0;  // a data frame: FIN ends the message
  }
  return in_message ? "message" : nullptr;
}

}  // namespace

// Feeds `data` to `c` (whole, or `chunk` bytes at a time) and prints every event,
// then, when the stream ended without a close or a fail, the end-of-input event
// (feed_eof: close 1006, with where the stream was cut).
void print_events(connection& c, std::span<std::byte> data, std::size_t chunk) {
  std::array<event, 64> events;
  std::string out;
  std::size_t at = 0;
  while (at < data.size() && c.want_read()) {
    const std::size_t end = chunk ? std::min(data.size(), at + chunk) : data.size();
    std::span<std::byte> piece = data.subspan(at, end - at);
    while (!piece.empty()) {
      const auto r = c.feed(piece, events);
      for (std::size_t i = 0; i < r.events; ++i) {
        out += event_json(events[i]);
        out += '\n';
      }
      piece = piece.subspan(r.consumed);
      if (r.consumed == 0 && r.events == 0) break;  // cannot happen; never spin
    }
    at = end;
    if (out.size() > (1u << 20)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  // feed() unmasked payloads in `data` in place; the headers truncation() reads are intact.
  event eof;
  if (c.feed_eof(eof)) {
    std::string line = event_json(eof);
    if (const char* where = truncation(data)) {
      line.pop_back();  // the closing brace
      line += ",\"truncated\":\"";
      line += where;
      line += "\"}";
    }
    out += line;
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

struct handshake_options {
  std::vector<std::string> protocols;
  bool accept_any = false;
  bool deflate = false;
  std::string key;
};

// The server's side of the opening handshake on the head at the start of `data`, then
// (on 101) the frames after it.
void decode_server_handshake(std::span<std::byte> data, config cfg, std::size_t chunk, const handshake_options& o) {
  server_handshake hs;
  std::size_t used = 0;
  // Fed in the same pieces as the frames, to exercise the incremental parser too.
  while (used < data.size() && hs.state() == handshake_state::need_more) {
    const std::size_t piece = chunk ? std::min(chunk, data.size() - used) : data.size() - used;
    const std::size_t took = hs.feed(data.subspan(used, piece));
    used += took;
    if (took < piece) break;  // the head ended inside this piece
  }
  if (hs.state() == handshake_state::request_ready) {
    accept_options opts;
    if (o.accept_any) {
      opts.policy = subprotocol_policy::accept_any;
    } else if (!o.protocols.empty()) {
      opts.policy = subprotocol_policy::prefer_client;
      opts.protocols = o.protocols;
    }
    if (o.deflate) {
      permessage_deflate::server_options deflate_opts;
      deflate_opts.compress_threshold = 0;
      if (auto agreed = permessage_deflate::negotiate(hs.request().offered_extensions(), deflate_opts)) {
        opts.extensions = agreed->response;
        cfg.deflate = agreed->params;
      }
    }
    hs.accept(opts);
  }
  std::string line = "{\"type\":\"handshake\",\"status\":" + std::to_string(hs.status()) + ",\"target\":";
  append_json_string(line, hs.request().target());
  line += ",\"response\":";
  append_json_string(line, hs.response());
  line += "}\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  if (hs.state() != handshake_state::done) return;
  connection c(role::server, cfg);
  print_events(c, data.subspan(used), chunk);
}

// The client's side: the response head at the start of `data` answers a request sent
// with o.key (and o.protocols); on success the server's frames follow.
void decode_client_handshake(std::span<std::byte> data, config cfg, std::size_t chunk, const handshake_options& o) {
  client_options opts;
  opts.key = o.key;
  opts.protocols = o.protocols;
  permessage_deflate::client_options deflate_opts;
  deflate_opts.compress_threshold = 0;
  if (o.deflate) opts.extensions = permessage_deflate::make_offer(deflate_opts);
  client_handshake hs(*parse_ws_url("ws://localhost/"), opts);
  std::size_t used = 0;
  while (used < data.size() && hs.state() == handshake_state::need_more) {
    const std::size_t piece = chunk ? std::min(chunk, data.size() - used) : data.size() - used;
    const std::size_t took = hs.feed(data.subspan(used, piece));
    used += took;
    if (took < piece) break;
  }
  std::string reason(hs.reason());
  bool ok = hs.state() == handshake_state::done;
  if (hs.state() == handshake_state::need_more) reason = "incomplete response head";
  if (ok) {
    // No Sec-WebSocket-Extensions in the 101 gives nullopt: no compression.
    auto params = permessage_deflate::validate_response(hs.extensions(), deflate_opts);
    if (params) {
      cfg.deflate = *params;
    } else {
      ok = false;
      reason = params.error();
    }
  }
  std::string line = "{\"type\":\"handshake\",\"status\":" + std::to_string(hs.status()) +
                     ",\"ok\":" + (ok ? "true" : "false");
  if (!ok) {
    line += ",\"reason\":";
    append_json_string(line, reason);
  }
  line += "}\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  if (!ok) return;
  connection c(role::client, cfg);
  print_events(c, data.subspan(used), chunk);
}

}  // namespace ws6455::tools

int decode_main(int argc, char** argv) {
  using namespace ws6455;
  using namespace ws6455::tools;
  role r = role::server;
  config cfg;
  std::size_t chunk = 0;
  bool handshake = false;
  handshake_options hs_opts;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(decode_usage, stdout);
      std::fputs(decode_help, stdout);
      return 0;
    }
    if (auto v = option_value(argc, argv, i, "--role")) {
      auto parsed = parse_role(*v);
      if (!parsed) { std::fprintf(stderr, "ws6455 decode: --role is server or client\n%s", decode_usage); return 2; }
      r = *parsed;
    } else if (auto v = option_value(argc, argv, i, "--chunk")) {
      auto n = parse_size(*v);
      if (!n || *n == 0) { std::fprintf(stderr, "ws6455 decode: --chunk takes a positive number\n"); return 2; }
      chunk = *n;
    } else if (auto v = option_value(argc, argv, i, "--max-frame")) {
      auto n = parse_size(*v);
      if (!n) { std::fprintf(stderr, "ws6455 decode: --max-frame takes a number\n"); return 2; }
      cfg.max_frame_size = *n;
    } else if (auto v = option_value(argc, argv, i, "--max-message")) {
      auto n = parse_size(*v);
      if (!n) { std::fprintf(stderr, "ws6455 decode: --max-message takes a number\n"); return 2; }
      cfg.max_message_size = *n;
    } else if (arg == "--accept-unmasked") {
      cfg.accept_unmasked_frames = true;
    } else if (arg == "--handshake") {
      handshake = true;
    } else if (arg == "--accept-any-protocol") {
      hs_opts.accept_any = true;
    } else if (auto v = option_value(argc, argv, i, "--protocols")) {
      hs_opts.protocols = split_commas(*v);
    } else if (auto v = option_value(argc, argv, i, "--key")) {
      hs_opts.key = std::string(*v);
    } else if (arg == "--deflate" || arg.starts_with("--deflate=")) {
      hs_opts.deflate = true;
      auto p = parse_deflate_option(arg == "--deflate" ? std::string_view{} : arg.substr(10));
      if (!p) { std::fprintf(stderr, "ws6455 decode: --deflate: %s\n", p.error().c_str()); return 2; }
      cfg.deflate = *p;
    } else {
      std::fprintf(stderr, "ws6455 decode: unknown option '%s'\n%s", argv[i], decode_usage);
      return 2;
    }
  }
  if (handshake && r == role::client && hs_opts.key.empty()) {
    std::fprintf(stderr, "ws6455 decode: --role client --handshake needs --key KEY\n%s", decode_usage);
    return 2;
  }
  if (!handshake && (hs_opts.accept_any || !hs_opts.protocols.empty() || !hs_opts.key.empty())) {
    std::fprintf(stderr, "ws6455 decode: --protocols, --accept-any-protocol and --key go with --handshake\n");
    return 2;
  }
  std::vector<std::byte> data = read_all(stdin);
  if (handshake) {
    // The negotiation decides the deflate parameters, not the command line.
    cfg.deflate.reset();
    if (r == role::server) decode_server_handshake(data, cfg, chunk, hs_opts);
    else decode_client_handshake(data, cfg, chunk, hs_opts);
    return 0;
  }
  connection c(r, cfg);
  print_events(c, data, chunk);
  return 0;
}
