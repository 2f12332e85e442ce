// Option parsing shared by the CLI's commands.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ws6455/config.hpp"
#include "ws6455/expected.hpp"

namespace ws6455::tools {

// "--name=value" or "--name value": returns the value, advancing i past it.
std::optional<std::string_view> option_value(int argc, char** argv, int& i, std::string_view name);
std::optional<std::size_t> parse_size(std::string_view s);
// "a,b,,c" -> {"a", "b", "c"}: a comma-separated list, empty items dropped.
std::vector<std::string> split_commas(std::string_view s);
std::optional<role> parse_role(std::string_view s);
// The parameters of a permessage-deflate response, as if negotiated, e.g.
// "server_no_context_takeover; client_max_window_bits=10" ("" = the defaults).
expected<deflate_params, std::string> parse_deflate_option(std::string_view params);

}  // namespace ws6455::tools
