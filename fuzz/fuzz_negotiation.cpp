// libFuzzer target: permessage-deflate negotiation (RFC 7692 §5, §7.1) over the
// Sec-WebSocket-Extensions grammar (RFC 6455 §9.1).
// Input: 3 option bytes (server_options, client_options for validate_response and for
// make_offer), then the header value. The value goes through
//   - parse_extensions: deterministic; names are tokens; serialising the list again
//     (values as quoted-strings) and re-parsing gives the same list;
//   - negotiate (fuzzer-chosen server_options): deterministic; agrees with a model of the
//     documented rules (the first permessage-deflate offer with only known, undoubled
//     parameters, no value on *_no_context_takeover, windows "8".."15", and
//     client_max_window_bits when required, is taken); the agreement's parameters are
//     what the header promises, its response parses as exactly one permessage-deflate,
//     and validate_response accepts it both for a plain client (windows 15, no flags)
//     and for the client_options that make exactly the accepted offer, with the same
//     parameters;
//   - validate_response (fuzzer-chosen client_options), the value taken as a response:
//     a blank value (no header) is "no deflate", never an error; otherwise it never
//     accepts anything but exactly one permessage-deflate; what it accepts keeps
//     the rules of the header (requested flags/limits honoured, windows 8..15).
// Finally make_offer(fuzzer-chosen client_options) must be accepted by negotiate under
// default server options, and the answer by validate_response with the same options.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ws6455/permessage_deflate.hpp"

namespace {

namespace pmd = ws6455::permessage_deflate;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// RFC 9110 §5.6.2.
bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s)
    if (!is_tchar(static_cast<unsigned char>(c))) return false;
  return true;
}

bool same_list(const std::vector<ws6455::extension>& a, const std::vector<ws6455::extension>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].params.size() != b[i].params.size()) return false;
    for (std::size_t j = 0; j < a[i].params.size(); ++j)
      if (a[i].params[j].name != b[i].params[j].name || a[i].params[j].value != b[i].params[j].value) return false;
  }
  return true;
}

// Every value as a quoted-string ('"' and '\' escaped; what remains is qdtext).
std::string serialise(const std::vector<ws6455::extension>& list) {
  std::string s;
  for (const auto& e : list) {
    if (!s.empty()) s += ", ";
    s += e.name;
    for (const auto& p : e.params) {
      s += "; ";
      s += p.name;
      if (p.value) {
        s += "=\"";
        for (const char c : *p.value) {
          if (c == '"' || c == '\\') s += '\\';
          s += c;
        }
        s += '"';
      }
    }
  }
  return s;
}

std::optional<std::uint8_t> bits(const std::optional<std::string>& v) {
  if (!v) return std::nullopt;
  for (int b = 8; b <= 15; ++b)
    if (*v == std::to_string(b)) return static_cast<std::uint8_t>(b);
  return std::nullopt;
}

// The documented rules for one permessage-deflate element (RFC 7692 §7.1).
struct offer {
  bool snct = false, cnct = false;
  std::optional<std::uint8_t> sbits;
  bool cbits_present = false;
  std::optional<std::uint8_t> cbits;
};
std::optional<offer> model_params(const ws6455::extension& e) {
  offer o;
  bool seen_s = false;
  for (const auto& p : e.params) {
    if (ieq(p.name, "server_no_context_takeover")) {
      if (o.snct || p.value) return std::nullopt;
      o.snct = true;
    } else if (ieq(p.name, "client_no_context_takeover")) {
      if (o.cnct || p.value) return std::nullopt;
      o.cnct = true;
    } else if (ieq(p.name, "server_max_window_bits")) {
      if (seen_s) return std::nullopt;
      seen_s = true;
      o.sbits = bits(p.value);
      if (!o.sbits) return std::nullopt;
    } else if (ieq(p.name, "client_max_window_bits")) {
      if (o.cbits_present) return std::nullopt;
      o.cbits_present = true;
      if (p.value) {
        o.cbits = bits(p.value);
        if (!o.cbits) return std::nullopt;
      }
    } else {
      return std::nullopt;
    }
  }
  return o;
}

std::uint8_t clamp_bits(std::uint8_t b) { return std::clamp<std::uint8_t>(b, 8, 15); }

bool same_params(const ws6455::deflate_params& a, const ws6455::deflate_params& b) {
  return a.server_no_context_takeover == b.server_no_context_takeover &&
         a.client_no_context_takeover == b.client_no_context_takeover &&
         a.server_max_window_bits == b.server_max_window_bits && a.client_max_window_bits == b.client_max_window_bits &&
         a.mem_level == b.mem_level && a.compress_threshold == b.compress_threshold;
}

bool in_range(std::uint8_t b) { return b >= 8 && b <= 15; }

// Window values 0..17 so that clamping is exercised too.
std::uint8_t window_option(std::uint8_t nibble) { return static_cast<std::uint8_t>(nibble + 2); }

pmd::server_options server_opts(std::uint8_t c) {
  pmd::server_options o;
  o.enable = (c & 0x80) == 0 || (c & 0x40) == 0;  // disabled 1 in 4
  o.server_no_context_takeover = c & 1;
  o.client_no_context_takeover = c & 2;
  o.require_client_max_window_bits = c & 4;
  o.server_max_window_bits = static_cast<std::uint8_t>(7 + ((c >> 3) & 7) + (c & 0x40 ? 2 : 0));  // 7..16
  o.client_max_window_bits = static_cast<std::uint8_t>(8 + ((c >> 4) & 7) + (c & 1));             // 8..16
  o.mem_level = static_cast<std::uint8_t>(c % 11);                                                  // 0..10
  o.compress_threshold = c;
  return o;
}

pmd::client_options client_opts(std::uint8_t c, std::uint8_t d) {
  pmd::client_options o;
  o.enable = (d & 0x80) == 0 || (d & 0x40) == 0;
  o.server_no_context_takeover = c & 1;
  o.client_no_context_takeover = c & 2;
  o.offer_client_max_window_bits = (c & 4) == 0;
  o.client_max_window_bits = window_option(static_cast<std::uint8_t>((c >> 3) & 15));
  o.server_max_window_bits = window_option(static_cast<std::uint8_t>(d & 15));
  o.mem_level = static_cast<std::uint8_t>(d % 11);
  o.compress_threshold = d;
  return o;
}

// The checks every accepted response must pass on the client side (the header's
// description of validate_response).
void check_validated(const ws6455::deflate_params& d, const pmd::client_options& co, const char* ctx) {
  (void)ctx;
  require(in_range(d.server_max_window_bits) && in_range(d.client_max_window_bits), "validated window outside 8..15");
  if (co.server_no_context_takeover) require(d.server_no_context_takeover, "requested server_no_context_takeover lost");
  if (co.client_no_context_takeover) require(d.client_no_context_takeover, "declared client_no_context_takeover lost");
  if (clamp_bits(co.server_max_window_bits) < 15)
    require(d.server_max_window_bits <= clamp_bits(co.server_max_window_bits), "server window above the request");
  require(d.client_max_window_bits <= clamp_bits(co.client_max_window_bits), "client window above our own");
  require(d.mem_level >= 1 && d.mem_level <= 9, "mem_level outside 1..9");
  require(d.compress_threshold == co.compress_threshold, "compress_threshold not taken from the options");
}

// A client that offers exactly `o` (as make_offer would, modulo parameter order).
pmd::client_options client_for(const offer& o) {
  pmd::client_options co;
  co.server_no_context_takeover = o.snct;
  co.client_no_context_takeover = o.cnct;
  co.server_max_window_bits = o.sbits.value_or(15);
  co.offer_client_max_window_bits = o.cbits_present;
  co.client_max_window_bits = o.cbits.value_or(15);
  return co;
}

void check_agreement(const pmd::agreement& a, const offer& o, const pmd::server_options& so) {
  const ws6455::deflate_params& d = a.params;
  require(in_range(d.server_max_window_bits) && in_range(d.client_max_window_bits), "agreed window outside 8..15");
  require(d.mem_level >= 1 && d.mem_level <= 9, "agreed mem_level outside 1..9");
  require(d.compress_threshold == so.compress_threshold, "compress_threshold not taken from the options");
  // §7.1.1.1: a requested server_no_context_takeover must be accepted; forced by opts.
  require(d.server_no_context_takeover == (o.snct || so.server_no_context_takeover), "server_no_context_takeover");
  require(d.client_no_context_takeover == (o.cnct || so.client_no_context_takeover), "client_no_context_takeover");
  // §7.1.2.1: the same or a smaller value than requested, never above our own.
  require(d.server_max_window_bits <= clamp_bits(so.server_max_window_bits), "server window above our own");
  if (o.sbits) require(d.server_max_window_bits <= *o.sbits, "server window above the request");
  // §7.1.2.2: limit the client only when the offer has the parameter.
  if (!o.cbits_present) {
    require(d.client_max_window_bits == 15, "client limited without client_max_window_bits in the offer");
  } else {
    require(d.client_max_window_bits <= clamp_bits(so.client_max_window_bits), "client window above our limit");
    if (o.cbits) require(d.client_max_window_bits <= *o.cbits, "client window above its own offer");
  }
  require(!so.require_client_max_window_bits || o.cbits_present, "require_client_max_window_bits ignored");

  // The response is exactly one permessage-deflate.
  const auto r = ws6455::parse_extensions(a.response);
  require(r.has_value(), "agreement response does not parse");
  require(r->size() == 1 && ieq((*r)[0].name, pmd::name), "agreement response is not one permessage-deflate");
  require(model_params((*r)[0]).has_value(), "agreement response has bad parameters");

  // A plain client (windows 15, no flags requested, client_max_window_bits offered).
  pmd::client_options plain;
  plain.client_max_window_bits = 15;
  plain.server_max_window_bits = 15;
  {
    const auto vp = pmd::validate_response(a.response, plain);
    require(vp.has_value() && vp->has_value(), "a plain client refuses the agreement's response");
    const ws6455::deflate_params* v = &**vp;
    check_validated(*v, plain, "plain");
    require(v->server_max_window_bits == d.server_max_window_bits, "client and server disagree on the server window");
    require(v->client_max_window_bits <= d.client_max_window_bits, "client window above the agreed one");
    require(v->server_no_context_takeover == d.server_no_context_takeover, "disagree on server_no_context_takeover");
    require(v->client_no_context_takeover == d.client_no_context_takeover, "disagree on client_no_context_takeover");
  }
  // The client that made exactly the accepted offer agrees on every parameter.
  pmd::client_options same = client_for(o);
  same.mem_level = so.mem_level;
  same.compress_threshold = so.compress_threshold;
  const auto vs = pmd::validate_response(a.response, same);
  require(vs.has_value() && vs->has_value(), "the offering client refuses the agreement's response");
  const ws6455::deflate_params* v = &**vs;
  check_validated(*v, same, "offerer");
  require(v->server_max_window_bits == d.server_max_window_bits, "offerer: server window differs");
  require(v->client_max_window_bits == std::min(d.client_max_window_bits, clamp_bits(same.client_max_window_bits)),
          "offerer: client window differs");
  require(v->server_no_context_takeover == d.server_no_context_takeover, "offerer: server_no_context_takeover differs");
  require(v->client_no_context_takeover == d.client_no_context_takeover, "offerer: client_no_context_takeover differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3 || size > 4096) return 0;
  const pmd::server_options so = server_opts(data[0]);
  const pmd::client_options co = client_opts(data[1], data[2]);
  const std::string_view value(reinterpret_cast<const char*>(data + 3), size - 3);

  // parse_extensions: deterministic, tokens, serialise/re-parse round trip.
  const auto list = ws6455::parse_extensions(value);
  const auto list2 = ws6455::parse_extensions(value);
  require(list.has_value() == list2.has_value(), "parse_extensions is not deterministic");
  if (list) {
    require(same_list(*list, *list2), "parse_extensions is not deterministic (list)");
    require(!list->empty(), "parse_extensions accepted an empty list");
    for (const auto& e : *list) {
      require(is_token(e.name), "extension name is not a token");
      for (const auto& p : e.params) require(is_token(p.name), "parameter name is not a token");
    }
    const std::string again = serialise(*list);
    const auto re = ws6455::parse_extensions(again);
    require(re.has_value(), "serialised list does not parse");
    require(same_list(*list, *re), "serialised list parses differently");
  } else {
    require(list.error() == list2.error(), "parse_extensions is not deterministic (error)");
    require(!list.error().empty(), "parse_extensions failed without a reason");
  }

  // negotiate vs the model.
  const auto a = pmd::negotiate(value, so);
  const auto a2 = pmd::negotiate(value, so);
  require(a.has_value() == a2.has_value(), "negotiate is not deterministic");
  if (a) require(a->response == a2->response && same_params(a->params, a2->params), "negotiate is not deterministic");
  std::optional<offer> taken;
  if (so.enable && list) {
    for (const auto& e : *list) {
      if (!ieq(e.name, pmd::name)) continue;
      auto o = model_params(e);
      if (!o) continue;
      if (so.require_client_max_window_bits && !o->cbits_present) continue;
      taken = o;
      break;
    }
  }
  require(a.has_value() == taken.has_value(), "negotiate disagrees with the documented rules");
  if (a) check_agreement(*a, *taken, so);

  // validate_response on the value as a response.
  const auto vr = pmd::validate_response(value, co);
  const bool blank = value.find_first_not_of(" \t") == std::string_view::npos;
  if (vr && !vr->has_value()) {
    require(blank, "validate_response gave 'no deflate' for a non-empty response");
  } else if (vr) {
    const ws6455::deflate_params* v = &**vr;
    require(!blank, "validate_response accepted an absent header as deflate");
    require(co.enable, "validate_response accepted without an offer");
    require(list && list->size() == 1 && ieq((*list)[0].name, pmd::name),
            "validate_response accepted something other than exactly one permessage-deflate");
    const auto p = model_params((*list)[0]);
    require(p.has_value(), "validate_response accepted bad parameters");
    require(!p->cbits_present || (co.offer_client_max_window_bits && p->cbits),
            "validate_response accepted client_max_window_bits it should not");
    check_validated(*v, co, "fuzz response");
    require(v->server_no_context_takeover == p->snct, "server_no_context_takeover not as in the response");
    require(v->server_max_window_bits == p->sbits.value_or(15), "server window not as in the response");
  } else {
    require(!blank, "validate_response refused an absent header (it means no deflate)");
    require(!vr.error().empty(), "validate_response failed without a reason");
  }

  // make_offer → negotiate (defaults) → validate_response.
  const std::string off = pmd::make_offer(co);
  if (!co.enable) {
    require(off.empty(), "make_offer with enable=false");
  } else {
    const auto ol = ws6455::parse_extensions(off);
    require(ol.has_value() && ol->size() == 1 && ieq((*ol)[0].name, pmd::name), "make_offer output does not parse");
    const auto ag = pmd::negotiate(off);
    require(ag.has_value(), "default server declines make_offer's offer");
    const auto okr = pmd::validate_response(ag->response, co);
    require(okr.has_value() && okr->has_value(), "client refuses the default server's answer to its own offer");
    const ws6455::deflate_params* ok = &**okr;
    check_validated(*ok, co, "own offer");
    require(ok->server_max_window_bits == ag->params.server_max_window_bits, "own offer: server window differs");
    require(ok->client_max_window_bits <= ag->params.client_max_window_bits, "own offer: client window above agreed");
    require(ok->server_no_context_takeover == ag->params.server_no_context_takeover, "own offer: snct differs");
    require(ok->client_no_context_takeover == ag->params.client_no_context_takeover, "own offer: cnct differs");
  }
  return 0;
}
