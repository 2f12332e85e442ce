// permessage-deflate negotiation (RFC 7692 §5, §7.1) and the Sec-WebSocket-Extensions
// grammar (RFC 6455 §9.1, tokens and quoted strings per RFC 9110 §5.6).
#include <algorithm>
#include <string>
#include <utility>

#include "handshake/head_parser.hpp"  // detail::is_tchar, shared with the HTTP parser
#include "ws6455/permessage_deflate.hpp"

namespace ws6455 {

namespace {

// Brace-initialised: clang 14 has no parenthesised aggregate initialisation.
unexpected<std::string> fail(std::string reason) { return unexpected<std::string>{std::move(reason)}; }


// RFC 9110 §5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text.
bool is_qdtext(unsigned char c) {
  return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E) || c >= 0x80;
}
// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
bool is_quotable(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }


// A single-pass cursor over the header value; no backtracking, no regex.
class parser {
 public:
  explicit parser(std::string_view s) : s_(s) {}

  void ows() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool done() const { return i_ >= s_.size(); }
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool token(std::string& out) {
    const std::size_t b = i_;
    while (i_ < s_.size() && detail::is_tchar(static_cast<unsigned char>(s_[i_]))) ++i_;
    out.assign(s_.substr(b, i_ - b));
    return i_ > b;
  }
  bool quoted(std::string& out) {
    if (!eat('"')) return false;
    out.clear();
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c == '\\') {
        if (i_ + 1 >= s_.size() || !is_quotable(static_cast<unsigned char>(s_[i_ + 1]))) return false;
        out.push_back(s_[i_ + 1]);
        i_ += 2;
        continue;
      }
      if (!is_qdtext(c)) return false;
      out.push_back(static_cast<char>(c));
      ++i_;
    }
    return false;  // unterminated
  }
  std::size_t pos() const { return i_; }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

std::string at(const parser& p, std::string_view what) {
  return std::string(what) + " at offset " + std::to_string(p.pos());
}

// "8".."15" exactly: RFC 7692 §7.1.2.1 allows no leading zeros or signs.
std::optional<std::uint8_t> window_bits(const std::optional<std::string>& v) {
  if (!v) return std::nullopt;
  const std::string& s = *v;
  if (s.size() == 1 && s[0] >= '8' && s[0] <= '9') return static_cast<std::uint8_t>(s[0] - '0');
  if (s.size() == 2 && s[0] == '1' && s[1] >= '0' && s[1] <= '5') return static_cast<std::uint8_t>(10 + (s[1] - '0'));
  return std::nullopt;
}

// The four parameters of one permessage-deflate element, checked for the rules both
// sides share (RFC 7692 §7.1): known names, no duplicates, no value on the
// *_no_context_takeover flags, windows "8".."15". A value-less client_max_window_bits is
// kept as `client_bits_present` without a value; whether that is allowed is the caller's.
struct pmd_params {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  std::optional<std::uint8_t> server_max_window_bits;
  bool client_bits_present = false;
  std::optional<std::uint8_t> client_max_window_bits;
};

expected<pmd_params, std::string> read_params(const extension& e) {
  pmd_params p;
  bool seen_server_bits = false;
  for (const extension_param& q : e.params) {
    if (iequals(q.name, "server_no_context_takeover")) {
      if (p.server_no_context_takeover) return fail("duplicate server_no_context_takeover");
      if (q.value) return fail("server_no_context_takeover has a value");  // §7.1.1.1
      p.server_no_context_takeover = true;
    } else if (iequals(q.name, "client_no_context_takeover")) {
      if (p.client_no_context_takeover) return fail("duplicate client_no_context_takeover");
      if (q.value) return fail("client_no_context_takeover has a value");  // §7.1.1.2
      p.client_no_context_takeover = true;
    } else if (iequals(q.name, "server_max_window_bits")) {
      if (seen_server_bits) return fail("duplicate server_max_window_bits");
      seen_server_bits = true;
      // §7.1.2.1: always with a value.
      const auto b = window_bits(q.value);
      if (!b) return fail("bad server_max_window_bits value");
      p.server_max_window_bits = b;
    } else if (iequals(q.name, "client_max_window_bits")) {
      if (p.client_bits_present) return fail("duplicate client_max_window_bits");
      p.client_bits_present = true;
      if (q.value) {  // §7.1.2.2: the value may be absent (in an offer)
        const auto b = window_bits(q.value);
        if (!b) return fail("bad client_max_window_bits value");
        p.client_max_window_bits = b;
      }
    } else {
      return fail("unknown parameter " + q.name);  // §7.1: decline unknown parameters
    }
  }
  return p;
}

}  // namespace

expected<std::vector<extension>, std::string> parse_extensions(std::string_view header_value) {
  std::vector<extension> list;
  parser p(header_value);
  p.ows();
  while (!p.done()) {
    if (p.eat(',')) {  // an empty list element (RFC 9110 §5.6.1)
      p.ows();
      continue;
    }
    extension e;
    if (!p.token(e.name)) return fail(at(p, "expected an extension token"));
    p.ows();
    while (p.eat(';')) {
      p.ows();
      extension_param q;
      if (!p.token(q.name)) return fail(at(p, "expected a parameter token"));
      p.ows();
      if (p.eat('=')) {
        p.ows();
        std::string v;
        if (!p.token(v) && !p.quoted(v)) return fail(at(p, "expected a token or quoted-string value"));
        q.value = std::move(v);
        p.ows();
      }
      e.params.push_back(std::move(q));
    }
    list.push_back(std::move(e));
    if (p.done()) break;
    if (!p.eat(',')) return fail(at(p, "expected ',' or ';'"));
    p.ows();
  }
  if (list.empty()) return fail("empty extension list");
  return list;
}

namespace permessage_deflate {

namespace {

void append_bits(std::string& out, std::string_view name, int bits) {
  out += "; ";
  out += name;
  out += '=';
  out += std::to_string(bits);
}

std::uint8_t clamp_bits(std::uint8_t b) { return std::clamp<std::uint8_t>(b, 8, 15); }

}  // namespace

std::optional<agreement> negotiate(std::string_view offers, const server_options& opts) {
  if (!opts.enable) return std::nullopt;
  auto list = parse_extensions(offers);
  if (!list) return std::nullopt;  // malformed header: answer without the extension
  const std::uint8_t own_bits = clamp_bits(opts.server_max_window_bits);
  const std::uint8_t peer_limit = clamp_bits(opts.client_max_window_bits);
  for (const extension& e : *list) {
    if (!iequals(e.name, name)) continue;  // other extensions are not ours to judge
    auto parsed = read_params(e);
    if (!parsed) continue;  // RFC 7692 §5: decline an offer we cannot read, try the next
    const pmd_params& o = *parsed;
    if (opts.require_client_max_window_bits && !o.client_bits_present) continue;

    agreement a;
    deflate_params& d = a.params;
    d.mem_level = std::clamp<std::uint8_t>(opts.mem_level, 1, 9);
    d.compress_threshold = opts.compress_threshold;
    std::string& r = a.response;
    r = name;
    // §7.1.1.1: a requested server_no_context_takeover must be accepted.
    d.server_no_context_takeover = o.server_no_context_takeover || opts.server_no_context_takeover;
    if (d.server_no_context_takeover) r += "; server_no_context_takeover";
    // §7.1.1.2: the server may always ask; echo the client's own declaration too.
    d.client_no_context_takeover = o.client_no_context_takeover || opts.client_no_context_takeover;
    if (d.client_no_context_takeover) r += "; client_no_context_takeover";
    // §7.1.2.1: answer a request with the same or a smaller value; without one, tell the
    // client our smaller window anyway so it can size its inflater.
    d.server_max_window_bits = o.server_max_window_bits ? std::min(*o.server_max_window_bits, own_bits) : own_bits;
    if (o.server_max_window_bits || d.server_max_window_bits < 15)
      append_bits(r, "server_max_window_bits", d.server_max_window_bits);
    // §7.1.2.2: only if the offer has the parameter may the response limit the client;
    // an offered value is the client's own limit already.
    if (o.client_bits_present) {
      d.client_max_window_bits = o.client_max_window_bits ? std::min(*o.client_max_window_bits, peer_limit) : peer_limit;
      if (o.client_max_window_bits || d.client_max_window_bits < 15)
        append_bits(r, "client_max_window_bits", d.client_max_window_bits);
    } else {
      d.client_max_window_bits = 15;
    }
    return a;
  }
  return std::nullopt;
}

std::string make_offer(const client_options& opts) {
  if (!opts.enable) return {};
  std::string r(name);
  if (opts.server_no_context_takeover) r += "; server_no_context_takeover";
  if (opts.client_no_context_takeover) r += "; client_no_context_takeover";
  const std::uint8_t server_bits = clamp_bits(opts.server_max_window_bits);
  if (server_bits < 15) append_bits(r, "server_max_window_bits", server_bits);
  const std::uint8_t client_bits = clamp_bits(opts.client_max_window_bits);
  if (!opts.offer_client_max_window_bits) return r;
  if (client_bits < 15)
    append_bits(r, "client_max_window_bits", client_bits);
  else
    r += "; client_max_window_bits";  // §7.1.2.2: we accept a limit from the server
  return r;
}

expected<std::optional<deflate_params>, std::string> validate_response(std::string_view response,
                                                                       const client_options& opts) {
  // No Sec-WebSocket-Extensions in the 101: no extension in use (RFC 6455 §9.1); the
  // server may always decline permessage-deflate (RFC 7692 §5). Not an error.
  if (detail::trim_ows(response).empty()) return std::optional<deflate_params>{};
  if (!opts.enable) return fail("permessage-deflate was not offered");
  auto list = parse_extensions(response);
  if (!list) return fail("malformed Sec-WebSocket-Extensions: " + list.error());
  // RFC 6455 §9.1 / §4.1: only what we offered may come back, and once.
  const extension* pmd = nullptr;
  for (const extension& e : *list) {
    if (!iequals(e.name, name)) return fail("extension " + e.name + " was not offered");
    if (pmd) return fail("more than one permessage-deflate in the response");
    pmd = &e;
  }
  auto parsed = read_params(*pmd);
  if (!parsed) return fail(parsed.error());
  const pmd_params& p = *parsed;

  deflate_params d;
  d.mem_level = std::clamp<std::uint8_t>(opts.mem_level, 1, 9);
  d.compress_threshold = opts.compress_threshold;
  // §7.1.1.1: a server accepts our request only by including the parameter.
  if (opts.server_no_context_takeover && !p.server_no_context_takeover)
    return fail("server_no_context_takeover was requested but not accepted");
  d.server_no_context_takeover = p.server_no_context_takeover;
  // §7.1.1.2: the server may add it unasked; our own declaration binds us too.
  d.client_no_context_takeover = p.client_no_context_takeover || opts.client_no_context_takeover;
  // §7.1.2.1: accepted with the same or a smaller value; unasked, any value.
  const std::uint8_t asked_server = clamp_bits(opts.server_max_window_bits);
  if (asked_server < 15) {
    if (!p.server_max_window_bits)
      return fail("server_max_window_bits was requested but not accepted");
    if (*p.server_max_window_bits > asked_server)
      return fail("server_max_window_bits is larger than requested");
  }
  d.server_max_window_bits = p.server_max_window_bits.value_or(15);
  // §7.1.2.2: a response's client_max_window_bits needs a value no larger than offered.
  const std::uint8_t own_bits = clamp_bits(opts.client_max_window_bits);
  if (p.client_bits_present && !opts.offer_client_max_window_bits)
    return fail("client_max_window_bits was not offered");
  if (p.client_bits_present && !p.client_max_window_bits)
    return fail("client_max_window_bits without a value in the response");
  if (p.client_max_window_bits && *p.client_max_window_bits > own_bits)
    return fail("client_max_window_bits is larger than offered");
  d.client_max_window_bits = std::min(p.client_max_window_bits.value_or(15), own_bits);
  return std::optional<deflate_params>(d);
}

}  // namespace permessage_deflate
}  // namespace ws6455
