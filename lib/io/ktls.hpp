// Kernel TLS for sending (Linux TCP_ULP "tls", TLS_TX): once OpenSSL finished the
// handshake, the kernel encrypts what we send, so sends stay plain sendmsg (or
// io_uring sends) of the frames themselves, and a broadcast frame is encrypted
// once per connection without a copy in user space. Receiving stays in OpenSSL.
//
// OpenSSL (3.0) runs over memory buffers here and does not hand its keys to the
// kernel itself, so they are derived from what it exposes: the TLS 1.3 traffic
// secret (its key log, RFC 8446 §7.3) or the TLS 1.2 master secret and randoms
// (RFC 5246 §6.3, RFC 5288 §3), and the number of records it already sent under
// them. AES-GCM (128 and 256) only; anything else stays in user space.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

typedef struct ssl_st SSL;

namespace ws6455::io::detail {

struct ktls_keys {
  std::uint16_t version = 0;   // 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3)
  std::size_t key_len = 0;     // 16 or 32
  unsigned char key[32] = {};
  unsigned char salt[4] = {};  // the implicit part of the nonce
  unsigned char iv[8] = {};    // TLS 1.3: the rest of the per-connection IV; TLS 1.2: the first explicit nonce
  std::uint64_t seq = 0;       // the next record's sequence number
};

// The keys for our sending direction. `tls13_secret` is our traffic secret (TLS
// 1.3; ignored for 1.2); `seq` how many records we sent under it (1.2: since our
// ChangeCipherSpec). False, with why, for what the kernel path does not take.
bool derive_ktls_keys(SSL* ssl, std::span<const unsigned char> tls13_secret, std::uint64_t seq, ktls_keys& out,
                      std::string* why);

// HKDF-Expand-Label (RFC 8446 §7.1) with `md_name` (e.g. "SHA256"); for tests too.
bool hkdf_expand_label(const char* md_name, std::span<const unsigned char> secret, std::string_view label,
                       std::span<unsigned char> out);

// Attaches the tls ULP and sets TLS_TX. Returns 0 or an errno: ENOENT or
// ENOPROTOOPT mean this kernel has no TLS at all (then nobody needs to try again).
int enable_ktls_tx(int fd, const ktls_keys& k);

// Sends an alert record through kernel TLS (RFC 8446 §6): close_notify is (1, 0).
// One non-blocking send, after everything queued went out. False if it did not fit.
bool ktls_send_alert(int fd, unsigned char level, unsigned char description);

}  // namespace ws6455::io::detail
