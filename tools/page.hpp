// The HTML page `ws6455 serve` answers at GET /: an echo client, or a chat client
// for the JSON protocol of docs/chat.md.
#pragma once

#include <string>

namespace ws6455::tools {

// The whole page (self-contained: inline style and script, no libraries). It connects
// back to the host it was loaded from, over wss:// when it came over https://.
std::string make_page(bool chat);

}  // namespace ws6455::tools
