// The HTML page `ws6455 serve` answers at GET /: an echo client, or a chat client
// for the JSON protocol of docs/chat.md.
#pragma once

#include <string>
#include <string_view>

#include "ws6455/io/server.hpp"

namespace ws6455::tools {

// The whole page (self-contained: inline style and script, no libraries). It connects
// back to the host it was loaded from, over wss:// when it came over https://.
std::string make_page(bool chat);

// GET / (or HEAD): `page`, true. Other paths: false, and `reply` is a 404.
bool answer_page(const http_request& req, io::http_reply& reply, std::string_view page);

}  // namespace ws6455::tools
