// The driver's TLS hooks (wss://): a tls_session between the backend's bytes and
// the driver's plaintext paths in loop.cpp.
//
//   read:  ciphertext -> tls_session::feed -> on_plain_bytes (the loop's scratch buffer)
//   write: gather() the plaintext pieces -> encrypt them -> consume them at once;
//          the backend writes the session's ciphertext, consumed on completion
//   close: close_notify before the FIN (service() asks tls_close_notify first)
//   fail:  the alert OpenSSL queued, then the socket closes (tls_send_alert)
//
// The TLS handshake runs inside the driver's handshake phase, so handshake_timeout
// bounds it: a client that stalls or trickles a byte a second is dropped.
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "io/ktls.hpp"
#include "io/loop.hpp"
#include "io/tls.hpp"

namespace ws6455::io::detail {

namespace {
// Plaintext encrypted per write, so the ciphertext waiting for the socket stays bounded.
constexpr std::size_t encrypt_chunk = 256u << 10;
// Pieces smaller than this are copied together and encrypted as one record run:
// fewer records (each costs a header, a tag and a cipher call) for small frames.
constexpr std::size_t coalesce_below = 16u << 10;
}  // namespace

bool loop::tls_attach(conn& c, std::string_view host) {
  std::string why;
  auto s = tls_session::make(*tls_ctx_, host, &why);
  if (!s) {
    ++st_.tls_failures;
    if (c.is_client) fail_client(c, "TLS: " + why);
    else tls_log(1, "cannot start a TLS session: " + why);
    return false;
  }
  if (tls_.size() <= c.slot) tls_.resize(c.slot + 1);
  tls_[c.slot] = std::move(s);
  c.tls = true;
  ++st_.tls;
  if (c.is_client) mark_dirty(c);  // the ClientHello goes out first
  return true;
}

// Stderr, at most one line a second per kind and loop: a scan of the TLS port must
// not flood the log.
void loop::tls_log(int kind, const std::string& line) {
  if (now_ < tls_log_at_[kind]) {
    ++tls_log_skipped_[kind];
    return;
  }
  if (tls_log_skipped_[kind])
    std::fprintf(stderr, "ws6455: TLS: %s (and %u more like it since the last such line)\n", line.c_str(),
                 tls_log_skipped_[kind]);
  else
    std::fprintf(stderr, "ws6455: TLS: %s\n", line.c_str());
  tls_log_at_[kind] = now_ + 1000;
  tls_log_skipped_[kind] = 0;
}

void loop::tls_input(conn& c, std::span<std::byte> in) {
  tls_session& t = *tls_[c.slot];
  c.last_rx = now_;
  if (c.ph != phase::handshake && c.ph != phase::open) return;  // lingering: dropped
  // A plain HTTP request on the TLS port: answered in plain text and closed. A TLS
  // connection starts with a handshake record (content type 22, RFC 8446 §5.1).
  if (!c.is_client && !t.started() && c.ph == phase::handshake && looks_like_http(in)) return tls_plain_http(c);
  const bool was = t.established();
  tls_plain_.clear();
  const auto st = t.feed(in, tls_plain_);
  if (!was && t.established()) ++st_.tls_handshakes;
  if (t.kernel_tx() && st != tls_session::status::failed) send_kernel_alert(c, t);  // e.g. no_renegotiation
  mark_dirty(c);  // handshake messages, tickets, alerts to write
  if (st == tls_session::status::failed) return tls_failed(c);
  if (!tls_plain_.empty()) {
    on_plain_bytes(c, tls_plain_);
    if (c.ph == phase::free || c.ph == phase::draining) return;
  }
  if (st == tls_session::status::peer_closed) on_eof(c);  // close_notify: no more input
}

// An alert, a bad or truncated record, a failed verification: a transport failure
// (1006 to the application), never more.
void loop::tls_failed(conn& c) {
  tls_session& t = *tls_[c.slot];
  ++st_.tls_failures;
  if (!c.is_client && c.ph == phase::handshake) {
    tls_log(1, "handshake failed: " + t.error());
    // The alert OpenSSL queued goes out, then FIN (bounded by close_timeout).
    c.x->http_out.clear();
    return enter_http_reply(c);
  }
  // Closed at once: the alert that says why (unknown_ca, bad_certificate,
  // bad_record_mac ...) goes out first, or the peer sees a bare EOF. With kernel TLS
  // it is sent as a kernel alert record (OpenSSL's is under keys no longer in use).
  if (t.kernel_tx()) send_kernel_alert(c, t);
  else tls_send_alert(c);
  if (c.is_client) {
    if (c.ph == phase::handshake) return fail_client(c, "TLS: " + t.error());
    c.extra().close_reason = "TLS: " + t.error();
  }
  destroy(c);
}

// RFC 8446 §6.2 (RFC 5246 §7.2.2): a fatal error is reported with an alert before
// the connection closes. OpenSSL queued it in the write BIO when it failed; it is
// written here with one non-blocking send, without waiting for the socket or the
// peer, since the connection closes right after: a few dozen bytes behind a
// handshake, which the socket's send buffer takes. Skipped while a write is in
// flight (io_uring reads the session's buffer then); what does not fit is lost.
void loop::tls_send_alert(conn& c) {
  if (c.writing || c.fd < 0) return;
  tls_session& t = *tls_[c.slot];
  t.collect();  // behind any ciphertext not yet written, so the records stay in order
  const auto p = t.pending();
  if (p.empty()) return;
  const ssize_t w = ::send(c.fd, p.data(), p.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (w > 0) t.consume(static_cast<std::size_t>(w));
}

void loop::tls_plain_http(conn& c) {
  tls_log(0, "a plain HTTP request on the TLS port: answered 400 and closed (use https:// or wss://)");
  tls_[c.slot].reset();
  c.tls = false;
  --st_.tls;
  static constexpr std::string_view body = "This port speaks TLS: use https:// or wss://\n";
  std::string& out = c.x->http_out;
  out = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ";
  out += std::to_string(body.size());
  out += "\r\nConnection: close\r\n\r\n";
  out += body;
  c.x->http_pos = 0;
  enter_http_reply(c);
  mark_dirty(c);
}

// flush() for a TLS connection: encrypt what is queued (in order, as gather() gives
// it) and write the ciphertext. The ciphertext buffer is only refilled here, with
// no write in flight, so an io_uring send always reads stable memory.
bool loop::flush_tls(conn& c) {
  tls_session& t = *tls_[c.slot];
  if (t.kernel_tx()) return flush_plain(c);
  // Every record OpenSSL made is on the socket: the kernel may take over sending.
  if (!c.writing && t.kernel_tx_possible() && t.pending_bytes() == 0 && try_kernel_tls(c, t)) return flush_plain(c);
  while (!c.writing) {
    if (!t.failed()) {
      if (c.is_client && !t.started()) t.start();
      if (t.established() && t.pending().size() < encrypt_chunk) {
        iovec iov[16];
        const int n = gather(c, iov, 16);
        std::size_t taken = 0;
        tls_stage_.clear();
        bool ok = true;
        for (int i = 0; i < n && taken < encrypt_chunk && ok; ++i) {
          const std::size_t len = std::min(iov[i].iov_len, encrypt_chunk - taken);
          const std::span<const std::byte> piece(static_cast<const std::byte*>(iov[i].iov_base), len);
          taken += len;
          if (len < coalesce_below) {
            tls_stage_.insert(tls_stage_.end(), piece.begin(), piece.end());
            continue;
          }
          if (!tls_stage_.empty()) {
            ok = t.encrypt(tls_stage_);
            tls_stage_.clear();
          }
          ok = ok && t.encrypt(piece);
          t.collect();  // keeps OpenSSL's write BIO small
        }
        if (ok && !tls_stage_.empty()) ok = t.encrypt(tls_stage_);
        if (!ok) {
          ++st_.tls_failures;
          destroy(c);
          return false;
        }
        if (taken) consume(c, taken);  // the plaintext is in records now
      }
    }
    t.collect();
    const auto p = t.pending();
    if (p.empty()) {
      // All written, OpenSSL's records included: the kernel may take over from here.
      if (t.kernel_tx_possible()) (void)try_kernel_tls(c, t);
      return true;
    }
    iovec one{const_cast<std::byte*>(p.data()), p.size()};
    const ssize_t w = be_->write(c, &one, 1);
    if (w >= 0) {
      t.consume(static_cast<std::size_t>(w));
      continue;  // a short write is followed by write_blocked
    }
    if (w == write_blocked || w == write_submitted) {
      c.writing = true;
      return true;
    }
    destroy(c);
    return false;
  }
  return true;
}

// Before the FIN of a clean close: close_notify (RFC 8446 §6.1). True when it was
// queued now (service() writes it, then comes back here and goes on). With kernel
// TLS it is sent at once as an alert record (everything before it went out).
bool loop::tls_close_notify(conn& c) {
  if (!c.tls) return false;
  tls_session& t = *tls_[c.slot];
  if (!t.kernel_tx()) return t.shutdown();
  if (!t.shutdown_sent()) {
    t.mark_shutdown_sent();
    (void)ktls_send_alert(c.fd, 1, 0);  // warning, close_notify
  }
  return false;
}

// An alert OpenSSL made after the switch, sent through the kernel (best effort, as
// tls_send_alert: one non-blocking send, skipped while a write is in flight).
void loop::send_kernel_alert(conn& c, tls_session& t) {
  const auto [level, description] = t.take_kernel_alert();
  if (level != 0 && !c.writing && c.fd >= 0) (void)ktls_send_alert(c.fd, level, description);
}

// Hands the sending keys to the kernel (ktls.hpp). Without a kernel that has TLS,
// every session stays in user space, silently (stats() says which is in use).
bool loop::try_kernel_tls(conn& c, tls_session& t) {
  const int e = t.start_kernel_tx(c.fd);
  if (e == 0) {
    ++st_.ktls;
    ++st_.ktls_switched;
    return true;
  }
  if (e > 0 && e != ENOENT && e != ENOPROTOOPT) tls_log(2, "kernel TLS not used: " + t.ktls_note());
  return false;
}

}  // namespace ws6455::io::detail
