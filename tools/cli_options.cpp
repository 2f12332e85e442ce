#include "cli_options.hpp"

#include <charconv>

#include "ws6455/permessage_deflate.hpp"

namespace ws6455::tools {

std::optional<std::string_view> option_value(int argc, char** argv, int& i, std::string_view name) {
  const std::string_view arg = argv[i];
  if (arg.substr(0, name.size()) != name) return std::nullopt;
  if (arg.size() > name.size() && arg[name.size()] == '=') return arg.substr(name.size() + 1);
  if (arg.size() == name.size() && i + 1 < argc) return std::string_view(argv[++i]);
  return std::nullopt;
}

std::optional<std::size_t> parse_size(std::string_view s) {
  std::size_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<role> parse_role(std::string_view s) {
  if (s == "server") return role::server;
  if (s == "client") return role::client;
  return std::nullopt;
}

expected<deflate_params, std::string> parse_deflate_option(std::string_view params) {
  // PARAMS is a server's answer without the extension name: check it the way a client
  // that offered every parameter would, so that the same rules apply as on the wire.
  std::string header(permessage_deflate::name);
  if (!params.empty()) {
    header += "; ";
    header += params;
  }
  permessage_deflate::client_options offer;
  offer.client_max_window_bits = 15;
  offer.compress_threshold = 0;  // the tools compress every message
  offer.mem_level = 8;
  auto agreed = permessage_deflate::validate_response(header, offer);
  if (!agreed) return unexpected<std::string>{agreed.error()};
  return **agreed;  // never nullopt: the header names the extension
}

std::vector<std::string> split_commas(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const std::size_t comma = s.find(',');
    if (comma) out.emplace_back(s.substr(0, comma));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace ws6455::tools
