// Just enough JSON for the CLI: writing event lines, and reading the flat objects
// `ws6455 encode` takes ({"type":"text","data":"…"}).
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ws6455::tools {

// Appends `s` as a JSON string literal (quotes included). Bytes ≥ 0x80 pass through:
// the core has already checked text is UTF-8; other bytes are escaped as \u00XX.
void append_json_string(std::string& out, std::string_view s);
void append_hex(std::string& out, std::span<const std::byte> bytes);
std::optional<std::string> from_hex(std::string_view hex);

// A flat JSON object: string, number, true/false values only. Returns nothing on bad input.
using flat_object = std::map<std::string, std::string, std::less<>>;
std::optional<flat_object> parse_flat_object(std::string_view line);

}  // namespace ws6455::tools
