// Built without liburing: io_uring is never available, and says why.
#include "io/loop.hpp"

namespace ws6455::io::detail {

expected<std::unique_ptr<backend_base>, std::string> make_uring_backend(loop&) {
  return unexpected<std::string>{"built without liburing"};
}

std::string probe_uring() { return "built without liburing"; }

}  // namespace ws6455::io::detail
