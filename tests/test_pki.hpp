// A throwaway PKI for the TLS tests, made with the OpenSSL API when a case runs.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "ws6455/io/server.hpp"

namespace ws6455_test {

namespace io = ws6455::io;

// A throwaway PKI made with the OpenSSL API when a case runs: a CA and leaf
// certificates (P-256, valid for two days), PEM files in a temporary directory
// removed at the end. No key is committed. error() is non-empty when making
// them failed (the case then fails with it).
class test_pki {
 public:
  test_pki() {
    char tmpl[] = "/tmp/ws6455-test-pki-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      error_ = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    dir_ = tmpl;
    ca_key_ = new_key();
    ca_ = make_cert(ca_key_, "ws6455 test CA", nullptr, nullptr,
                    {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_key_usage, "critical,keyCertSign,cRLSign"}});
    ca_file = dir_ + "/ca.pem";
    if (ca_ && !write_pem(ca_file, ca_, nullptr)) fail("cannot write " + ca_file);
  }
  ~test_pki() {
    X509_free(ca_);
    EVP_PKEY_free(ca_key_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  test_pki(const test_pki&) = delete;
  test_pki& operator=(const test_pki&) = delete;

  // A server certificate signed by the CA for the DNS names `names`; the first is
  // also its CN, by which a test tells which certificate was served.
  io::tls_certificate leaf(const std::string& stem, const std::vector<std::string>& names) {
    io::tls_certificate out{dir_ + "/" + stem + ".pem", dir_ + "/" + stem + ".key"};
    if (!ca_ || names.empty()) return out;
    std::string san;
    for (const auto& n : names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
    EVP_PKEY* key = new_key();
    X509* x = make_cert(key, names[0], ca_, ca_key_,
                        {{NID_basic_constraints, "CA:FALSE"}, {NID_ext_key_usage, "serverAuth"},
                         {NID_subject_alt_name, san}});
    if (x && !write_pem(out.cert_file, x, nullptr)) fail("cannot write " + out.cert_file);
    if (x && !write_pem(out.key_file, nullptr, key)) fail("cannot write " + out.key_file);
    X509_free(x);
    EVP_PKEY_free(key);
    return out;
  }

  const std::string& error() const { return error_; }
  std::string ca_file;

 private:
  void fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
  }

  EVP_PKEY* new_key() {
    EVP_PKEY* key = nullptr;
    EVP_PKEY_CTX* kc = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr);
    if (!kc || EVP_PKEY_keygen_init(kc) != 1 || EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kc, NID_X9_62_prime256v1) != 1 ||
        EVP_PKEY_keygen(kc, &key) != 1)
      fail("EC key generation failed");
    EVP_PKEY_CTX_free(kc);
    return key;
  }

  // Self-signed when issuer is null.
  X509* make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                  const std::vector<std::pair<int, std::string>>& extensions) {
    if (!key) return nullptr;
    X509* x = X509_new();
    bool ok = x && X509_set_version(x, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(x), ++serial_) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(x), -3600) && X509_gmtime_adj(X509_getm_notAfter(x), 2 * 86400) &&
              X509_set_pubkey(x, key) == 1 &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                         reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) == 1 &&
              X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x)) == 1;
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, nullptr, nullptr, 0);
    for (const auto& [nid, value] : extensions) {
      if (!ok) break;
      X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
      ok = e && X509_add_ext(x, e, -1) == 1;
      X509_EXTENSION_free(e);
    }
    ok = ok && X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
      fail("cannot make the certificate for " + cn);
      X509_free(x);
      return nullptr;
    }
    return x;
  }

  static bool write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return false;
    const bool ok = cert ? PEM_write_X509(f, cert) == 1
                         : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    return std::fclose(f) == 0 && ok;
  }

  std::string dir_, error_;
  EVP_PKEY* ca_key_ = nullptr;
  X509* ca_ = nullptr;
  long serial_ = 1000;
};

}  // namespace ws6455_test
