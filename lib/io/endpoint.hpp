// What a server or a client owns: its loops (one per thread).
#pragma once

#include <memory>
#include <vector>

#include "io/loop.hpp"
#include "ws6455/io/common.hpp"

namespace ws6455::io {

struct endpoint::impl {
  std::vector<std::unique_ptr<detail::loop>> loops;
  io::backend wanted = io::backend::automatic;

  detail::loop* loop_for(conn_id id) const noexcept {
    const unsigned i = loop_of(id);
    return i < loops.size() ? loops[i].get() : nullptr;
  }
};

}  // namespace ws6455::io
