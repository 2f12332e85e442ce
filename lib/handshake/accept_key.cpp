// Sec-WebSocket-Key and Sec-WebSocket-Accept (RFC 6455 §4.1 item 7, §4.2.2 item 5.4),
// SHA-1 and base64 from OpenSSL.
#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>

#include "head_parser.hpp"
#include "ws6455/handshake.hpp"

namespace ws6455 {

namespace {

constexpr std::string_view websocket_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int base64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string websocket_accept_key(std::string_view key) {
  // The key is short (24 bytes when valid); the buffer holds any header value
  // the handshake could pass, so there is no allocation here but the result.
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 &&
                  EVP_DigestUpdate(ctx, websocket_guid.data(), websocket_guid.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1;
  EVP_MD_CTX_free(ctx);
  // SHA-1 is always available in OpenSSL's default provider; failing here means
  // the library is broken (or out of memory), and a wrong accept would be worse.
  if (!ok || digest_len != 20) std::abort();
  unsigned char out[29];  // 4 * ceil(20 / 3) + NUL
  const int n = EVP_EncodeBlock(out, digest, 20);
  return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

bool is_valid_websocket_key(std::string_view key) noexcept {
  // 16 bytes are 22 base64 characters and "==" (RFC 4648 §4). The last character
  // carries 2 bits of data and 4 padding bits, which must be zero (§3.5): only the
  // canonical encoding is accepted.
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  for (std::size_t i = 0; i < 22; ++i)
    if (base64_value(key[i]) < 0) return false;
  return (base64_value(key[21]) & 0x0f) == 0;
}

namespace detail {

std::string base64_encode_16(const std::byte (&bytes)[16]) {
  unsigned char out[25];
  const int n = EVP_EncodeBlock(out, reinterpret_cast<const unsigned char*>(bytes), 16);
  return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

}  // namespace detail

}  // namespace ws6455
