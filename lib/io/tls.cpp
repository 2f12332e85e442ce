// TLS over memory BIOs (see tls.hpp). OpenSSL 3: errors are read from the
// thread's error queue, which is cleared before every call that may fail, so a
// stale error from another connection on this loop is never reported.
#include "io/tls.hpp"

#include "io/ktls.hpp"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace ws6455::io::detail {

namespace {

// ALPN (RFC 7301): WebSocket over TLS is HTTP/1.1 (RFC 6455 §4.1; RFC 8441 is not served).
constexpr unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// Buffers above this are given back once drained (a 1 MiB burst must not stay).
constexpr std::size_t keep_capacity = 64u << 10;

// The first error on the thread's queue, as "reason" (OpenSSL's words), then cleared.
std::string openssl_error(std::string_view fallback) {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return std::string(fallback);
  if (const char* r = ERR_reason_error_string(e)) return r;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

int alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                void*) {
  unsigned char* o = nullptr;
  if (SSL_select_next_proto(&o, outlen, alpn_http11, sizeof alpn_http11, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;  // no http/1.1 offered: go on without ALPN rather than fail
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

int servername_cb(SSL* ssl, int*, void* arg) { return static_cast<tls_context*>(arg)->on_servername(ssl); }

BIO* new_read_bio() {
  BIO* b = BIO_new(BIO_s_mem());
  // An empty read BIO means "more to come" (WANT_READ), not end of stream.
  if (b) BIO_set_mem_eof_return(b, -1);
  return b;
}

bool ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Kernel TLS: OpenSSL's key log and record callbacks reach the session (app data).
void keylog_cb(const SSL* ssl, const char* line) {
  if (auto* s = static_cast<tls_session*>(SSL_get_app_data(ssl))) s->on_keylog(line);
}

void msg_cb(int write_p, int, int content_type, const void* buf, std::size_t len, SSL* ssl, void*) {
  if (auto* s = static_cast<tls_session*>(SSL_get_app_data(ssl))) s->on_record(write_p, content_type, buf, len);
}

// Set once a kernel refused the tls ULP (no module): sessions stop preparing for it.
std::atomic<bool> g_ktls_unavailable{false};

bool ktls_wanted() {
  if (g_ktls_unavailable.load(std::memory_order_relaxed)) return false;
  static const bool off = [] {
    const char* v = std::getenv("WS6455_NO_KTLS");
    return v && *v && *v != '0';
  }();
  return !off;
}

}  // namespace

struct tls_context::ctx_set {
  SSL_CTX* def = nullptr;
  std::vector<SSL_CTX*> sni;
  ~ctx_set() {
    SSL_CTX_free(def);  // sessions made from them hold their own references
    for (SSL_CTX* c : sni) SSL_CTX_free(c);
  }
};

tls_context::~tls_context() { SSL_CTX_free(client_ctx_); }

namespace {

expected<SSL_CTX*, std::string> server_ctx(const tls_certificate& cert, tls_context* self) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return unexpected<std::string>{"SSL_CTX_new: " + openssl_error("failed")};
  auto fail = [ctx](std::string what) {
    SSL_CTX_free(ctx);
    return unexpected<std::string>{std::move(what)};
  };
  // TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0 and 1.1).
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // No renegotiation (RFC 5246 §7.4.1.2 allows refusing it; TLS 1.3 has none): a
  // client's renegotiation ClientHello gets a no_renegotiation warning and is ignored.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  // Idle connections give their record buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // Resumption: stateless tickets (on by default), one per handshake is enough.
  SSL_CTX_set_num_tickets(ctx, 1);
  static constexpr unsigned char sid_ctx[] = "ws6455";
  SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, nullptr);
  SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
  SSL_CTX_set_tlsext_servername_arg(ctx, self);
  SSL_CTX_set_keylog_callback(ctx, keylog_cb);  // kernel TLS: the TLS 1.3 traffic secret
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.cert_file.c_str()) != 1)
    return fail("certificate " + cert.cert_file + ": " + openssl_error("unreadable"));
  if (SSL_CTX_use_PrivateKey_file(ctx, cert.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return fail("key " + cert.key_file + ": " + openssl_error("unreadable"));
  if (SSL_CTX_check_private_key(ctx) != 1)
    return fail("key " + cert.key_file + " does not match certificate " + cert.cert_file + ": " +
                openssl_error("mismatch"));
  return ctx;
}

}  // namespace

expected<std::shared_ptr<tls_context::ctx_set>, std::string> tls_context::build_server(const server_tls_options& o,
                                                                                    tls_context* self) {
  auto set = std::make_shared<ctx_set>();
  auto def = server_ctx({o.cert_file, o.key_file}, self);
  if (!def) return unexpected<std::string>{def.error()};
  set->def = *def;
  for (const auto& c : o.sni_certificates) {
    auto x = server_ctx(c, self);
    if (!x) return unexpected<std::string>{x.error()};
    set->sni.push_back(*x);
  }
  return set;
}

expected<std::shared_ptr<tls_context>, std::string> tls_context::make_server(const server_tls_options& o) {
  if (o.cert_file.empty() || o.key_file.empty())
    return unexpected<std::string>{"TLS needs both a certificate file and a key file"};
  std::shared_ptr<tls_context> t(new tls_context);
  t->server_ = true;
  t->opts_ = o;
  auto set = build_server(o, t.get());
  if (!set) return unexpected<std::string>{set.error()};
  t->set_ = std::move(*set);
  return t;
}

expected<std::shared_ptr<tls_context>, std::string> tls_context::make_client(const std::string& ca_file,
                                                                            bool insecure) {
  ERR_clear_error();
  std::shared_ptr<tls_context> t(new tls_context);
  t->insecure_ = insecure;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return unexpected<std::string>{"SSL_CTX_new: " + openssl_error("failed")};
  t->client_ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof alpn_http11);  // 0 on success (sic)
  SSL_CTX_set_keylog_callback(ctx, keylog_cb);  // kernel TLS: the TLS 1.3 traffic secret
  if (!ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1)
      return unexpected<std::string>{"CA file " + ca_file + ": " + openssl_error("unreadable")};
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return unexpected<std::string>{"the system CA store: " + openssl_error("unavailable")};
  }
  SSL_CTX_set_verify(ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
  return t;
}

std::string tls_context::reload() {
  if (!server_) return "not a server context";
  auto set = build_server(opts_, this);
  if (!set) return set.error();
  std::lock_guard<std::mutex> lock(mu_);
  // Keep the ticket keys: tickets issued before the reload still resume.
  unsigned char keys[80];
  if (SSL_CTX_get_tlsext_ticket_keys(set_->def, keys, sizeof keys) == 1)
    SSL_CTX_set_tlsext_ticket_keys((*set)->def, keys, sizeof keys);
  OPENSSL_cleanse(keys, sizeof keys);
  set_ = std::move(*set);
  return {};
}

SSL* tls_context::new_ssl() {
  ERR_clear_error();
  std::lock_guard<std::mutex> lock(mu_);
  return SSL_new(server_ ? set_->def : client_ctx_);  // SSL_new takes its own reference
}

int tls_context::on_servername(SSL* ssl) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_OK;  // no SNI: the default certificate
  std::shared_ptr<ctx_set> set;
  {
    std::lock_guard<std::mutex> lock(mu_);
    set = set_;
  }
  if (set->sni.empty()) return SSL_TLSEXT_ERR_OK;
  int pick = -1;
  if (opts_.select_certificate) {
    pick = opts_.select_certificate(name);
  } else {
    // RFC 6125 matching of the name against each certificate's names.
    for (std::size_t i = 0; i < set->sni.size() && pick < 0; ++i) {
      X509* x = SSL_CTX_get0_certificate(set->sni[i]);
      if (x && X509_check_host(x, name, std::strlen(name), 0, nullptr) == 1) pick = static_cast<int>(i);
    }
  }
  // An index the hook got wrong (out of range) is taken as -1: the default
  // certificate, as server.hpp says, rather than an out-of-bounds read.
  if (pick >= 0 && static_cast<std::size_t>(pick) < set->sni.size()) SSL_set_SSL_CTX(ssl, set->sni[pick]);
  return SSL_TLSEXT_ERR_OK;
}

// ------------------------------------------------------------ sessions

tls_session::~tls_session() { SSL_free(ssl_); }  // frees the BIOs too

std::unique_ptr<tls_session> tls_session::make(tls_context& ctx, std::string_view host, std::string* why) {
  std::unique_ptr<tls_session> s(new tls_session);
  s->server_ = ctx.is_server();
  s->ssl_ = ctx.new_ssl();
  if (!s->ssl_) {
    *why = "SSL_new: " + openssl_error("failed");
    return nullptr;
  }
  BIO* rb = new_read_bio();
  BIO* wb = BIO_new(BIO_s_mem());
  if (!rb || !wb) {
    BIO_free(rb);
    BIO_free(wb);
    *why = "BIO_new failed";
    return nullptr;
  }
  SSL_set_bio(s->ssl_, rb, wb);
  if (ktls_wanted()) {
    SSL_set_app_data(s->ssl_, s.get());
    SSL_set_msg_callback(s->ssl_, msg_cb);
  }
  if (s->server_) {
    SSL_set_accept_state(s->ssl_);
    return s;
  }
  SSL_set_connect_state(s->ssl_);
  const std::string h(host);
  if (ip_literal(h)) {
    // RFC 6066 §3: no IP literals in SNI; RFC 6125 §6.2: an IP is checked against
    // the certificate's iPAddress names.
    if (!ctx.insecure()) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl_), h.c_str());
  } else {
    SSL_set_tlsext_host_name(s->ssl_, h.c_str());
    if (!ctx.insecure()) {
      // RFC 6125 §6.4.3: a wildcard only as the whole left-most label.
      SSL_set_hostflags(s->ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (SSL_set1_host(s->ssl_, h.c_str()) != 1) {
        *why = "bad host name for verification: " + h;
        return nullptr;
      }
    }
  }
  return s;
}

void tls_session::start() {
  if (started_ || server_) return;
  started_ = true;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);  // queues the ClientHello; WANT_READ follows
  if (r != 1) {
    const int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      failed_ = true;
      error_ = describe_failure(e);
    }
  }
}

tls_session::status tls_session::feed(std::span<const std::byte> in, byte_buffer& plain) {
  if (failed_) return status::failed;
  started_ = true;
  BIO* rb = SSL_get_rbio(ssl_);
  // A piece at a time (about two records), read out before the next: the read BIO
  // stays small whatever the socket read was.
  constexpr std::size_t piece = 32u << 10;
  constexpr std::size_t chunk = 32u << 10;
  do {
    const std::size_t n = std::min(in.size(), piece);
    if (n > 0 && BIO_write(rb, in.data(), static_cast<int>(n)) != static_cast<int>(n)) {
      failed_ = true;
      error_ = "out of memory";
      return status::failed;
    }
    in = in.subspan(n);
    for (;;) {
      const std::size_t old = plain.size();
      plain.resize(old + chunk);
      std::size_t got = 0;
      ERR_clear_error();
      const int r = SSL_read_ex(ssl_, plain.data() + old, chunk, &got);
      plain.resize(old + (r == 1 ? got : 0));
      if (!established_ && SSL_is_init_finished(ssl_)) established_ = true;
      if (r == 1) continue;
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ) break;
      if (e == SSL_ERROR_ZERO_RETURN) return status::peer_closed;  // close_notify
      failed_ = true;
      error_ = describe_failure(e);
      return status::failed;
    }
  } while (!in.empty());
  if (kernel_tx_) {
    // Whatever OpenSSL wrote is under keys the kernel owns now: never sent. An alert
    // it wrote (no_renegotiation, a warning) goes out through the kernel instead
    // (take_kernel_alert); a key update cannot.
    (void)BIO_reset(SSL_get_wbio(ssl_));
    if (peer_wants_key_update_) {
      failed_ = true;
      error_ = "the peer asked for a key update, which cannot be answered with kernel TLS sending";
      return status::failed;
    }
  }
  return status::ok;
}

bool tls_session::encrypt(std::span<const std::byte> plain) {
  if (failed_ || kernel_tx_) return false;
  while (!plain.empty()) {
    std::size_t w = 0;
    ERR_clear_error();
    // A memory BIO never blocks: every record is written at once.
    const int r = SSL_write_ex(ssl_, plain.data(), std::min<std::size_t>(plain.size(), 1u << 30), &w);
    if (r != 1) {
      failed_ = true;
      error_ = describe_failure(SSL_get_error(ssl_, r));
      return false;
    }
    plain = plain.subspan(w);
  }
  return true;
}

bool tls_session::shutdown() {
  if (shutdown_sent_ || failed_ || !established_ || kernel_tx_) return false;
  shutdown_sent_ = true;
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);  // 0: close_notify queued; the peer's is not awaited
  ERR_clear_error();
  return BIO_ctrl_pending(SSL_get_wbio(ssl_)) > 0;
}

void tls_session::collect() {
  BIO* wb = SSL_get_wbio(ssl_);
  const std::size_t n = BIO_ctrl_pending(wb);
  if (n == 0) return;
  if (kernel_tx_) {  // records under keys the kernel owns now: never sent
    (void)BIO_reset(wb);
    return;
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  } else if (out_pos_ > 0) {
    out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(out_pos_));
    out_pos_ = 0;
  }
  const std::size_t old = out_.size();
  out_.resize(old + n);
  const int r = BIO_read(wb, out_.data() + old, static_cast<int>(std::min<std::size_t>(n, INT_MAX)));
  out_.resize(old + (r > 0 ? static_cast<std::size_t>(r) : 0));
}

std::size_t tls_session::pending_bytes() const noexcept {
  return out_.size() - out_pos_ + BIO_ctrl_pending(SSL_get_wbio(ssl_));
}

void tls_session::consume(std::size_t n) noexcept {
  out_pos_ = std::min(out_.size(), out_pos_ + n);
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  }
}

bool tls_session::holds_storage() const noexcept { return out_.capacity() > keep_capacity; }

void tls_session::trim() {
  if (out_pos_ == out_.size() && out_.capacity() > keep_capacity) byte_buffer().swap(out_), out_pos_ = 0;
  // The memory BIOs keep their largest size: replaced by fresh ones when empty.
  BUF_MEM* bm = nullptr;
  BIO* wb = SSL_get_wbio(ssl_);
  if (BIO_ctrl_pending(wb) == 0 && BIO_get_mem_ptr(wb, &bm) == 1 && bm && bm->max > keep_capacity) {
    if (BIO* nb = BIO_new(BIO_s_mem())) SSL_set0_wbio(ssl_, nb);
  }
  BIO* rb = SSL_get_rbio(ssl_);
  bm = nullptr;
  if (BIO_ctrl_pending(rb) == 0 && BIO_get_mem_ptr(rb, &bm) == 1 && bm && bm->max > keep_capacity) {
    if (BIO* nb = new_read_bio()) SSL_set0_rbio(ssl_, nb);
  }
}

// ------------------------------------------------------------ kernel TLS (sending)

void tls_session::on_keylog(std::string_view line) {
  // "SERVER_TRAFFIC_SECRET_0 <client random> <secret>" (hex): our sending secret.
  const std::string_view want = server_ ? "SERVER_TRAFFIC_SECRET_0 " : "CLIENT_TRAFFIC_SECRET_0 ";
  if (!line.starts_with(want)) return;
  const auto sp = line.rfind(' ');
  const std::string_view hex = line.substr(sp + 1);
  tx_secret_.clear();
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
    tx_secret_.push_back(static_cast<unsigned char>(nib(hex[i]) << 4 | nib(hex[i + 1])));
  }
}

void tls_session::on_record(int write_p, int content_type, const void* buf, std::size_t len) {
  const auto* b = static_cast<const unsigned char*>(buf);
  if (!write_p) {
    // A KeyUpdate asking for ours (RFC 8446 §4.6.3: request_update = 1): with the
    // kernel sending, there is no way to answer it (OpenSSL would on its next write).
    if (kernel_tx_ && content_type == SSL3_RT_HANDSHAKE && len >= 5 && b[0] == SSL3_MT_KEY_UPDATE && b[4] == 1)
      peer_wants_key_update_ = true;
    return;
  }
  if (content_type == SSL3_RT_HANDSHAKE && len > 0 && b[0] == SSL3_MT_KEY_UPDATE) tx_rekeyed_ = true;
  if (content_type == SSL3_RT_ALERT && len >= 2 && kernel_tx_) kernel_alert_ = {b[0], b[1]};
  if (content_type == SSL3_RT_HEADER) {
    if (tx_counting_) ++tx_records_;  // one record went out under the current keys
    return;
  }
  // Our Finished: TLS 1.3 sends it under the handshake keys, so the application
  // keys start after it (RFC 8446 §7.1); TLS 1.2 sends it as the first record after
  // ChangeCipherSpec, sequence number 0 of the new keys (RFC 5246 §6.1).
  if (content_type == SSL3_RT_HANDSHAKE && len > 0 && static_cast<const unsigned char*>(buf)[0] == SSL3_MT_FINISHED) {
    tx_counting_ = true;
    tx_records_ = SSL_version(ssl_) == TLS1_3_VERSION ? 0 : 1;
  }
}

bool tls_session::kernel_tx_keys(ktls_keys& out, std::string* why) const {
  if (!tx_counting_) {
    *why = "the handshake is not finished";
    return false;
  }
  if (tx_rekeyed_ || SSL_get_key_update_type(ssl_) != SSL_KEY_UPDATE_NONE) {
    *why = "a key update was sent or is pending";  // the key log only has the first secret
    return false;
  }
  // RFC 6066 §4: the kernel makes records of up to 16 KiB whatever was negotiated.
  if (SSL_SESSION_get_max_fragment_length(SSL_get_session(ssl_)) != TLSEXT_max_fragment_length_DISABLED) {
    *why = "a max_fragment_length was negotiated";
    return false;
  }
  return derive_ktls_keys(ssl_, tx_secret_, tx_records_, out, why);
}

int tls_session::start_kernel_tx(int fd) {
  kernel_tx_tried_ = true;
  if (!ktls_wanted()) return ENOENT;
  ktls_keys k;
  if (!kernel_tx_keys(k, &ktls_note_)) return -1;
  const int e = enable_ktls_tx(fd, k);
  OPENSSL_cleanse(&k, sizeof k);
  if (e == ENOENT || e == ENOPROTOOPT) {
    g_ktls_unavailable.store(true, std::memory_order_relaxed);  // no module: nobody tries again
    ktls_note_ = "this kernel has no TLS (TCP_ULP \"tls\")";
  } else if (e != 0) {
    ktls_note_ = std::string("TLS_TX: ") + std::strerror(e);
  } else {
    kernel_tx_ = true;
    OPENSSL_cleanse(tx_secret_.data(), tx_secret_.size());
    tx_secret_.clear();
  }
  return e;
}

std::string tls_session::describe_failure(int ssl_error) {
  if (!server_ && SSL_get_verify_mode(ssl_) != SSL_VERIFY_NONE) {
    const long v = SSL_get_verify_result(ssl_);
    if (v != X509_V_OK) {
      ERR_clear_error();
      return std::string("certificate verify failed: ") + X509_verify_cert_error_string(v);
    }
  }
  if (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return "the peer ended the TLS stream";
  return openssl_error("TLS error " + std::to_string(ssl_error));
}

bool looks_like_http(std::span<const std::byte> head) noexcept {
  if (head.empty()) return false;
  for (std::size_t i = 0; i < head.size() && i < 8; ++i) {
    const auto ch = static_cast<unsigned char>(head[i]);
    if (ch == ' ' && i > 0) return true;
    if (ch < 'A' || ch > 'Z') return false;
  }
  return head.size() < 8;  // "GET" so far: nothing a TLS record starts with
}

}  // namespace ws6455::io::detail
