// hiredis' asynchronous API driven by a ws6455 loop: the context's socket is
// watched by the loop (io::endpoint::watch), the way hiredis' own libevent and
// libuv adapters drive it, so Redis replies are handled on the loop's thread
// between WebSocket events, with no thread of its own.
#pragma once

#include <hiredis/async.h>

#include "ws6455/io/common.hpp"

namespace ws6455::tools {

// Attaches `ac` (just made by redisAsyncConnect) to `loop` of `ep`. From that loop's
// thread, or while it is not running. Returns REDIS_OK or REDIS_ERR. hiredis
// detaches it itself when the context is freed (its cleanup hook).
int attach_hiredis(redisAsyncContext* ac, io::endpoint& ep, unsigned loop);

}  // namespace ws6455::tools
