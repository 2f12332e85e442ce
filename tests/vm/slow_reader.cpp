// A wss:// echo client that reads slowly, for the kernel TLS test
// (tests/test_ktls_vm.py). It sends MESSAGES binary messages of 1 MiB and a close,
// while reading at most 16 KiB every PAUSE_MS through a receive buffer of RCVBUF
// bytes: the server writes under backpressure and closes while the reader lags
// (with small send buffers, its last records, close and close_notify meet a full
// socket). Everything must still arrive before the server's FIN: every echo byte,
// the close 1000, then close_notify (RFC 8446 §6.1).
//
// Plain OpenSSL and a hand-made client, so that what is tested is the server alone.
// Usage: slow_reader HOST PORT CA_FILE MESSAGES PAUSE_MS RCVBUF
// Prints one line: "SLOW|ok|..." or "SLOW|fail|reason"; exit 0 or 1.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t message_size = 1u << 20;
constexpr std::size_t read_chunk = 16u << 10;
constexpr auto time_limit = std::chrono::seconds(120);
constexpr unsigned char mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

std::uint8_t pattern(std::size_t message, std::size_t at) {
  return static_cast<std::uint8_t>(message * 131 + at * 7 + (at >> 12));
}

int fail(const std::string& why) {
  std::printf("SLOW|fail|%s\n", why.c_str());
  std::fflush(stdout);  // a sanitizer's exit would not flush it
  return 1;
}

// A masked client frame (RFC 6455 §5.2, §5.3).
void append_frame(std::string& out, unsigned opcode, const std::string& payload) {
  out.push_back(static_cast<char>(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xff));
  }
  out.append(reinterpret_cast<const char*>(mask_key), 4);
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<char>(payload[i] ^ mask_key[i % 4]));
}

// Reads the server's frames as they come and checks them against what was sent.
struct reader {
  std::size_t got_messages = 0;
  std::size_t got_in_message = 0;
  bool in_message = false;
  int close_code = -1;
  std::string error;
  std::string buf;

  // Consumes whole frames from buf; false on a protocol or content error.
  bool parse() {
    for (;;) {
      if (buf.size() < 2) return true;
      const auto b0 = static_cast<unsigned char>(buf[0]);
      const auto b1 = static_cast<unsigned char>(buf[1]);
      if (b1 & 0x80) return set("a masked frame from the server");
      std::size_t head = 2;
      std::uint64_t len = b1 & 0x7f;
      if (len == 126) {
        if (buf.size() < 4) return true;
        len = (static_cast<unsigned char>(buf[2]) << 8) | static_cast<unsigned char>(buf[3]);
        head = 4;
      } else if (len == 127) {
        if (buf.size() < 10) return true;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(buf[2 + i]);
        head = 10;
      }
      if (buf.size() < head + len) return true;
      const unsigned op = b0 & 0x0f;
      const bool fin = (b0 & 0x80) != 0;
      const char* p = buf.data() + head;
      if (close_code >= 0) return set("a frame after the close");
      if (op == 8) {
        close_code = len >= 2 ? (static_cast<unsigned char>(p[0]) << 8) | static_cast<unsigned char>(p[1]) : 1005;
      } else if (op == 9 || op == 10) {
        // pings and pongs: nothing to check
      } else {
        if ((op == 2) == in_message || (op != 2 && op != 0)) return set("unexpected opcode " + std::to_string(op));
        in_message = true;
        for (std::uint64_t i = 0; i < len; ++i) {
          if (got_in_message >= message_size) return set("an echo longer than 1 MiB");
          if (static_cast<std::uint8_t>(p[i]) != pattern(got_messages, got_in_message))
            return set("echo " + std::to_string(got_messages) + " differs at byte " + std::to_string(got_in_message));
          ++got_in_message;
        }
        if (fin) {
          if (got_in_message != message_size) return set("a short echo");
          ++got_messages;
          got_in_message = 0;
          in_message = false;
        }
      }
      buf.erase(0, head + len);
    }
  }

  bool set(const std::string& why) {
    error = why;
    return false;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: slow_reader HOST PORT CA_FILE MESSAGES PAUSE_MS RCVBUF\n");
    return 2;
  }
  const std::size_t messages = std::strtoul(argv[4], nullptr, 10);
  const auto read_pause = std::chrono::milliseconds(std::atoi(argv[5]));
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  // Everything freed on the way out: leak checkers (the ASan build) stay quiet.
  const std::unique_ptr<int, void (*)(int*)> fd_closer(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  // Before connect(): the window offered to the server stays this small.
  const int rcvbuf = std::atoi(argv[6]);
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) return fail("bad host");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return fail("connect failed");

  const std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx_owner(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX* ctx = ctx_owner.get();
  if (SSL_CTX_load_verify_locations(ctx, argv[3], nullptr) != 1) return fail("cannot read the CA");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  const std::unique_ptr<SSL, void (*)(SSL*)> ssl_owner(SSL_new(ctx), SSL_free);
  SSL* ssl = ssl_owner.get();
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) return fail("TLS handshake failed");

  std::string head =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  if (SSL_write(ssl, head.data(), static_cast<int>(head.size())) != static_cast<int>(head.size()))
    return fail("cannot send the request");
  std::string answer;
  char c;
  while (answer.find("\r\n\r\n") == std::string::npos) {  // byte by byte: nothing read past the head
    if (SSL_read(ssl, &c, 1) != 1) return fail("no handshake answer");
    answer.push_back(c);
  }
  if (answer.rfind("HTTP/1.1 101", 0) != 0) return fail("not upgraded: " + answer.substr(0, answer.find('\r')));

  std::string out;
  for (std::size_t m = 0; m < messages; ++m) {
    std::string payload(message_size, '\0');
    for (std::size_t i = 0; i < message_size; ++i) payload[i] = static_cast<char>(pattern(m, i));
    append_frame(out, 2, payload);
  }
  append_frame(out, 8, std::string("\x03\xe8", 2));  // 1000
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

  reader r;
  std::size_t sent = 0, received = 0;
  bool close_notify = false;
  std::vector<char> chunk(read_chunk);
  const auto end = std::chrono::steady_clock::now() + time_limit;
  for (;;) {
    if (std::chrono::steady_clock::now() > end) return fail("time limit; echoes " + std::to_string(r.got_messages));
    while (sent < out.size()) {
      const int n = SSL_write(ssl, out.data() + sent, static_cast<int>(std::min<std::size_t>(out.size() - sent, 1 << 16)));
      if (n <= 0) {
        const int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
        return fail("write failed (" + std::to_string(e) + ") after " + std::to_string(sent) + " bytes");
      }
      sent += static_cast<std::size_t>(n);
    }
    const int n = SSL_read(ssl, chunk.data(), static_cast<int>(chunk.size()));
    if (n > 0) {
      received += static_cast<std::size_t>(n);
      r.buf.append(chunk.data(), static_cast<std::size_t>(n));
      if (!r.parse()) return fail(r.error);
    } else {
      const int e = SSL_get_error(ssl, n);
      if (e == SSL_ERROR_ZERO_RETURN) {
        close_notify = true;
        break;
      }
      if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL) {
        unsigned long le = ERR_peek_error();
        char why[256] = "EOF";
        if (le) ERR_error_string_n(le, why, sizeof why);
        return fail(std::string("the stream ended without close_notify (") + why + ") after " +
                    std::to_string(received) + " bytes: " + std::to_string(r.got_messages) + " of " +
                    std::to_string(messages) + " echoes, close " + std::to_string(r.close_code));
      }
      pollfd p{fd, static_cast<short>(POLLIN | (sent < out.size() ? POLLOUT : 0)), 0};
      (void)::poll(&p, 1, 10);
    }
    std::this_thread::sleep_for(read_pause);
  }
  if (r.got_messages != messages || r.close_code != 1000 || !r.buf.empty())
    return fail("close_notify after " + std::to_string(r.got_messages) + " of " + std::to_string(messages) +
                " echoes, close " + std::to_string(r.close_code));
  std::printf("SLOW|ok|%zu bytes, %zu echoes, close %d, close_notify %d\n", received, r.got_messages,
              r.close_code, close_notify ? 1 : 0);
  std::fflush(stdout);
  return 0;
}
