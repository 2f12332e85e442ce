// permessage-deflate negotiation (RFC 7692 §5, §7.1) over the Sec-WebSocket-Extensions
// header (RFC 6455 §9.1). Handshake-time code: it allocates, the frame layer does not.
//
// Several Sec-WebSocket-Extensions header fields are one list: join their values with
// ", " before calling (RFC 9110 §5.3).
//
// Defaults, about 64 KiB of zlib memory per connection (websockets' choice), from zlib's
// formula: deflate (1 << (window + 2)) + (1 << (memLevel + 9)) plus ~6 KiB of state,
// inflate (1 << window) plus ~7 KiB:
//   server: compresses with window 12 / memLevel 5 (32 KiB + 6 KiB), and limits the
//           client to window 12 when the client allows it (4 KiB + 7 KiB): ~49 KiB;
//           if the client's offer has no client_max_window_bits the client may use 15
//           and the inflater needs 32 KiB + 7 KiB: ~77 KiB.
//   client: compresses with window 12 / memLevel 5 (~38 KiB), inflates the server's
//           window 15 unless server_max_window_bits is requested (~39 KiB): ~77 KiB.
// Window 15 / memLevel 8 (zlib's defaults) would cost 256 + 6 KiB to compress.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ws6455/deflate_params.hpp"
#include "ws6455/expected.hpp"

namespace ws6455 {

// One element of a Sec-WebSocket-Extensions list (RFC 6455 §9.1):
//   extension = extension-token *( OWS ";" OWS extension-param )
//   extension-param = token [ OWS "=" OWS ( token / quoted-string ) ]
// Quoted values are unescaped. Names keep their spelling; compare them without case.
struct extension_param {
  std::string name;
  std::optional<std::string> value;  // nullopt: the parameter has no "=value"
};
struct extension {
  std::string name;
  std::vector<extension_param> params;
};

// Parses a whole header value (1#extension, empty list elements skipped per RFC 9110
// §5.6.1). Fails, with a reason, on anything outside the grammar or on an empty list.
expected<std::vector<extension>, std::string> parse_extensions(std::string_view header_value);

namespace permessage_deflate {

inline constexpr std::string_view name = "permessage-deflate";

// What a server accepts. Window bits are 8..15 (8 runs as 9 in zlib, see deflate_params).
struct server_options {
  bool enable = true;
  // Our compressor's window. Sent as server_max_window_bits when below 15 or when the
  // client asked for a limit (answered with the smaller of the two, §7.1.2.1).
  std::uint8_t server_max_window_bits = 12;
  // Always drop our compression context between messages (§7.1.1.1). Costs ratio,
  // saves nothing in zlib memory (the window stays allocated), but lets a server send
  // pre-compressed (prepared) messages. Forced on when the client asks for it.
  bool server_no_context_takeover = false;
  // Ask the client to drop its context between messages (§7.1.1.2). Also included
  // whenever the client's offer declares it.
  bool client_no_context_takeover = false;
  // Limit for the client's window (our inflater), sent only when the offer has
  // client_max_window_bits (§7.1.2.2); otherwise the client may use 15.
  std::uint8_t client_max_window_bits = 12;
  // Skip offers without client_max_window_bits, i.e. insist on the limit above.
  bool require_client_max_window_bits = false;
  std::uint8_t mem_level = default_deflate_mem_level;            // zlib memLevel 1..9 for our compressor
  std::size_t compress_threshold = default_compress_threshold;  // send smaller messages uncompressed
};

struct agreement {
  deflate_params params;
  std::string response;  // the Sec-WebSocket-Extensions value to send back
};

// Server side (RFC 7692 §5, §7.1): the first permessage-deflate offer in `offers` that
// is valid and acceptable under `opts`, its parameters, and the response value, e.g.
//   "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12".
// Other extensions are ignored. Offers with an unknown or duplicated parameter, a value
// on a *_no_context_takeover, or a window outside "8".."15" are skipped. nullopt: no
// offer acceptable (or opts.enable is false, or the header does not parse): answer
// without permessage-deflate.
std::optional<agreement> negotiate(std::string_view offers, const server_options& opts = {});

// What a client offers and how it compresses.
struct client_options {
  bool enable = true;
  // Our compressor's window. Offered as a value-less client_max_window_bits (support
  // for the parameter) when 15, as client_max_window_bits=N below that.
  std::uint8_t client_max_window_bits = 12;
  // Put client_max_window_bits in the offer at all. Without it the server may not limit
  // our window (and a response carrying it is refused); we still compress with the
  // window above, which any decompressor accepts.
  bool offer_client_max_window_bits = true;
  // Ask the server to limit its window to this (saves our inflater memory); 15: not
  // asked. A server that cannot honour it declines compression.
  std::uint8_t server_max_window_bits = 15;
  bool server_no_context_takeover = false;  // ask the server to drop its context
  bool client_no_context_takeover = false;  // declare we drop ours (§7.1.1.2)
  std::uint8_t mem_level = default_deflate_mem_level;
  std::size_t compress_threshold = default_compress_threshold;
};

// The Sec-WebSocket-Extensions value a client sends, e.g.
// "permessage-deflate; client_max_window_bits=12". Empty when opts.enable is false.
std::string make_offer(const client_options& opts = {});

// Client side: checks the server's Sec-WebSocket-Extensions response value against the
// offer make_offer(opts) made (RFC 6455 §4.1: fail on any extension not offered; RFC
// 7692 §7.1): exactly one permessage-deflate and nothing else, no unknown or duplicated
// parameters, valid values, server_no_context_takeover and server_max_window_bits (<=
// the request) present if requested, client_max_window_bits only with a value <= ours.
// The error string says what was wrong (the client fails the connection, §5).
// An empty `response` (the 101 had no Sec-WebSocket-Extensions: the server declined,
// RFC 7692 §5) is not an error: the result holds nullopt, no compression. Either way
// the value goes straight into config::deflate:
//   auto p = validate_response(hs.extensions(), opts);
//   if (!p) fail(p.error());
//   cfg.deflate = *p;
// In the result, client_max_window_bits is the window we compress with: the smaller of
// the server's limit and opts (a compressor may always use a smaller window).
expected<std::optional<deflate_params>, std::string> validate_response(std::string_view response,
                                                                       const client_options& opts = {});

}  // namespace permessage_deflate
}  // namespace ws6455
