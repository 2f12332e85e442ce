// Cryptographically random bytes for client masking keys (RFC 6455 §5.3, §10.3) and
// Sec-WebSocket-Key (§4.1). OpenSSL's RAND_bytes, drawn in blocks into a per-thread
// pool so a frame does not cost a call into OpenSSL. The pool is wiped in a forked
// child (MADV_WIPEONFORK), so parent and child never share keys.
#pragma once

#include <cstddef>
#include <span>

namespace ws6455::detail {

void random_bytes(std::span<std::byte> out) noexcept;

}  // namespace ws6455::detail
