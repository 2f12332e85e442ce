// ws6455 load: an echo load generator on the client adapter (lib/io).
//
// C connections (split over --threads loops, one io::client per thread) each keep
// P messages in flight against an echo server. Every message is a function of
// (connection, sequence number): its size comes from the size list, its bytes from
// a fixed random pattern at an offset hashed from both, and messages of 8 bytes or
// more start with the sequence number itself. So every echoed byte is checked
// without keeping a copy: a changed, lost, duplicated or reordered message
// mismatches. Send timestamps live in a ring of P per connection; each round trip
// goes into a log-linear histogram (histogram.hpp), one per thread, merged at the
// end. Nothing is allocated per message: a send points into the pattern (the
// adapter copies it into the frame layer's output).
//
// Phases: connecting (at --connect-rate; no messages yet, so the connects meet an
// idle server), then once every connection has opened or failed, messages start:
// --warmup seconds, then the measurement (-t seconds or -n messages), then every
// connection is closed (1000) and waited for (bounded).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli_options.hpp"
#include "histogram.hpp"
#include "ws6455/handshake.hpp"
#include "ws6455/io/client.hpp"
#include "ws6455/url.hpp"

namespace ws6455::tools {
namespace {

constexpr const char* load_usage =
    "usage: ws6455 load ws[s]://HOST[:PORT]/PATH [-c connections] [-p in-flight] [-s bytes | --sizes a,b,c]\n"
    "                   [--text|--binary] [-t seconds | -n messages] [--warmup S] [--deflate]\n"
    "                   [--backend auto|epoll|io_uring] [--threads N] [--connect-rate R] [--json]\n"
    "                   [--ca FILE] [--insecure]\n"
    "  An echo load generator: C connections (default 16) each keep P messages (default 1) in\n"
    "  flight; every echoed byte is checked, every round trip timed.\n"
    "  -s: message size in bytes (default 16); --sizes: a list, used in turn per connection.\n"
    "  --binary (default) or --text (ASCII). -t: seconds measured (default 10); -n: stop after\n"
    "  N messages in total. --warmup: seconds not measured once every connection is up (0).\n"
    "  --deflate: offer permessage-deflate. --threads: loops (one per thread; default 1).\n"
    "  wss://: the server's certificate is checked against the system CAs (or --ca FILE, PEM);\n"
    "  --insecure skips the check (tests only).\n"
    "  --connect-rate: new connections per second (default 2000); messages start once every\n"
    "  connection has opened or failed.\n"
    "  Errors: a changed, missing or unexpected echo, a close by the server, no echo within\n"
    "  10 s (the connection is then closed). Connections that never open are counted apart.\n"
    "  Output, one line: msgs_per_s MiB_per_s (echoed payload, one way) p50_us p99_us p999_us\n"
    "  max_us errors connections (opened) connect_failures cpu_us_per_msg (this process'\n"
    "  user+system CPU per message) msgs seconds; --json: the same as one JSON object.\n"
    "  Progress once a second on stderr when it is a terminal.\n"
    "  Exit 0 for a clean run, 1 when there were errors or connect failures (the line is\n"
    "  still printed) or nothing could connect (one line on stderr), 2 on bad usage.\n";

constexpr std::int64_t ms = 1'000'000;  // in ns
constexpr std::int64_t echo_timeout_ns = 10'000 * ms;
constexpr std::int64_t tick_ns = 10 * ms;
constexpr std::size_t pattern_period = 65521;  // offsets into the pattern: prime, > any L1
constexpr std::size_t header_size = 8;         // the sequence number, in messages of 8+ bytes
constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static_assert(sizeof alphabet == 65);

std::int64_t now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

enum phase : int { ramp, warmup, measure, drain };

struct settings {
  std::string url;
  std::uint32_t connections = 16;
  std::uint32_t in_flight = 1;
  std::vector<std::uint32_t> sizes{16};
  std::uint32_t max_size = 16;
  bool text = false;
  double seconds = 10;
  std::uint64_t messages = 0;  // -n; 0: -t
  double warmup = 0;
  bool deflate = false;
  io::backend backend = io::backend::automatic;
  unsigned threads = 1;
  double connect_rate = 2000;
  bool json = false;
  std::string ca_file;  // wss://
  bool insecure = false;
};

// What the coordinator and the workers share.
struct shared_state {
  explicit shared_state(const settings& s) : opt(s) {}
  const settings& opt;
  std::atomic<int> ph{ramp};
  std::atomic<bool> abort{false};               // nothing could connect: stop, exit 1
  std::atomic<std::uint64_t> opened_total{0};  // over all workers
  std::int64_t start_ns = 0;
};

// Counters one worker writes and the coordinator reads while it runs.
struct alignas(64) live_counters {
  std::atomic<std::uint64_t> received{0};  // echoes, every phase (progress)
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> opened{0};
  std::atomic<std::uint64_t> connect_failed{0};
  std::atomic<std::uint64_t> cut_short{0};  // still connecting when the run stopped
  std::atomic<std::uint64_t> closed{0};     // opened, then gone
  std::atomic<bool> done{false};         // -n: this worker's share is measured
  std::atomic<std::int64_t> done_ns{0};
};

// One writer: a plain load and store, no locked instruction.
inline void bump(std::atomic<std::uint64_t>& a) noexcept {
  a.store(a.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

struct conn_state {
  io::conn_id id = 0;
  std::uint32_t index = 0;  // over all workers: the pattern's key
  enum : std::uint8_t { pending, open, gone } st = pending;
  bool failed = false;      // an error already counted for it (close, timeout)
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::int64_t* ring = nullptr;  // send times of the messages in flight, by seq % P
};

class worker final : public io::client_handler {
 public:
  worker(shared_state& sh, std::uint32_t first, std::uint32_t count, std::uint64_t budget,
         const std::vector<char>& pattern)
      : sh_(sh), opt_(sh.opt), count_(count), budget_(budget), p_(opt_.in_flight), pattern_(pattern),
        conns_(count), ring_(static_cast<std::size_t>(count) * opt_.in_flight),
        hist_(std::make_unique<histogram>()) {
    for (std::uint32_t i = 0; i < count; ++i) {
      conns_[i].index = first + i;
      conns_[i].ring = ring_.data() + static_cast<std::size_t>(i) * p_;
    }
    rate_ = opt_.connect_rate * count / opt_.connections;
    if (opt_.messages != 0 && budget_ == 0) {
      live.done = true;  // -n smaller than the threads: nothing for this one to measure
      done_ = true;
    }
  }

  live_counters live;
  std::atomic<bool> ready{false};
  io::client* client() noexcept { return client_.get(); }

  // The worker thread: its own client (io_uring rings belong to their thread).
  void thread_main() {
    io::client_options o;
    o.backend = opt_.backend;
    o.deflate = opt_.deflate;
    o.ca_file = opt_.ca_file;
    o.insecure = opt_.insecure;
    const std::size_t big = std::max<std::size_t>(opt_.max_size, 64u << 20);
    o.ws.max_message_size = big;
    o.ws.max_frame_size = big;
    o.ws.retain_storage = true;  // no allocation per message (the adapter releases when idle)
    // Our own output never holds more than P messages: never let it pause reading
    // (the server's echoes would back up into it).
    const std::size_t window = static_cast<std::size_t>(p_) * (opt_.max_size + 16);
    o.high_water = std::max<std::size_t>(o.high_water, 2 * window + (64u << 10));
    o.low_water = o.high_water / 4;
    o.ws.write_buffer_size = std::min<std::size_t>(config::max_output_limit, std::max(o.ws.write_buffer_size, window));
    o.ws.max_write_buffer_size = std::min<std::size_t>(config::max_output_limit, std::max(o.ws.max_write_buffer_size, 4 * window));
    o.exit_when_idle = false;
    o.close_timeout = std::chrono::milliseconds(3000);
    o.connect_timeout = std::chrono::milliseconds(10'000);
    o.handshake_timeout = std::chrono::milliseconds(10'000);
    client_ = std::make_unique<io::client>(o, *this);
    connect_one();  // starts the backend
    started_ = !sh_.abort.load();
    ready.store(true, std::memory_order_release);
    if (!started_) return;
    if (client_->run() != 0) {
      note_connect_error("the event loop failed");
      sh_.abort = true;
    }
  }

  // Every 10 ms, from the coordinator: paced connects, echo timeouts.
  void tick() {
    const int ph = sh_.ph.load(std::memory_order_relaxed);
    if (ph == drain || sh_.abort.load(std::memory_order_relaxed)) return;
    const std::int64_t now = now_ns();
    if (next_ < count_) {
      const double elapsed = static_cast<double>(now - sh_.start_ns) / 1e9;
      const auto allowed = std::min<std::uint64_t>(count_, static_cast<std::uint64_t>(elapsed * rate_) + 1);
      while (next_ < allowed && !sh_.abort.load(std::memory_order_relaxed)) connect_one();
    }
    if (now >= next_scan_) {
      next_scan_ = now + 100 * ms;
      for (conn_state& cs : conns_) {
        if (cs.st != conn_state::open || cs.failed || cs.sent == cs.received) continue;
        if (now - cs.ring[cs.received % p_] < echo_timeout_ns) continue;
        error(cs, "no echo within 10 s");
        cs.failed = true;
        (void)client_->close(cs.id, 1000, "echo timed out");
      }
    }
  }

  // After the thread ended.
  const histogram& hist() const noexcept { return *hist_; }
  std::uint64_t measured() const noexcept { return measured_; }
  std::uint64_t measured_bytes() const noexcept { return bytes_; }
  const std::string& first_error() const noexcept { return first_error_; }
  const std::string& first_connect_error() const noexcept { return first_connect_error_; }
  bool started() const noexcept { return started_; }
  std::uint32_t count() const noexcept { return count_; }

  // -n: no more to do (the share is measured, or every connection is gone).
  bool finished() const noexcept {
    if (live.done.load(std::memory_order_relaxed)) return true;
    const auto settled = live.opened.load(std::memory_order_relaxed) + live.connect_failed.load(std::memory_order_relaxed);
    return settled == count_ && live.closed.load(std::memory_order_relaxed) == live.opened.load(std::memory_order_relaxed);
  }

  // --------------------------------------------------------------- callbacks
  void on_open(io::conn_id id, const http_response&) override {
    conn_state* cs = find(id);
    if (!cs) return;
    cs->st = conn_state::open;
    bump(live.opened);
    sh_.opened_total.fetch_add(1, std::memory_order_relaxed);
  }

  // Once every connection opened or failed (posted by the coordinator): P messages
  // on each. Sending waits for that so that the connects meet an idle server.
  void start_sending() {
    if (!may_send()) return;
    const std::int64_t now = now_ns();
    for (conn_state& cs : conns_)
      for (std::uint32_t k = 0; k < p_ && cs.st == conn_state::open; ++k) send_next(cs, now);
  }

  void on_message(io::conn_id id, const event& ev) override {
    conn_state* cs = find(id);
    if (!cs || cs->st != conn_state::open) return;
    const std::int64_t now = now_ns();
    bump(live.received);
    if (cs->received == cs->sent) {
      error(*cs, "a message that was not sent");
      return;
    }
    const std::uint64_t seq = cs->received++;
    const std::uint32_t size = size_of(cs->index, seq);
    if (!verify(*cs, seq, size, ev)) {
      // counted; the connection goes on (the next echo is checked on its own)
    } else if (!done_ && sh_.ph.load(std::memory_order_relaxed) == measure) {
      hist_->record(static_cast<std::uint64_t>(now - cs->ring[seq % p_]));
      bytes_ += size;
      if (++measured_ >= budget_ && budget_ != 0) {
        done_ = true;
        live.done_ns.store(now, std::memory_order_relaxed);
        live.done.store(true, std::memory_order_release);
      }
    }
    if (may_send()) send_next(*cs, now);
  }

  void on_event(io::conn_id id, const event& ev) override {
    if (ev.type != event_type::close && ev.type != event_type::fail) return;
    conn_state* cs = find(id);
    if (!cs || cs->failed || sh_.ph.load(std::memory_order_relaxed) == drain) return;
    cs->failed = true;
    char what[200];
    std::snprintf(what, sizeof what, "%s (%u%s%.*s)",
                  ev.type == event_type::close ? "the server closed the connection" : "we failed the connection",
                  ev.code, ev.reason.empty() ? "" : " ", static_cast<int>(std::min<std::size_t>(ev.reason.size(), 120)),
                  ev.reason.data());
    error(*cs, what);
  }

  void on_close(io::conn_id id, std::uint16_t code, std::string_view reason) override {
    conn_state* cs = find(id);
    if (!cs) return;
    const bool draining = sh_.ph.load(std::memory_order_relaxed) == drain || sh_.abort.load(std::memory_order_relaxed);
    if (cs->st == conn_state::pending) {
      if (!draining) {
        note_connect_error(std::string(reason.empty() ? "closed before it opened" : reason));
        bump(live.connect_failed);
        // Nothing has ever connected: the server is down or refuses us. Stop.
        if (sh_.opened_total.load(std::memory_order_relaxed) == 0) sh_.abort = true;
      } else {
        bump(live.cut_short);  // the stop came first: not a failure
      }
    } else if (cs->st == conn_state::open) {
      if (!draining && !cs->failed) {
        char what[200];
        std::snprintf(what, sizeof what, "the connection closed (%u%s%.*s)", code, reason.empty() ? "" : " ",
                      static_cast<int>(std::min<std::size_t>(reason.size(), 120)), reason.data());
        error(*cs, what);
        cs->failed = true;
      }
      bump(live.closed);
    }
    cs->st = conn_state::gone;
  }

 private:
  conn_state* find(io::conn_id id) noexcept {
    auto* cs = static_cast<conn_state*>(client_->user_data(id));
    return cs ? cs : connecting_;  // a connect that failed inside connect()
  }

  bool may_send() const noexcept {
    const int ph = sh_.ph.load(std::memory_order_relaxed);
    return !done_ && ph != ramp && ph != drain;
  }

  void connect_one() {
    conn_state& cs = conns_[next_++];
    connecting_ = &cs;
    static const ws6455::client_options no_options;
    auto id = client_->connect(opt_.url, no_options);
    connecting_ = nullptr;
    if (!id) {
      note_connect_error(id.error());
      cs.st = conn_state::gone;
      bump(live.connect_failed);
      if (sh_.opened_total.load(std::memory_order_relaxed) == 0) sh_.abort = true;
      return;
    }
    cs.id = *id;
    if (cs.st == conn_state::pending) client_->set_user_data(*id, &cs);
  }

  std::uint32_t size_of(std::uint32_t conn, std::uint64_t seq) const noexcept {
    const auto& s = opt_.sizes;
    return s.size() == 1 ? s[0] : s[(conn + seq) % s.size()];
  }
  static std::size_t offset_of(std::uint32_t conn, std::uint64_t seq) noexcept {
    const std::uint64_t h = mix((std::uint64_t{conn} << 40) ^ seq);
    return static_cast<std::size_t>(((h >> 32) * pattern_period) >> 32);
  }
  void header_of(std::uint64_t seq, char* out) const noexcept {
    for (std::size_t i = 0; i < header_size; ++i) {
      out[i] = opt_.text ? alphabet[(seq >> (6 * i)) & 63] : static_cast<char>((seq >> (8 * i)) & 0xff);
    }
  }

  void send_next(conn_state& cs, std::int64_t now) {
    const std::uint64_t seq = cs.sent++;
    const std::uint32_t size = size_of(cs.index, seq);
    char* data = pattern_.data() + offset_of(cs.index, seq);
    cs.ring[seq % p_] = now;
    // The header goes into the pattern for the time of the call (the adapter copies
    // the payload), so the message is one span and nothing is copied here.
    char saved[header_size];
    if (size >= header_size) {
      std::memcpy(saved, data, header_size);
      header_of(seq, data);
    }
    const send_result r = opt_.text ? client_->send_text(cs.id, std::string_view(data, size), /*trusted_utf8=*/true)
                                    : client_->send_binary(cs.id, {reinterpret_cast<const std::byte*>(data), size});
    if (size >= header_size) std::memcpy(data, saved, header_size);
    if (r != send_result::ok && !cs.failed) {
      cs.failed = true;
      error(cs, std::string("a send was refused: ") + std::string(describe(r)));
    }
  }

  bool verify(conn_state& cs, std::uint64_t seq, std::uint32_t size, const event& ev) {
    const bool type_ok = ev.type == (opt_.text ? event_type::text : event_type::binary);
    const char* got = reinterpret_cast<const char*>(ev.data.data());
    const char* want = pattern_.data() + offset_of(cs.index, seq);
    bool ok = type_ok && ev.data.size() == size;
    if (ok) {
      if (size >= header_size) {
        char h[header_size];
        header_of(seq, h);
        ok = std::memcmp(got, h, header_size) == 0 &&
             std::memcmp(got + header_size, want + header_size, size - header_size) == 0;
      } else {
        ok = std::memcmp(got, want, size) == 0;
      }
    }
    if (ok) return true;
    if (first_error_.empty()) {  // the details, once
      char what[200];
      if (!type_ok) {
        std::snprintf(what, sizeof what, "a %s message came back as %s", opt_.text ? "text" : "binary",
                      ev.type == event_type::text ? "text" : "binary");
      } else if (ev.data.size() != size) {
        std::snprintf(what, sizeof what, "%zu bytes came back instead of %u", ev.data.size(), size);
      } else {
        char h[header_size];
        header_of(seq, h);
        std::size_t at = 0;
        while (at < size && got[at] == (at < header_size && size >= header_size ? h[at] : want[at])) ++at;
        std::snprintf(what, sizeof what, "the echo differs at byte %zu of %u", at, size);
      }
      error(cs, what, seq);
    } else {
      bump(live.errors);
    }
    return false;
  }

  void error(const conn_state& cs, const std::string& what, std::uint64_t seq = UINT64_MAX) {
    bump(live.errors);
    if (!first_error_.empty()) return;
    first_error_ = "connection " + std::to_string(cs.index);
    if (seq != UINT64_MAX) first_error_ += ", message " + std::to_string(seq);
    first_error_ += ": " + what;
  }

  void note_connect_error(std::string why) {
    if (first_connect_error_.empty()) first_connect_error_ = std::move(why);
  }

  shared_state& sh_;
  const settings& opt_;
  std::uint32_t count_;
  std::uint64_t budget_;
  std::uint32_t p_;
  std::vector<char> pattern_;  // this thread's copy: send_next writes headers into it
  std::vector<conn_state> conns_;
  std::vector<std::int64_t> ring_;
  std::unique_ptr<histogram> hist_;
  std::unique_ptr<io::client> client_;
  conn_state* connecting_ = nullptr;
  std::uint32_t next_ = 0;  // the next connection to start
  double rate_ = 0;
  std::int64_t next_scan_ = 0;
  bool done_ = false;
  bool started_ = false;
  std::uint64_t measured_ = 0;
  std::uint64_t bytes_ = 0;
  std::string first_error_;
  std::string first_connect_error_;
};

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_load_interrupt(int) { g_interrupted = 1; }

std::optional<double> parse_number(std::string_view s) {
  if (s.empty() || s.size() > 60) return std::nullopt;
  const std::string t(s);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(t.c_str(), &end);
  if (errno != 0 || end != t.c_str() + t.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  return v;
}

int usage_error(const char* fmt, const char* what = "") {
  std::fputs("ws6455 load: ", stderr);
  std::fprintf(stderr, fmt, what);
  std::fputs("\n", stderr);
  std::fputs(load_usage, stderr);
  return 2;
}

// A random pattern, the period plus the largest message long; ASCII in text mode.
std::vector<char> make_pattern(const settings& s) {
  std::vector<char> p(pattern_period + s.max_size + header_size);
  std::uint64_t x = 0x6c6f6164;  // "load"
  for (std::size_t i = 0; i < p.size(); i += 8) {
    std::uint64_t r = mix(x++);
    for (std::size_t k = 0; k < 8 && i + k < p.size(); ++k, r >>= 8)
      p[i + k] = s.text ? alphabet[r & 63] : static_cast<char>(r & 0xff);
  }
  return p;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace
}  // namespace ws6455::tools

int load_main(int argc, char** argv) {
  using namespace ws6455;
  using namespace ws6455::tools;
  settings s;
  bool have_t = false, have_n = false, have_s = false, have_sizes = false, have_text = false, have_binary = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto count_opt = [&](const char* name, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) -> int {
      auto v = option_value(argc, argv, i, name);
      if (!v) return -1;
      auto n = parse_size(*v);
      if (!n || *n < lo || *n > hi) {
        std::fprintf(stderr, "ws6455 load: %s takes a number from %llu to %llu\n", name,
                     static_cast<unsigned long long>(lo), static_cast<unsigned long long>(hi));
        std::fputs(load_usage, stderr);
        return 2;
      }
      out = *n;
      return 0;
    };
    auto seconds_opt = [&](const char* name, double& out, bool positive) -> int {
      auto v = option_value(argc, argv, i, name);
      if (!v) return -1;
      auto d = parse_number(*v);
      if (!d || (positive && *d <= 0) || *d > 1e6) return usage_error("%s takes a number of seconds", name);
      out = *d;
      return 0;
    };
    std::uint64_t n = 0;
    int r;
    if ((r = count_opt("-c", 1, 1'000'000, n)) >= 0) {
      if (r) return r;
      s.connections = static_cast<std::uint32_t>(n);
    } else if ((r = count_opt("-p", 1, 65536, n)) >= 0) {
      if (r) return r;
      s.in_flight = static_cast<std::uint32_t>(n);
    } else if ((r = count_opt("-s", 0, 1u << 30, n)) >= 0) {
      if (r) return r;
      s.sizes = {static_cast<std::uint32_t>(n)};
      have_s = true;
    } else if (auto v = option_value(argc, argv, i, "--sizes")) {
      s.sizes.clear();
      for (std::string_view rest = *v;;) {
        const auto comma = rest.find(',');
        auto sz = parse_size(rest.substr(0, comma));
        if (!sz || *sz > (1u << 30)) return usage_error("--sizes takes sizes in bytes separated by commas (up to 1 GiB)");
        s.sizes.push_back(static_cast<std::uint32_t>(*sz));
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      if (s.sizes.size() > 1000) return usage_error("--sizes takes at most 1000 sizes");
      have_sizes = true;
    } else if (arg == "--text") {
      s.text = true;
      have_text = true;
    } else if (arg == "--binary") {
      s.text = false;
      have_binary = true;
    } else if ((r = seconds_opt("-t", s.seconds, true)) >= 0) {
      if (r) return r;
      have_t = true;
    } else if ((r = count_opt("-n", 1, UINT64_MAX / 2, n)) >= 0) {
      if (r) return r;
      s.messages = n;
      have_n = true;
    } else if ((r = seconds_opt("--warmup", s.warmup, false)) >= 0) {
      if (r) return r;
    } else if (arg == "--deflate") {
      s.deflate = true;
    } else if (arg == "--insecure") {
      s.insecure = true;
    } else if (auto v = option_value(argc, argv, i, "--ca")) {
      s.ca_file = std::string(*v);
    } else if (auto v = option_value(argc, argv, i, "--backend")) {
      if (*v == "auto") s.backend = io::backend::automatic;
      else if (*v == "epoll") s.backend = io::backend::epoll;
      else if (*v == "io_uring") s.backend = io::backend::io_uring;
      else return usage_error("--backend is auto, epoll or io_uring");
    } else if ((r = count_opt("--threads", 1, 256, n)) >= 0) {
      if (r) return r;
      s.threads = static_cast<unsigned>(n);
    } else if (auto v = option_value(argc, argv, i, "--connect-rate")) {
      auto d = parse_number(*v);
      if (!d || *d < 1) return usage_error("--connect-rate takes connections per second (at least 1)");
      s.connect_rate = *d;
    } else if (arg == "--json") {
      s.json = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(load_usage, stdout);
      return 0;
    } else if (!arg.starts_with("-") && s.url.empty()) {
      s.url = arg;
    } else {
      return usage_error("unknown option or missing value '%s'", argv[i]);
    }
  }
  if (s.url.empty()) return usage_error("a ws:// or wss:// URL is needed");
  if (have_t && have_n) return usage_error("-t and -n exclude each other");
  if (have_s && have_sizes) return usage_error("-s and --sizes exclude each other");
  if (have_text && have_binary) return usage_error("--text and --binary exclude each other");
  auto url = parse_ws_url(s.url);
  if (!url) return usage_error("%s", url.error().c_str());
  s.max_size = *std::max_element(s.sizes.begin(), s.sizes.end());
  s.threads = std::min<unsigned>(s.threads, s.connections);

  // Enough descriptors for the connections (the hard limit is the ceiling).
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < s.connections + 64u) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, s.connections + 64u);
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < s.connections + 64u)
      std::fprintf(stderr, "ws6455 load: only %llu file descriptors allowed; some connections will fail\n",
                   static_cast<unsigned long long>(rl.rlim_cur));
  }
  std::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_load_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const std::vector<char> pattern = make_pattern(s);
  shared_state sh(s);
  sh.start_ns = now_ns();
  std::vector<std::unique_ptr<worker>> workers;
  {
    std::uint32_t first = 0;
    std::uint64_t budget_given = 0;
    for (unsigned w = 0; w < s.threads; ++w) {
      const std::uint32_t count = s.connections / s.threads + (w < s.connections % s.threads ? 1 : 0);
      // -n: shares in proportion to the connections, summing to N.
      const std::uint64_t upto = static_cast<std::uint64_t>(
          static_cast<long double>(s.messages) * (first + count) / s.connections);
      workers.push_back(std::make_unique<worker>(sh, first, count, upto - budget_given, pattern));
      budget_given = upto;
      first += count;
    }
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->thread_main(); });
  for (auto& w : workers)
    while (!w->ready.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  const bool progress = isatty(2) != 0;
  std::int64_t warm_start = 0, t0 = 0, t1 = 0, next_progress = sh.start_ns + 1000 * ms;
  std::uint64_t last_received = 0;
  double cpu0 = 0, cpu1 = 0;
  auto begin_measure = [&](std::int64_t now) {
    t0 = now;
    cpu0 = cpu_seconds();
    sh.ph = measure;
  };
  for (std::int64_t next_tick = sh.start_ns;;) {
    if (sh.abort.load() || g_interrupted) break;
    for (auto& w : workers) {
      worker* wp = w.get();
      wp->client()->post([wp] { wp->tick(); });
    }
    std::uint64_t opened = 0, failed = 0, closed = 0, received = 0, errors = 0;
    bool all_finished = true;
    for (auto& w : workers) {
      opened += w->live.opened.load(std::memory_order_relaxed);
      failed += w->live.connect_failed.load(std::memory_order_relaxed);
      closed += w->live.closed.load(std::memory_order_relaxed);
      received += w->live.received.load(std::memory_order_relaxed);
      errors += w->live.errors.load(std::memory_order_relaxed);
      all_finished = all_finished && w->finished();
    }
    const std::int64_t now = now_ns();
    const bool settled = opened + failed == s.connections;
    const int ph = sh.ph.load();
    if (ph == ramp && settled) {
      warm_start = now;
      sh.ph = warmup;
      for (auto& w : workers) {
        worker* wp = w.get();
        wp->client()->post([wp] { wp->start_sending(); });
      }
      if (s.warmup <= 0) begin_measure(now);
    } else if (ph == warmup && now >= warm_start + static_cast<std::int64_t>(s.warmup * 1e9)) {
      begin_measure(now);
    } else if (ph == measure) {
      if (s.messages == 0 && now >= t0 + static_cast<std::int64_t>(s.seconds * 1e9)) break;
      if (s.messages != 0 && all_finished) break;
    }
    if (settled && closed == opened) break;  // every connection is gone
    if (progress && now >= next_progress) {
      const double rate = static_cast<double>(received - last_received);
      last_received = received;
      std::fprintf(stderr, "ws6455 load: %5.0f s  %llu/%u connections  %.0f msgs/s  %llu errors%s\n",
                   static_cast<double>(now - sh.start_ns) / 1e9, static_cast<unsigned long long>(opened - closed),
                   s.connections, rate, static_cast<unsigned long long>(errors),
                   sh.ph == measure ? "" : (sh.ph == warmup ? "  (warmup)" : "  (connecting)"));
      next_progress += 1000 * ms;
    }
    next_tick += tick_ns;
    std::int64_t wake = next_tick;
    if (sh.ph == measure && s.messages == 0) wake = std::min(wake, t0 + static_cast<std::int64_t>(s.seconds * 1e9));
    const std::int64_t d = wake - now_ns();
    if (d > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(d));
  }
  const bool measured = sh.ph.load() == measure;
  t1 = now_ns();
  cpu1 = cpu_seconds();
  sh.ph = drain;
  if (measured && s.messages != 0) {
    std::int64_t last_done = 0;
    for (auto& w : workers) last_done = std::max(last_done, w->live.done_ns.load(std::memory_order_relaxed));
    if (last_done > t0) t1 = std::min(t1, last_done);
  }
  for (auto& w : workers) w->client()->request_stop();  // 1000 to every connection, bounded by close_timeout
  for (auto& t : threads) t.join();

  if (sh.abort.load()) {
    std::string why;
    for (auto& w : workers)
      if (why.empty()) why = w->first_connect_error();
    std::fprintf(stderr, "ws6455 load: cannot connect to %s: %s\n", s.url.c_str(), why.empty() ? "failed" : why.c_str());
    return 1;
  }

  auto all = std::make_unique<histogram>();
  std::uint64_t msgs = 0, bytes = 0, errors = 0, opened = 0, connect_failures = 0;
  std::string first_error, first_connect_error;
  for (auto& w : workers) {
    all->merge(w->hist());
    msgs += w->measured();
    bytes += w->measured_bytes();
    errors += w->live.errors.load();
    opened += w->live.opened.load();
    if (first_error.empty()) first_error = w->first_error();
    if (first_connect_error.empty()) first_connect_error = w->first_connect_error();
  }
  std::uint64_t ktls = 0;  // wss://: connections whose sends the kernel encrypted
  for (auto& w : workers) {
    connect_failures += w->live.connect_failed.load();
    ktls += w->client()->stats().ktls_switched;
  }
  if (!first_connect_error.empty() && connect_failures > 0)
    std::fprintf(stderr, "ws6455 load: %llu connections failed; the first: %s\n",
                 static_cast<unsigned long long>(connect_failures), first_connect_error.c_str());
  if (!first_error.empty()) std::fprintf(stderr, "ws6455 load: %llu errors; the first: %s\n",
                                         static_cast<unsigned long long>(errors), first_error.c_str());
  if (g_interrupted) std::fprintf(stderr, "ws6455 load: interrupted\n");

  const double secs = measured && t1 > t0 ? static_cast<double>(t1 - t0) / 1e9 : 0.0;
  const double md = static_cast<double>(msgs);
  const double msgs_per_s = secs > 0 ? md / secs : 0.0;
  const double mib_per_s = secs > 0 ? static_cast<double>(bytes) / secs / (1 << 20) : 0.0;
  const double cpu_per_msg = msgs ? (cpu1 - cpu0) * 1e6 / md : 0.0;
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  const char* fmt = s.json
      ? "{\"msgs_per_s\": %.1f, \"MiB_per_s\": %.2f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
        "\"max_us\": %.1f, \"errors\": %llu, \"connections\": %llu, \"connect_failures\": %llu, "
        "\"cpu_us_per_msg\": %.3f, \"msgs\": %llu, \"seconds\": %.3f, \"ktls_connections\": %llu}\n"
      : "msgs_per_s=%.1f MiB_per_s=%.2f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%llu "
        "connections=%llu connect_failures=%llu cpu_us_per_msg=%.3f msgs=%llu seconds=%.3f ktls_connections=%llu\n";
  std::printf(fmt, msgs_per_s, mib_per_s, us(all->percentile(50)), us(all->percentile(99)),
              us(all->percentile(99.9)), us(all->max()), static_cast<unsigned long long>(errors),
              static_cast<unsigned long long>(opened), static_cast<unsigned long long>(connect_failures), cpu_per_msg,
              static_cast<unsigned long long>(msgs), secs, static_cast<unsigned long long>(ktls));
  std::fflush(stdout);
  return errors == 0 && connect_failures == 0 ? 0 : 1;
}
