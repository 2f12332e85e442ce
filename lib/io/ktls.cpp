#include "io/ktls.hpp"

#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

namespace ws6455::io::detail {

namespace {

void put_be64(unsigned char* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<unsigned char>(v);
}

// The TLS 1.2 key block (RFC 5246 §6.3): PRF(master, "key expansion",
// server_random + client_random).
bool tls12_key_block(SSL* ssl, const EVP_MD* md, std::span<unsigned char> out) {
  unsigned char master[48];
  const std::size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof master);
  unsigned char client_random[32], server_random[32];
  if (mlen == 0 || SSL_get_client_random(ssl, client_random, sizeof client_random) != sizeof client_random ||
      SSL_get_server_random(ssl, server_random, sizeof server_random) != sizeof server_random)
    return false;
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_TLS1_PRF, nullptr);
  static constexpr std::string_view label = "key expansion";
  std::size_t len = out.size();
  const bool ok = pctx && EVP_PKEY_derive_init(pctx) > 0 && EVP_PKEY_CTX_set_tls1_prf_md(pctx, md) > 0 &&
                  EVP_PKEY_CTX_set1_tls1_prf_secret(pctx, master, static_cast<int>(mlen)) > 0 &&
                  EVP_PKEY_CTX_add1_tls1_prf_seed(pctx, reinterpret_cast<const unsigned char*>(label.data()),
                                                  static_cast<int>(label.size())) > 0 &&
                  EVP_PKEY_CTX_add1_tls1_prf_seed(pctx, server_random, sizeof server_random) > 0 &&
                  EVP_PKEY_CTX_add1_tls1_prf_seed(pctx, client_random, sizeof client_random) > 0 &&
                  EVP_PKEY_derive(pctx, out.data(), &len) > 0 && len == out.size();
  EVP_PKEY_CTX_free(pctx);
  OPENSSL_cleanse(master, sizeof master);
  return ok;
}

}  // namespace

bool hkdf_expand_label(const char* md_name, std::span<const unsigned char> secret, std::string_view label,
                       std::span<unsigned char> out) {
  // struct { uint16 length; opaque label<7..255> = "tls13 " + Label; opaque context<0..255> = ""; }
  std::vector<unsigned char> info;
  const std::string full = "tls13 " + std::string(label);
  info.push_back(static_cast<unsigned char>(out.size() >> 8));
  info.push_back(static_cast<unsigned char>(out.size()));
  info.push_back(static_cast<unsigned char>(full.size()));
  info.insert(info.end(), full.begin(), full.end());
  info.push_back(0);
  const EVP_MD* md = EVP_get_digestbyname(md_name);
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  std::size_t len = out.size();
  const bool ok = md && pctx && EVP_PKEY_derive_init(pctx) > 0 &&
                  EVP_PKEY_CTX_hkdf_mode(pctx, EVP_PKEY_HKDEF_MODE_EXPAND_ONLY) > 0 &&
                  EVP_PKEY_CTX_set_hkdf_md(pctx, md) > 0 &&
                  EVP_PKEY_CTX_set1_hkdf_key(pctx, secret.data(), static_cast<int>(secret.size())) > 0 &&
                  EVP_PKEY_CTX_add1_hkdf_info(pctx, info.data(), static_cast<int>(info.size())) > 0 &&
                  EVP_PKEY_derive(pctx, out.data(), &len) > 0 && len == out.size();
  EVP_PKEY_CTX_free(pctx);
  return ok;
}

bool derive_ktls_keys(SSL* ssl, std::span<const unsigned char> tls13_secret, std::uint64_t seq, ktls_keys& out,
                      std::string* why) {
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  const int nid = cipher ? SSL_CIPHER_get_cipher_nid(cipher) : NID_undef;
  if (nid == NID_aes_128_gcm) out.key_len = 16;
  else if (nid == NID_aes_256_gcm) out.key_len = 32;
  else {
    *why = std::string("cipher ") + (cipher ? SSL_CIPHER_get_name(cipher) : "?") + " (kernel TLS here: AES-GCM)";
    return false;
  }
  const EVP_MD* md = SSL_CIPHER_get_handshake_digest(cipher);
  const bool server = SSL_is_server(ssl) == 1;
  out.seq = seq;
  if (SSL_version(ssl) == TLS1_3_VERSION) {
    out.version = 0x0304;
    if (tls13_secret.empty() || !md) {
      *why = "no traffic secret";
      return false;
    }
    // RFC 8446 §7.3: [sender]_write_key and [sender]_write_iv; the kernel's nonce is
    // (salt || iv) XOR the record's sequence number (§5.3).
    unsigned char iv12[12];
    if (!hkdf_expand_label(EVP_MD_get0_name(md), tls13_secret, "key", {out.key, out.key_len}) ||
        !hkdf_expand_label(EVP_MD_get0_name(md), tls13_secret, "iv", iv12)) {
      *why = "HKDF failed";
      return false;
    }
    std::memcpy(out.salt, iv12, 4);
    std::memcpy(out.iv, iv12 + 4, 8);
    return true;
  }
  if (SSL_version(ssl) != TLS1_2_VERSION) {
    *why = "not TLS 1.2 or 1.3";
    return false;
  }
  out.version = 0x0303;
  // RFC 5246 §6.3 for AEAD suites (RFC 5288 §3): client_write_key, server_write_key,
  // client_write_IV (4), server_write_IV (4). The explicit nonce is ours to choose,
  // distinct per record under a key (RFC 5288 §3): the sequence number, counted on by
  // the kernel. OpenSSL's few records before the switch counted from a random start,
  // so a repeat is as likely as a 64-bit collision among a handful of values.
  unsigned char block[2 * 32 + 2 * 4];
  const std::size_t kl = out.key_len;
  if (!md || !tls12_key_block(ssl, md, {block, 2 * kl + 8})) {
    *why = "key block derivation failed";
    return false;
  }
  std::memcpy(out.key, block + (server ? kl : 0), kl);
  std::memcpy(out.salt, block + 2 * kl + (server ? 4 : 0), 4);
  put_be64(out.iv, seq);
  OPENSSL_cleanse(block, sizeof block);
  return true;
}

namespace {
// The kernel's crypto_info for one AES-GCM key size (<linux/tls.h>).
template <class Info>
int set_tls_tx(int fd, const ktls_keys& k, unsigned short cipher_type) {
  Info info{};
  static_assert(sizeof info.salt == sizeof k.salt && sizeof info.iv == sizeof k.iv);
  info.info.version = k.version;
  info.info.cipher_type = cipher_type;
  std::memcpy(info.key, k.key, sizeof info.key);
  std::memcpy(info.salt, k.salt, sizeof info.salt);
  std::memcpy(info.iv, k.iv, sizeof info.iv);
  put_be64(info.rec_seq, k.seq);
  const int r = setsockopt(fd, SOL_TLS, TLS_TX, &info, sizeof info);
  OPENSSL_cleanse(&info, sizeof info);
  return r;
}
}  // namespace

int enable_ktls_tx(int fd, const ktls_keys& k) {
  if (setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls") != 0) return errno;
  const int r = k.key_len == 16 ? set_tls_tx<tls12_crypto_info_aes_gcm_128>(fd, k, TLS_CIPHER_AES_GCM_128)
                                : set_tls_tx<tls12_crypto_info_aes_gcm_256>(fd, k, TLS_CIPHER_AES_GCM_256);
  return r == 0 ? 0 : errno;
}

bool ktls_send_alert(int fd, unsigned char level, unsigned char description) {
  unsigned char body[2] = {level, description};
  iovec iov{body, sizeof body};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(unsigned char))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_TLS;
  cm->cmsg_type = TLS_SET_RECORD_TYPE;
  cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
  *CMSG_DATA(cm) = 21;  // alert (RFC 8446 §5.1)
  return ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof body);
}

}  // namespace ws6455::io::detail
