// ws6455 encode: JSON lines on stdin, the frames a connection would send on stdout.
// The reverse of decode, for interop tests and for crafting captures.
//   {"type":"text","data":"…"}   {"type":"binary","hex":"…"}   {"type":"ping","hex":"…"}
//   {"type":"pong","hex":"…"}    {"type":"close","code":1000,"reason":"…"}
// "fin":false on text/binary sends a fragment; the message goes on with the next line
// of the same type (or "continuation") until one without it.
#include <cstdio>
#include <iostream>
#include <string>

#include "cli_options.hpp"
#include "json.hpp"
#include "ws6455/connection.hpp"

namespace {

constexpr const char* encode_usage =
    "usage: ws6455 encode [--role server|client] [--deflate[=PARAMS]]\n"
    "       ws6455 encode --help\n";

constexpr const char* encode_help =
    "\n"
    "Reads messages as JSON lines on stdin and writes the frames a connection in that role\n"
    "would send to stdout (a client masks them):\n"
    "  {\"type\":\"text\",\"data\":\"...\"}  {\"type\":\"binary\"|\"ping\"|\"pong\",\"hex\":\"...\"}\n"
    "  {\"type\":\"close\",\"code\":1000,\"reason\":\"...\"}\n"
    "\"fin\":false on text/binary sends a fragment; the message goes on with the next line.\n"
    "Exit status: 0 when every line was encoded, 2 on bad usage or input.\n";

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

int encode_main(int argc, char** argv) {
  using namespace ws6455;
  using namespace ws6455::tools;
  role r = role::server;
  config cfg;
  cfg.max_write_buffer_size = SIZE_MAX;  // the tool drains after every line
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(encode_usage, stdout);
      std::fputs(encode_help, stdout);
      return 0;
    }
    if (auto v = option_value(argc, argv, i, "--role")) {
      auto parsed = parse_role(*v);
      if (!parsed) { std::fprintf(stderr, "ws6455 encode: --role is server or client\n%s", encode_usage); return 2; }
      r = *parsed;
    } else if (arg == "--deflate" || arg.starts_with("--deflate=")) {
      auto p = parse_deflate_option(arg == "--deflate" ? std::string_view{} : arg.substr(10));
      if (!p) { std::fprintf(stderr, "ws6455 encode: --deflate: %s\n", p.error().c_str()); return 2; }
      cfg.deflate = *p;
    } else {
      std::fprintf(stderr, "ws6455 encode: unknown option '%s'\n%s", argv[i], encode_usage);
      return 2;
    }
  }
  connection c(r, cfg);
  std::string line;
  int line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (line.empty()) continue;
    auto obj = parse_flat_object(line);
    if (!obj || !obj->contains("type")) {
      std::fprintf(stderr, "ws6455 encode: line %d is not a JSON object with a type\n", line_no);
      return 2;
    }
    const std::string& type = (*obj)["type"];
    std::string payload;
    if (auto it = obj->find("data"); it != obj->end()) payload = it->second;
    if (auto it = obj->find("hex"); it != obj->end()) {
      auto raw = from_hex(it->second);
      if (!raw) { std::fprintf(stderr, "ws6455 encode: line %d: bad hex\n", line_no); return 2; }
      payload = *raw;
    }
    const bool fragment = obj->contains("fin") && (*obj)["fin"] == "false";
    send_result res = send_result::ok;
    if (type == "text" || type == "binary" || type == "continuation") {
      const opcode op = type == "text" ? opcode::text : type == "binary" ? opcode::binary : opcode::continuation;
      const bool in_fragments = fragment || type == "continuation" || obj->contains("fin");
      if (in_fragments) res = c.send_fragment(op, bytes_of(payload), !fragment);
      else if (op == opcode::text) res = c.send_text(payload);
      else res = c.send_binary(bytes_of(payload));
    } else if (type == "ping") {
      res = c.send_ping(bytes_of(payload));
    } else if (type == "pong") {
      res = c.send_pong(bytes_of(payload));
    } else if (type == "close") {
      std::uint16_t code = 1005;
      if (auto it = obj->find("code"); it != obj->end()) code = static_cast<std::uint16_t>(std::stoul(it->second));
      std::string reason;
      if (auto it = obj->find("reason"); it != obj->end()) reason = it->second;
      res = c.close(code, reason);
    } else {
      std::fprintf(stderr, "ws6455 encode: line %d: unknown type '%s'\n", line_no, type.c_str());
      return 2;
    }
    if (res != send_result::ok) {
      std::fprintf(stderr, "ws6455 encode: line %d: %.*s\n", line_no, static_cast<int>(describe(res).size()),
                   describe(res).data());
      return 1;
    }
    const auto out = c.pending_output();
    std::fwrite(out.data(), 1, out.size(), stdout);
    c.consume_output(out.size());
  }
  return 0;
}
