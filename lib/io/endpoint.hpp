// What a server or a client owns: its loops (one per thread).
#pragma once

#include <memory>
#include <vector>

#include "io/loop.hpp"
#include "ws6455/io/common.hpp"

namespace ws6455::io {

namespace detail {
// What server_options and client_options have in common, into a loop's options.
template <class Options>
void copy_common(const Options& o, loop_options& l) {
  l.ws = o.ws;
  l.deflate = o.deflate;
  l.handshake_timeout = o.handshake_timeout.count();
  l.idle_timeout = o.idle_timeout.count();
  l.ping_interval = o.ping_interval.count();
  l.close_timeout = o.close_timeout.count();
  l.read_buffer_size = o.read_buffer_size;
  l.high_water = o.high_water;
  l.low_water = o.low_water;
}
}  // namespace detail

struct endpoint::impl {
  std::vector<std::unique_ptr<detail::loop>> loops;
  io::backend wanted = io::backend::automatic;

  detail::loop* loop_at(unsigned i) const noexcept { return i < loops.size() ? loops[i].get() : nullptr; }
  // Connection, watch and timer ids carry their loop's index in the top byte.
  detail::loop* loop_for(std::uint64_t id) const noexcept { return loop_at(loop_of(id)); }
};

}  // namespace ws6455::io
