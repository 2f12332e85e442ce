// Everything ws6455 offers, in one include.
#pragma once

#include "ws6455/client_session.hpp"
#include "ws6455/close_code.hpp"
#include "ws6455/config.hpp"
#include "ws6455/connection.hpp"
#include "ws6455/error.hpp"
#include "ws6455/event.hpp"
#include "ws6455/frame_header.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/http_head.hpp"
#include "ws6455/permessage_deflate.hpp"
#include "ws6455/server_session.hpp"
#include "ws6455/session.hpp"
#include "ws6455/url.hpp"
