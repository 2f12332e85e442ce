// ws6455: one CLI for the engine's tools.
#include <cstdio>
#include <cstring>
#include <string_view>

int decode_main(int argc, char** argv);
int encode_main(int argc, char** argv);
int serve_main(int argc, char** argv);
int connect_main(int argc, char** argv);
int load_main(int argc, char** argv);

static void usage(std::FILE* f) {
  std::fputs(
      "usage: ws6455 <command> [options]\n"
      "commands:\n"
      "  decode    read a raw byte stream on stdin, print its events as JSON lines\n"
      "  encode    read messages as JSON lines on stdin, write their frames to stdout\n"
      "  serve     run an echo or chat WebSocket server (epoll), with a test page at /\n"
      "  connect   a WebSocket client: stdin lines out as text, messages received on stdout\n"
      "  load      an echo load generator: many connections, every byte checked, latency percentiles\n",
      f);
}

int main(int argc, char** argv) {
  if (argc < 2) { usage(stderr); return 2; }
  const std::string_view cmd = argv[1];
  if (cmd == "decode") return decode_main(argc - 1, argv + 1);
  if (cmd == "encode") return encode_main(argc - 1, argv + 1);
  if (cmd == "serve") return serve_main(argc - 1, argv + 1);
  if (cmd == "connect") return connect_main(argc - 1, argv + 1);
  if (cmd == "load") return load_main(argc - 1, argv + 1);
  if (cmd == "help" || cmd == "--help" || cmd == "-h") { usage(stdout); return 0; }
  std::fprintf(stderr, "ws6455: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
