/* ulp_probe: is kernel TLS (the "tls" TCP ULP) usable on this kernel?
 *
 * For each cipher kTLS offers a TLS library, over a fresh 127.0.0.1 TCP pair:
 * setsockopt(TCP_ULP, "tls") and TLS_TX on the client with a dummy key, TCP_ULP and
 * TLS_RX with the same key on the server's side, then a message sent through both.
 * For TLS 1.2 AES-128-GCM it also reads one record raw (no TLS_RX) to see that the
 * kernel really framed and encrypted it.
 *
 * Prints one line per step that fails ("... failed: errno N (text)"), one "ok" line per
 * cipher, and last "ulp_probe: OK" (exit 0) or "ulp_probe: FAIL" (exit 1).
 * Usage: ulp_probe [-1]   (-1: only TCP_ULP + TLS_TX for TLS 1.2 AES-128-GCM)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static int failures;

static void fail(const char *cipher, const char *step) {
  printf("ulp_probe: %s: %s failed: errno %d (%s)\n", cipher, step, errno, strerror(errno));
  fflush(stdout);
  failures++;
}

/* A connected pair over 127.0.0.1: *client and *server (the accepted side). */
static int tcp_pair(int *client, int *server) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
      getsockname(l, (struct sockaddr *)&a, &len))
    return -1;
  *client = socket(AF_INET, SOCK_STREAM, 0);
  if (*client < 0 || connect(*client, (struct sockaddr *)&a, sizeof a)) return -1;
  *server = accept(l, NULL, NULL);
  close(l);
  if (*server < 0) return -1;
  struct timeval tv = {.tv_sec = 5};
  setsockopt(*server, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(*client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return 0;
}

/* Reads exactly n bytes (plain recv: kTLS RX hands back application data records). */
static ssize_t read_n(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
    if (r <= 0) return r < 0 ? -1 : (ssize_t)got;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

static const char message[] = "hello from kernel TLS";

/* One cipher: info/size is the tls12_crypto_info_* struct (the key material is dummy). */
static void probe(const char *cipher, const void *info, socklen_t size, int tx_only,
                  int raw_check, size_t record_overhead) {
  int c, s;
  if (tcp_pair(&c, &s)) {
    fail(cipher, "TCP pair on 127.0.0.1");
    return;
  }
  if (setsockopt(c, SOL_TCP, TCP_ULP, "tls", sizeof "tls")) {
    fail(cipher, "setsockopt(TCP_ULP, \"tls\")");
    goto out;
  }
  if (setsockopt(c, SOL_TLS, TLS_TX, info, size)) {
    fail(cipher, "setsockopt(SOL_TLS, TLS_TX)");
    goto out;
  }
  if (tx_only) {
    printf("ulp_probe: %s: TCP_ULP tls + TLS_TX ok\n", cipher);
    goto out;
  }
  if (send(c, message, sizeof message, 0) != (ssize_t)sizeof message) {
    fail(cipher, "send through TLS_TX");
    goto out;
  }
  if (raw_check) {
    /* No TLS_RX on the server: what arrives is the record the kernel built. */
    unsigned char rec[256];
    size_t want = 5 + sizeof message + record_overhead;
    ssize_t n = read_n(s, rec, want);
    if (n != (ssize_t)want) {
      fail(cipher, "reading the raw record");
      goto out;
    }
    size_t body = ((size_t)rec[3] << 8) | rec[4];
    if (rec[0] != 0x17 || rec[1] != 0x03 || rec[2] != 0x03 || body != want - 5 ||
        memmem(rec, (size_t)n, message, sizeof message - 1) != NULL) {
      errno = EPROTO;
      fail(cipher, "raw record check (type 23, version 3.3, length, no plaintext)");
      goto out;
    }
    printf("ulp_probe: %s: raw record ok (%zd bytes, encrypted)\n", cipher, n);
  } else {
    if (setsockopt(s, SOL_TCP, TCP_ULP, "tls", sizeof "tls")) {
      fail(cipher, "server setsockopt(TCP_ULP, \"tls\")");
      goto out;
    }
    if (setsockopt(s, SOL_TLS, TLS_RX, info, size)) {
      fail(cipher, "setsockopt(SOL_TLS, TLS_RX)");
      goto out;
    }
    char buf[sizeof message];
    if (read_n(s, buf, sizeof buf) != (ssize_t)sizeof buf || memcmp(buf, message, sizeof buf)) {
      fail(cipher, "recv through TLS_RX");
      goto out;
    }
    printf("ulp_probe: %s: TLS_TX -> TLS_RX round trip ok\n", cipher);
  }
out:
  fflush(stdout);
  close(c);
  close(s);
}

#define FILL(field, byte) memset((field), (byte), sizeof(field))

int main(int argc, char **argv) {
  int tx_only = argc > 1 && strcmp(argv[1], "-1") == 0;

  struct tls12_crypto_info_aes_gcm_128 g128 = {0};
  g128.info.version = TLS_1_2_VERSION;
  g128.info.cipher_type = TLS_CIPHER_AES_GCM_128;
  FILL(g128.key, 0x11);
  FILL(g128.iv, 0x22);
  FILL(g128.salt, 0x33);
  /* rec_seq stays 0 */
  probe("tls12-aes-128-gcm", &g128, sizeof g128, tx_only, 0, 0);
  if (tx_only) goto done;
  /* A TLS 1.2 GCM record: 8-byte explicit nonce + data + 16-byte tag. */
  probe("tls12-aes-128-gcm (raw)", &g128, sizeof g128, 0, 1, 8 + 16);

  struct tls12_crypto_info_aes_gcm_256 g256 = {0};
  g256.info.version = TLS_1_2_VERSION;
  g256.info.cipher_type = TLS_CIPHER_AES_GCM_256;
  FILL(g256.key, 0x44);
  FILL(g256.iv, 0x55);
  FILL(g256.salt, 0x66);
  probe("tls12-aes-256-gcm", &g256, sizeof g256, 0, 0, 0);

  g128.info.version = TLS_1_3_VERSION;
  probe("tls13-aes-128-gcm", &g128, sizeof g128, 0, 0, 0);
  g256.info.version = TLS_1_3_VERSION;
  probe("tls13-aes-256-gcm", &g256, sizeof g256, 0, 0, 0);

#ifdef TLS_CIPHER_CHACHA20_POLY1305
  struct tls12_crypto_info_chacha20_poly1305 cc = {0};
  cc.info.version = TLS_1_3_VERSION;
  cc.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
  FILL(cc.key, 0x77);
  FILL(cc.iv, 0x88);
  probe("tls13-chacha20-poly1305", &cc, sizeof cc, 0, 0, 0);
#endif

done:
  printf("ulp_probe: %s\n", failures ? "FAIL" : "OK");
  return failures ? 1 : 0;
}
