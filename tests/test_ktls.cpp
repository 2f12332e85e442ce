// Kernel TLS (lib/io/ktls.cpp), checked where the kernel has no TLS: the keys and
// the sequence number a session would hand to the kernel (TLS_TX) must decrypt
// the next record OpenSSL itself makes for that session, with the kernel's own
// rules (RFC 8446 §5.2-5.3 nonce and additional data for TLS 1.3; RFC 5288 §3 and
// RFC 5246 §6.2.3.3 for TLS 1.2): a wrong key, salt, IV or record count fails it.
// The sockets themselves are tested in a VM whose kernel has TLS (tests/vm/).
#include <doctest/doctest.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "io/ktls.hpp"
#include "io/tls.hpp"
#include "test_pki.hpp"

namespace {

using ws6455::io::detail::byte_buffer;
using ws6455::io::detail::ktls_keys;
using ws6455::io::detail::tls_context;
using ws6455::io::detail::tls_session;

std::vector<unsigned char> drain(tls_session& s) {
  s.collect();
  const auto p = s.pending();
  std::vector<unsigned char> out(reinterpret_cast<const unsigned char*>(p.data()),
                                 reinterpret_cast<const unsigned char*>(p.data()) + p.size());
  s.consume(p.size());
  return out;
}

// Moves bytes both ways until neither side has anything to say. False on a failure.
bool pump(tls_session& client, tls_session& server) {
  byte_buffer plain;
  for (int round = 0; round < 20; ++round) {
    const auto c2s = drain(client);
    const auto s2c = drain(server);
    if (c2s.empty() && s2c.empty()) return true;
    if (!c2s.empty() && server.feed({reinterpret_cast<const std::byte*>(c2s.data()), c2s.size()}, plain) ==
                            tls_session::status::failed)
      return false;
    if (!s2c.empty() && client.feed({reinterpret_cast<const std::byte*>(s2c.data()), s2c.size()}, plain) ==
                            tls_session::status::failed)
      return false;
  }
  return false;
}

void put_be64(unsigned char* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<unsigned char>(v);
}

// Decrypts one application-data record the way the kernel's peer would, with the
// keys the kernel would have been given. Returns the plaintext, or "<failed>".
std::string open_record(const std::vector<unsigned char>& rec, const ktls_keys& k) {
  if (rec.size() < 5 + 16 || rec[0] != 23) return "<failed: not one application-data record>";
  const std::size_t len = (std::size_t{rec[3]} << 8) | rec[4];
  if (rec.size() != 5 + len) return "<failed: not exactly one record>";
  unsigned char nonce[12];
  std::vector<unsigned char> aad;
  const unsigned char* body = rec.data() + 5;
  std::size_t body_len = len - 16;
  if (k.version == 0x0304) {
    // §5.3: (salt || iv) XOR the 64-bit sequence number, left-padded; AAD: the header.
    std::memcpy(nonce, k.salt, 4);
    std::memcpy(nonce + 4, k.iv, 8);
    unsigned char seq[8];
    put_be64(seq, k.seq);
    for (int i = 0; i < 8; ++i) nonce[4 + i] ^= seq[i];
    aad.assign(rec.begin(), rec.begin() + 5);
  } else {
    // RFC 5288 §3: salt || explicit nonce (sent first); AAD: seq || type || version || length.
    std::memcpy(nonce, k.salt, 4);
    std::memcpy(nonce + 4, body, 8);
    body += 8;
    body_len -= 8;
    aad.resize(13);
    put_be64(aad.data(), k.seq);
    aad[8] = 23;
    aad[9] = 3;
    aad[10] = 3;
    aad[11] = static_cast<unsigned char>(body_len >> 8);
    aad[12] = static_cast<unsigned char>(body_len);
  }
  const EVP_CIPHER* cipher = k.key_len == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm();
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  std::string out(body_len, '\0');
  int n = 0, fin = 0;
  const bool ok =
      ctx && EVP_DecryptInit_ex(ctx, cipher, nullptr, k.key, nonce) == 1 &&
      EVP_DecryptUpdate(ctx, nullptr, &n, aad.data(), static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(out.data()), &n, body, static_cast<int>(body_len)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, const_cast<unsigned char*>(body + body_len)) == 1 &&
      EVP_DecryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()) + n, &fin) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return "<failed: authentication>";
  if (k.version == 0x0304) {  // TLSInnerPlaintext: content, type, zero padding
    while (!out.empty() && out.back() == '\0') out.pop_back();
    if (out.empty() || out.back() != 23) return "<failed: inner type>";
    out.pop_back();
  }
  return out;
}

struct variant {
  const char* name;
  int version;
  const char* ciphers;  // TLS 1.3 suites or TLS 1.2 cipher list
  std::size_t key_len;
};

}  // namespace

// A server context with a throwaway certificate for "localhost", and a client
// context that trusts its CA.
struct contexts {
  ws6455_test::test_pki pki;
  std::shared_ptr<tls_context> server, client;
  contexts() {
    const auto leaf = pki.leaf("server", {"localhost"});
    REQUIRE_MESSAGE(pki.error().empty(), pki.error());
    ws6455::io::server_tls_options so;
    so.cert_file = leaf.cert_file;
    so.key_file = leaf.key_file;
    auto s = tls_context::make_server(so);
    auto c = tls_context::make_client(pki.ca_file, false);
    REQUIRE(s.has_value());
    REQUIRE(c.has_value());
    server = *s;
    client = *c;
  }
};

TEST_CASE("ktls: the keys and record count handed to the kernel decrypt OpenSSL's next record, both ways") {
  contexts ctx;
  auto* server_ctx = &ctx.server;
  auto* client_ctx = &ctx.client;

  const variant variants[] = {
      {"TLS 1.3 AES-128-GCM", TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", 16},
      {"TLS 1.3 AES-256-GCM", TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", 32},
      {"TLS 1.2 AES-128-GCM", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", 16},
      {"TLS 1.2 AES-256-GCM", TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", 32},
  };
  for (const variant& v : variants) {
    SSL_SESSION* resume = nullptr;
    // A full handshake, then one resumed with its ticket (other records before ours).
    for (int attempt = 0; attempt < 2; ++attempt) {
      const std::string what = std::string(v.name) + (attempt ? ", resumed" : ", full handshake");
      INFO(what);
      std::string why;
      auto server = tls_session::make(**server_ctx, "", &why);
      auto client = tls_session::make(**client_ctx, "localhost", &why);
      REQUIRE(server);
      REQUIRE(client);
      for (SSL* ssl : {server->native_handle(), client->native_handle()}) {
        SSL_set_max_proto_version(ssl, v.version);
        if (v.version == TLS1_3_VERSION) SSL_set_ciphersuites(ssl, v.ciphers);
        else SSL_set_cipher_list(ssl, v.ciphers);
      }
      if (resume) SSL_set_session(client->native_handle(), resume);
      client->start();
      REQUIRE(pump(*client, *server));
      REQUIRE(client->established());
      REQUIRE(server->established());
      CHECK(SSL_session_reused(client->native_handle()) == attempt);
      // Application data before the switch: counted too.
      for (tls_session* s : {server.get(), client.get()}) REQUIRE(s->encrypt(std::as_bytes(std::span("early", 5))));
      REQUIRE(pump(*client, *server));

      for (tls_session* s : {server.get(), client.get()}) {
        INFO((s == server.get() ? "server" : "client") << " sending");
        ktls_keys k;
        REQUIRE_MESSAGE(s->kernel_tx_keys(k, &why), why);
        CHECK(k.key_len == v.key_len);
        CHECK(k.version == (v.version == TLS1_3_VERSION ? 0x0304 : 0x0303));
        REQUIRE(s->encrypt(std::as_bytes(std::span("to the kernel", 13))));
        CHECK(open_record(drain(*s), k) == "to the kernel");
        // One record later, the count must have moved on with it.
        ktls_keys next;
        REQUIRE(s->kernel_tx_keys(next, &why));
        CHECK(next.seq == k.seq + 1);
        REQUIRE(s->encrypt(std::as_bytes(std::span("and again", 9))));
        CHECK(open_record(drain(*s), next) == "and again");
      }
      // A clean close (OpenSSL drops a session freed without one from resumption).
      (void)client->shutdown();
      // The client's session (with the ticket that came after the handshake) resumes.
      if (!resume) resume = SSL_get1_session(client->native_handle());
    }
    SSL_SESSION_free(resume);
  }
}

TEST_CASE("ktls: HKDF-Expand-Label matches RFC 8448's simple 1-RTT handshake") {
  // RFC 8448 §3: server application traffic secret -> key and iv (TLS_AES_128_GCM_SHA256).
  auto hex = [](const char* s) {
    std::vector<unsigned char> v;
    for (; s[0] && s[1]; s += 2) {
      while (*s == ' ') ++s;
      v.push_back(static_cast<unsigned char>(std::stoi(std::string(s, 2), nullptr, 16)));
    }
    return v;
  };
  const auto secret = hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
  unsigned char key[16], iv[12];
  REQUIRE(ws6455::io::detail::hkdf_expand_label("SHA256", secret, "key", key));
  REQUIRE(ws6455::io::detail::hkdf_expand_label("SHA256", secret, "iv", iv));
  CHECK(std::vector<unsigned char>(key, key + 16) == hex("9f02283b6c9c07efc26bb9f2ac92e356"));
  CHECK(std::vector<unsigned char>(iv, iv + 12) == hex("cf782b88dd83549aadf1e984"));
}

TEST_CASE("ktls: no kernel TLS after a key update or with a negotiated max_fragment_length") {
  contexts ctx;
  auto* server_ctx = &ctx.server;
  auto* client_ctx = &ctx.client;
  std::string why;
  ktls_keys k;
  SUBCASE("RFC 8446 §4.6.3: after our KeyUpdate the key log's secret is stale") {
    auto server = tls_session::make(**server_ctx, "", &why);
    auto client = tls_session::make(**client_ctx, "localhost", &why);
    client->start();
    REQUIRE(pump(*client, *server));
    REQUIRE(client->kernel_tx_keys(k, &why));
    REQUIRE(SSL_key_update(client->native_handle(), SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
    CHECK_FALSE(client->kernel_tx_keys(k, &why));  // pending
    REQUIRE(client->encrypt(std::as_bytes(std::span("x", 1))));  // sent with this write
    REQUIRE(pump(*client, *server));
    CHECK_FALSE(client->kernel_tx_keys(k, &why));
    CHECK_FALSE(client->kernel_tx_possible());
    CHECK(server->kernel_tx_keys(k, &why));  // the receiving side's own keys did not change
  }
  SUBCASE("RFC 6066 §4: records of at most 512 bytes were agreed; the kernel would make 16 KiB") {
    auto server = tls_session::make(**server_ctx, "", &why);
    auto client = tls_session::make(**client_ctx, "localhost", &why);
    REQUIRE(SSL_set_tlsext_max_fragment_length(client->native_handle(), TLSEXT_max_fragment_length_512) == 1);
    client->start();
    REQUIRE(pump(*client, *server));
    CHECK_FALSE(server->kernel_tx_keys(k, &why));
    CHECK_FALSE(client->kernel_tx_keys(k, &why));
    CHECK(why.find("max_fragment_length") != std::string::npos);
  }
}
