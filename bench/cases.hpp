// Receive cases, shared by Google Benchmark and the callgrind mode (--ipf).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace bench {

struct recv_case {
  virtual ~recv_case() = default;
  // Untimed: bring the input back to its received (masked) form.
  virtual void restore() = 0;
  // Timed: parse the whole buffer, consuming every event; returns whole frames seen.
  virtual std::size_t pass() = 0;
  // Whether passes may run back to back in one timed batch, with only rearm() (cheap,
  // timed) between them instead of restore(). Short passes are timed in batches so
  // that the clock stays under 1% of a measurement.
  virtual bool batchable() { return false; }
  virtual void rearm() {}
  std::size_t frames = 0;         // per pass, expected
  std::size_t payload_bytes = 0;  // per pass
  std::size_t wire_bytes = 0;     // per pass
};

using recv_factory = std::function<std::unique_ptr<recv_case>()>;
// name: "<impl>/<payload kind>/<mode>/<size>", e.g. "ws6455/binary/whole/1K", "wslay/binary/frame/16".
std::map<std::string, recv_factory>& recv_cases();

void register_wslay_cases();  // bench_wslay.cpp (when libwslay is found)
void register_beast_cases();  // bench_beast.cpp (when Boost.Beast is found)

}  // namespace bench
