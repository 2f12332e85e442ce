// TLS as a byte transform between the socket backend and the driver (OpenSSL with
// memory BIOs): the backend moves ciphertext, the driver sees plaintext, and the
// same code serves epoll and io_uring. The core (libws6455) knows nothing of it.
//
//   ciphertext read  -> tls_session::feed    -> plaintext to the driver (handshake driven as needed)
//   plaintext queued -> tls_session::encrypt -> records in the session's own buffer,
//                       written by the backend and consumed on completion
//
// Kernel TLS for sending (ktls.hpp) where the kernel has it: after the handshake
// the session hands its sending keys to the socket and the driver writes plaintext.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ws6455/expected.hpp"
#include "ws6455/io/server.hpp"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace ws6455::io::detail {

// A byte vector whose resize() does not zero what OpenSSL is about to overwrite.
template <class T>
struct uninit_allocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = uninit_allocator<U>;
  };
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
};
using byte_buffer = std::vector<std::byte, uninit_allocator<std::byte>>;

// The certificates (server) or the trust settings (client) that new sessions are
// made from. Shared by every loop of an endpoint; thread-safe.
class tls_context {
 public:
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  // Server: the certificate chain and key (PEM), plus the SNI certificates.
  static expected<std::shared_ptr<tls_context>, std::string> make_server(const server_tls_options& o);
  // Client: the CA file ("" = the system store) and whether to skip verification.
  static expected<std::shared_ptr<tls_context>, std::string> make_client(const std::string& ca_file, bool insecure);

  // Server: reads the certificate and key files again. New handshakes use the new
  // SSL_CTX; sessions already made keep theirs (each SSL holds a reference), so no
  // connection is dropped. Returns why it failed (the old certificates stay), or "".
  std::string reload();

  bool is_server() const noexcept { return server_; }
  bool insecure() const noexcept { return insecure_; }

  // A new SSL from the current SSL_CTX (nullptr on failure). Internal.
  SSL* new_ssl();
  // The SNI choice (OpenSSL's servername callback). Internal.
  int on_servername(SSL* ssl);

 private:
  tls_context() = default;
  struct ctx_set;  // the default SSL_CTX and the SNI ones, built together
  static expected<std::shared_ptr<ctx_set>, std::string> build_server(const server_tls_options& o, tls_context* self);

  bool server_ = false;
  bool insecure_ = false;
  server_tls_options opts_;
  std::mutex mu_;
  std::shared_ptr<ctx_set> set_;       // server: replaced by reload()
  SSL_CTX* client_ctx_ = nullptr;      // client
};

// One connection's TLS state.
class tls_session {
 public:
  ~tls_session();
  tls_session(const tls_session&) = delete;
  tls_session& operator=(const tls_session&) = delete;

  // host: the client's server name (SNI unless an IP literal; verified against the
  // certificate unless insecure). Null with the reason on failure.
  static std::unique_ptr<tls_session> make(tls_context& ctx, std::string_view host, std::string* why);

  enum class status : std::uint8_t { ok, peer_closed, failed };
  // Takes ciphertext; appends the plaintext it yields to `plain` (handshake
  // messages and alerts are queued for writing). failed: error() says why.
  status feed(std::span<const std::byte> in, byte_buffer& plain);
  // Whether plaintext may be encrypted now (the handshake finished).
  bool established() const noexcept { return established_; }
  bool failed() const noexcept { return failed_; }
  bool started() const noexcept { return started_; }
  // Client: starts the handshake (the ClientHello is queued).
  void start();
  // Encrypts `plain` into records (queued behind what is there). False on failure.
  bool encrypt(std::span<const std::byte> plain);
  // Queues close_notify (RFC 8446 §6.1, RFC 5246 §7.2.1) once; true if it was queued now.
  bool shutdown();
  bool shutdown_sent() const noexcept { return shutdown_sent_; }

  // Ciphertext to write. collect() moves what OpenSSL produced into the session's
  // buffer: call it only with no write in flight (an io_uring send reads that buffer).
  void collect();
  std::span<const std::byte> pending() const noexcept {
    return {out_.data() + out_pos_, out_.size() - out_pos_};
  }
  // Everything not yet written: the buffer and what OpenSSL still holds.
  std::size_t pending_bytes() const noexcept;
  void consume(std::size_t n) noexcept;
  // Whether trim() would give something back; trim() frees large buffers once
  // nothing is pending (called when the peer is quiet).
  bool holds_storage() const noexcept;
  void trim();

  // Kernel TLS (sending): whether the kernel encrypts what goes out now, and the
  // switch itself: only with nothing left to write (every record OpenSSL made is
  // on the socket), once per session. Returns 0, or an errno (ENOENT/ENOPROTOOPT:
  // this kernel has no TLS), or -1 when the session cannot (why in ktls_note()).
  bool kernel_tx() const noexcept { return kernel_tx_; }
  bool kernel_tx_possible() const noexcept {
    return established_ && !failed_ && !shutdown_sent_ && !kernel_tx_ && !kernel_tx_tried_ && tx_counting_ &&
           !tx_rekeyed_;
  }
  // With kernel TLS: an alert OpenSSL made (a warning it answered with, or the fatal
  // one it failed with), to be sent as a kernel alert record; {0, 0} when none.
  std::pair<unsigned char, unsigned char> take_kernel_alert() noexcept {
    auto a = kernel_alert_;
    kernel_alert_ = {0, 0};
    return a;
  }
  int start_kernel_tx(int fd);
  // The keys start_kernel_tx() would hand over now (tests check them against the
  // records OpenSSL makes).
  bool kernel_tx_keys(struct ktls_keys& out, std::string* why) const;
  SSL* native_handle() const noexcept { return ssl_; }
  const std::string& ktls_note() const noexcept { return ktls_note_; }
  void mark_shutdown_sent() noexcept { shutdown_sent_ = true; }

  const std::string& error() const noexcept { return error_; }
  // For the failure message: the certificate verification result, if that failed.
  std::string describe_failure(int ssl_error);

 private:
  tls_session() = default;
  SSL* ssl_ = nullptr;
  bool server_ = false;
  bool established_ = false;
  bool failed_ = false;
  bool started_ = false;
  bool shutdown_sent_ = false;
  byte_buffer out_;
  std::size_t out_pos_ = 0;
  std::string error_;
  // Kernel TLS: our traffic secret (TLS 1.3, from OpenSSL's key log) and the records
  // sent under the current keys (counted from our Finished, through OpenSSL's
  // message callback).
  std::vector<unsigned char> tx_secret_;
  std::uint64_t tx_records_ = 0;
  bool tx_counting_ = false;
  bool tx_rekeyed_ = false;          // we sent a KeyUpdate: the key log's secret is stale (RFC 8446 §4.6.3)
  bool peer_wants_key_update_ = false;  // received KeyUpdate(update_requested) after the switch
  std::pair<unsigned char, unsigned char> kernel_alert_{0, 0};
  bool kernel_tx_ = false;
  bool kernel_tx_tried_ = false;
  std::string ktls_note_;

 public:
  // OpenSSL's callbacks (tls.cpp). Internal.
  void on_keylog(std::string_view line);
  void on_record(int write_p, int content_type, const void* buf, std::size_t len);
};

// Whether `head` is the start of a plain HTTP request (an upper-case method and a
// space), not a TLS record (RFC 8446 §5.1: a handshake record starts with 22).
bool looks_like_http(std::span<const std::byte> head) noexcept;

}  // namespace ws6455::io::detail
