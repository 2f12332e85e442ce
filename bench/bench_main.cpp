// ws6455 benchmarks: receive and send paths, masking, UTF-8, with memcpy of the
// same bytes and the peers (wslay, Boost.Beast) in the same process run.
//
// Receive cases use manual timing: each iteration first restores the masked
// input (a memcpy from a pristine copy, untimed: ws6455 unmasks in place, so the
// buffer must be masked again), then times one pass over the whole buffer. The
// "+copy" variant times that memcpy too, which is what the peers pay: they pull
// bytes through a read callback into their own buffers (recv(2)'s copy).
//
//   ws6455_bench [google benchmark flags]
//   ws6455_bench --ipf CASE PASSES   callgrind mode: runs CASE (a receive case
//                                    name) with collection on only around the passes.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <sys/resource.h>
#include <stdexcept>
#include <string>
#include <vector>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define WS6455_HAVE_CALLGRIND 1
#endif

#include "cases.hpp"
#include "cpu_features.hpp"
#include "frames.hpp"
#include "mask.hpp"
#include "native_ref.hpp"
#include "random.hpp"
#include "utf8.hpp"
#include "ws6455/connection.hpp"
#include "ws6455/frame_header.hpp"

// ------------------------------------------------------------ counting allocator
namespace bench {
std::atomic<std::uint64_t> g_allocations{0};
}
namespace {
void* counted_alloc(std::size_t n) {
  bench::g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* counted_aligned_alloc(std::size_t n, std::align_val_t a) {
  bench::g_allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t al = static_cast<std::size_t>(a);
  return std::aligned_alloc(al, (n + al - 1) / al * al);
}
}  // namespace
// Out of line, news and deletes: inlined, GCC 12 pairs a malloc() or `::new` with a
// free() or sized delete and warns (-Wmismatched-new-delete), a false positive.
#define WS6455_OUT_OF_LINE [[gnu::noinline]]
WS6455_OUT_OF_LINE void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
WS6455_OUT_OF_LINE void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
WS6455_OUT_OF_LINE void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
WS6455_OUT_OF_LINE void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
WS6455_OUT_OF_LINE void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_aligned_alloc(n, a)) return p;
  throw std::bad_alloc();
}
WS6455_OUT_OF_LINE void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_aligned_alloc(n, a)) return p;
  throw std::bad_alloc();
}
WS6455_OUT_OF_LINE void operator delete(void* p) noexcept { std::free(p); }
WS6455_OUT_OF_LINE void operator delete[](void* p) noexcept { std::free(p); }
WS6455_OUT_OF_LINE void operator delete(void* p, std::size_t) noexcept { std::free(p); }
WS6455_OUT_OF_LINE void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
WS6455_OUT_OF_LINE void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
WS6455_OUT_OF_LINE void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
WS6455_OUT_OF_LINE void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
WS6455_OUT_OF_LINE void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace bench {

std::map<std::string, recv_factory>& recv_cases() {
  static std::map<std::string, recv_factory> m;
  return m;
}

namespace {

// Manual timing. Short measurements are not timed with CLOCK_THREAD_CPUTIME_ID: it is
// a system call (~370-560 ns per read on the machines here), 10-25% of a 1.5-4 µs
// pass, which pulled short passes toward 1×. They read CLOCK_MONOTONIC in the vDSO
// (~20 ns), and each measurement is a batch long enough that the clock stays under
// 1% of it (kMinBatchClocks). The machine is shared, and wall time would count time
// spent descheduled: a short measurement during which this thread was preempted (its
// involuntary context switch count moved; getrusage, outside the timed interval) is
// taken again. Long measurements (>= kCpuClockAbove) are preempted too often for
// that, and there the thread CPU clock costs under 1%: they use it. (Cache
// interference from other processes still shows; compare ratios within one run.)
template <clockid_t Id>
struct posix_clock {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<posix_clock, duration>;
  static time_point now() noexcept {
    timespec ts;
    clock_gettime(Id, &ts);
    return time_point(duration(static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec));
  }
};
using clock_type = posix_clock<CLOCK_MONOTONIC>;
using cpu_clock_type = posix_clock<CLOCK_THREAD_CPUTIME_ID>;

// Nanoseconds one read of the clock adds to a measurement (mean of back-to-back reads).
template <class Clock>
double read_ns() {
  constexpr int kReads = 20000;
  const auto t0 = clock_type::now();
  for (int i = 0; i < kReads; ++i) benchmark::DoNotOptimize(Clock::now());
  return std::chrono::duration<double, std::nano>(clock_type::now() - t0).count() / kReads;
}
double clock_ns() {
  static const double ns = read_ns<clock_type>();
  return ns;
}
double cpu_clock_ns() {
  static const double ns = read_ns<cpu_clock_type>();
  return ns;
}
// A measurement lasts at least this many clock reads: the clock is under 1% of it.
constexpr double kMinBatchClocks = 200;
// Above this (seconds), measure with the thread CPU clock (>= 200 of its reads too).
double cpu_clock_above() { return kMinBatchClocks * cpu_clock_ns() * 1e-9; }

std::uint64_t involuntary_switches() noexcept {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<std::uint64_t>(ru.ru_nivcsw);
}

// One measurement: prepare() untimed, then body() timed. Returns seconds. With the
// monotonic clock it is taken again (prepare included) when the thread was preempted.
template <class Prepare, class Body>
double measure(Prepare&& prepare, Body&& body, bool cpu_clock = false) {
  if (cpu_clock) {
    prepare();
    const auto t0 = cpu_clock_type::now();
    body();
    const auto t1 = cpu_clock_type::now();
    return std::chrono::duration<double>(t1 - t0).count();
  }
  for (int attempt = 0;; ++attempt) {
    prepare();
    const std::uint64_t cs = involuntary_switches();
    const auto t0 = clock_type::now();
    body();
    const auto t1 = clock_type::now();
    if (involuntary_switches() == cs || attempt == 20)
      return std::chrono::duration<double>(t1 - t0).count();
  }
}

// Which clock a measurement of this length uses, and that clock's cost per read.
bool use_cpu_clock(double seconds) { return seconds >= cpu_clock_above(); }
double clock_cost(bool cpu_clock) { return (cpu_clock ? cpu_clock_ns() : clock_ns()) * 1e-9; }

// How many repetitions of `once` make a batch of at least kMinBatchClocks clock
// reads: doubled until the shortest of three such batches is long enough.
template <class Body>
std::size_t batch_size(Body&& once) {
  const double need = kMinBatchClocks * clock_ns() * 1e-9;
  for (std::size_t b = 1;; b *= 2) {
    double best = 1e9;
    for (int i = 0; i < 3; ++i)
      best = std::min(best, measure([] {}, [&] {
                        for (std::size_t k = 0; k < b; ++k) once();
                      }));
    if (best >= need || b >= 4096) return b;
  }
}

// ------------------------------------------------------------ ws6455 receive
struct ws6455_case final : recv_case {
  const frame_buffer& fb;
  std::vector<std::byte> work;
  ws6455::connection conn;
  std::array<ws6455::event, 256> events{};
  std::size_t read_size;  // feed the buffer in reads of this size (0: all at once)
  bool copy_in;           // the restoring memcpy is part of the timed pass
  bool binary;            // binary frames (batchable without restores)

  static ws6455::config make_config(ws6455::delivery d) {
    ws6455::config c;
    c.mode = d;
    return c;
  }
  ws6455_case(const frame_buffer& b, ws6455::delivery d, std::size_t reads, bool copy, bool bin)
      : fb(b), work(b.pristine), conn(ws6455::role::server, make_config(d)), read_size(reads), copy_in(copy),
        binary(bin) {
    frames = fb.frames;
    payload_bytes = fb.payload_bytes;
    wire_bytes = fb.pristine.size();
  }
  void restore() override {
    if (!copy_in) std::memcpy(work.data(), fb.pristine.data(), work.size());
  }
  // +copy passes restore their own input. A binary pass only XORs the payloads in
  // place (headers untouched, contents never inspected), so a second pass over the
  // same bytes does the same work and masks them again: checked here, not assumed.
  // (Text would not do: its second pass would see unmasked bytes as masked ones.)
  bool batchable() override {
    if (copy_in) return true;
    if (!binary) return false;
    restore();
    if (pass() != frames || pass() != frames) return false;
    return work == fb.pristine;
  }
  std::size_t pass() override {
    if (copy_in) std::memcpy(work.data(), fb.pristine.data(), work.size());
    std::size_t seen = 0, bytes = 0;
    std::size_t pos = 0;
    const std::size_t total = work.size();
    while (pos < total) {
      const std::size_t end = read_size ? std::min(total, pos + read_size) : total;
      std::span<std::byte> in(work.data() + pos, end - pos);
      while (!in.empty()) {
        const auto r = conn.feed(in, events);
        for (std::size_t i = 0; i < r.events; ++i) {
          const ws6455::event& ev = events[i];
          if (ev.type != ws6455::event_type::binary && ev.type != ws6455::event_type::text)
            throw std::runtime_error("unexpected event");
          bytes += ev.data.size();
          seen += ev.fin;
        }
        in = in.subspan(r.consumed);
      }
      pos = end;
    }
    benchmark::DoNotOptimize(bytes);
    return seen;
  }
};

void register_ws6455_cases() {
  for (auto kind : {payload_kind::binary, payload_kind::text_ascii, payload_kind::text_mixed})
    for (std::size_t size : kSizes) {
      const std::string tail = std::string(to_string(kind)) + "/";
      const std::string sz = size_label(size);
      auto add = [&](const std::string& mode, ws6455::delivery d, std::size_t reads, bool copy) {
        recv_cases()["ws6455/" + tail + mode + "/" + sz] = [=] {
          return std::make_unique<ws6455_case>(frames_for(kind, size), d, reads, copy, kind == payload_kind::binary);
        };
      };
      add("whole", ws6455::delivery::whole_messages, 0, false);
      add("stream", ws6455::delivery::streaming, 0, false);
      add("whole+copy", ws6455::delivery::whole_messages, 0, true);
      if (kind == payload_kind::binary) add("stream_4k_reads", ws6455::delivery::streaming, 4096, false);
    }
}

void run_recv(benchmark::State& st, const recv_factory& make) {
  std::unique_ptr<recv_case> c;
  try {
    c = make();
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  std::uint64_t allocs = 0, passes = 0;
  // One untimed warm-up pass: first-use growth (reassembly storage) is not per frame.
  c->restore();
  if (c->pass() != c->frames) {
    st.SkipWithError("frame count mismatch");
    return;
  }
  // A batch is several passes over the same buffer (the same cache state as one
  // pass), for the cases that allow it; the others (text without +copy: their input
  // must be restored, untimed, before every pass) are timed one pass at a time, and
  // their passes are the slower ones. Not several instances with their own buffers:
  // three 256 KiB copies plus the pristine one crowd this CPU's 1 MiB L2 and slowed
  // a 16 KiB binary pass by 40%, far more than the clock they hide.
  std::size_t batch = 1;
  if (c->batchable()) {
    batch = batch_size([&] {
      c->rearm();
      benchmark::DoNotOptimize(c->pass());
    });
  }
  double one = 1e9;  // the shortest of three single passes
  for (int i = 0; i < 3; ++i)
    one = std::min(one, measure([&] { c->restore(); }, [&] { benchmark::DoNotOptimize(c->pass()); }));
  const bool cpu_clock = use_cpu_clock(one * static_cast<double>(batch));
  double shortest = 1e9;
  for (auto _ : st) {
    std::uint64_t a = 0;
    std::size_t seen = 0;
    const double t = measure([&] { c->restore(); },
                             [&] {
                               const std::uint64_t a0 = allocations();
                               for (std::size_t i = 0; i < batch; ++i) {
                                 if (i != 0) c->rearm();
                                 seen += c->pass();
                               }
                               a = allocations() - a0;
                             },
                             cpu_clock);
    allocs += a;
    passes += batch;
    shortest = std::min(shortest, t);
    benchmark::DoNotOptimize(seen);
    st.SetIterationTime(t / static_cast<double>(batch));
  }
  st.counters["batch"] = static_cast<double>(batch);
  st.counters["cpu_clock"] = cpu_clock;
  st.counters["clock_share"] = clock_cost(cpu_clock) / shortest;
  st.counters["frames"] = static_cast<double>(c->frames);
  st.counters["payload_bytes"] = static_cast<double>(c->payload_bytes);
  st.counters["wire_bytes"] = static_cast<double>(c->wire_bytes);
  st.counters["allocs_per_frame"] = static_cast<double>(allocs) / static_cast<double>(passes * c->frames);
  st.SetBytesProcessed(static_cast<std::int64_t>(c->payload_bytes * passes / batch));  // per iteration: one pass
}

// ------------------------------------------------------------ memcpy, the limit
void bm_memcpy(benchmark::State& st, std::size_t size) {
  const frame_buffer& fb = frames_for(payload_kind::binary, size);
  std::vector<std::byte> dst(fb.pristine.size());
  auto once = [&] {
    std::memcpy(dst.data(), fb.pristine.data(), dst.size());
    benchmark::ClobberMemory();
  };
  once();
  const std::size_t batch = batch_size(once);  // memcpy of 256 KiB is ~2 µs: a few per measurement
  double shortest = 1e9;
  for (auto _ : st) {
    const double t = measure([] {}, [&] {
      for (std::size_t i = 0; i < batch; ++i) once();
    });
    shortest = std::min(shortest, t);
    st.SetIterationTime(t / static_cast<double>(batch));
  }
  st.counters["batch"] = static_cast<double>(batch);
  st.counters["clock_share"] = clock_cost(false) / shortest;
  st.counters["frames"] = static_cast<double>(fb.frames);
  st.counters["payload_bytes"] = static_cast<double>(fb.payload_bytes);
  st.counters["wire_bytes"] = static_cast<double>(fb.pristine.size());
  st.SetBytesProcessed(static_cast<std::int64_t>(fb.pristine.size() * st.iterations()));
}

// ------------------------------------------------------------ send path
// The same number of frames as the receive buffer of this size, per iteration.
void bm_send(benchmark::State& st, std::size_t size, int variant) {
  const frame_buffer& fb = frames_for(payload_kind::binary, size);
  const auto payload = make_payload(payload_kind::binary, size, 99);
  const std::span<const std::byte> body(payload);
  ws6455::connection conn(variant == 2 ? ws6455::role::client : ws6455::role::server);
  std::size_t wire = 0;
  std::uint64_t allocs = 0;
  auto one_pass = [&] {
    std::size_t bytes = 0;
    if (variant == 0) {
      // Server, zero copy: the header from a small array, the payload from the
      // caller's memory (two iovecs for writev).
      for (std::size_t f = 0; f < fb.frames; ++f) {
        const ws6455::frame_header h = ws6455::encode_frame_header(ws6455::opcode::binary, true, false, body.size());
        std::array<std::span<const std::byte>, 2> iov{std::span<const std::byte>(h.bytes.data(), h.size), body};
        benchmark::DoNotOptimize(iov);
        bytes += iov[0].size() + iov[1].size();
      }
    } else {
      // connection::send_binary: header + payload copied (server) or masked with
      // a fresh key per frame (client) into the output, drained like a socket would.
      for (std::size_t f = 0; f < fb.frames; ++f) {
        if (conn.send_binary(body) != ws6455::send_result::ok) throw std::runtime_error("send failed");
        const auto out = conn.pending_output();
        if (out.size() >= 64 * 1024 || f + 1 == fb.frames) {
          benchmark::DoNotOptimize(out.data());
          bytes += out.size();
          conn.consume_output(out.size());
        }
      }
    }
    return bytes;
  };
  one_pass();  // warm-up: the output buffer reaches its working size
  const std::size_t batch = batch_size([&] { wire = one_pass(); });
  double one = 1e9;
  for (int i = 0; i < 3; ++i) one = std::min(one, measure([] {}, [&] { wire = one_pass(); }));
  const bool cpu_clock = use_cpu_clock(one * static_cast<double>(batch));
  double shortest = 1e9;
  for (auto _ : st) {
    const std::uint64_t a0 = allocations();
    const double t = measure([] {}, [&] {
      for (std::size_t i = 0; i < batch; ++i) wire = one_pass();
    }, cpu_clock);
    allocs += allocations() - a0;
    shortest = std::min(shortest, t);
    st.SetIterationTime(t / static_cast<double>(batch));
  }
  st.counters["batch"] = static_cast<double>(batch);
  st.counters["cpu_clock"] = cpu_clock;
  st.counters["clock_share"] = clock_cost(cpu_clock) / shortest;
  st.counters["frames"] = static_cast<double>(fb.frames);
  st.counters["payload_bytes"] = static_cast<double>(fb.frames * size);
  st.counters["wire_bytes"] = static_cast<double>(wire);
  st.counters["allocs_per_frame"] = static_cast<double>(allocs) /
                                    static_cast<double>(static_cast<std::uint64_t>(st.iterations()) * batch * fb.frames);
  st.SetBytesProcessed(static_cast<std::int64_t>(fb.frames * size * st.iterations()));
}

// ------------------------------------------------------------ masking alone
using mask_fn = std::size_t (*)(std::byte*, std::size_t, const std::byte*, std::size_t) noexcept;
void bm_mask(benchmark::State& st, mask_fn fn, std::size_t size) {
  std::vector<std::byte> buf(size + 64);
  std::byte* p = buf.data() + 1;  // unaligned, like a payload after a 6-byte header
  const std::byte key[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  std::size_t phase = 0;
  for (auto _ : st) {
    phase = fn(p, size, key, phase);
    benchmark::ClobberMemory();
  }
  st.counters["payload_bytes"] = static_cast<double>(size);
  st.counters["wire_bytes"] = static_cast<double>(size);
  st.SetBytesProcessed(static_cast<std::int64_t>(size * st.iterations()));
}

using mask_copy_fn = void (*)(std::byte*, const std::byte*, std::size_t, const std::byte*) noexcept;
void bm_mask_copy(benchmark::State& st, mask_copy_fn fn, std::size_t size) {
  std::vector<std::byte> src(size + 64), dst(size + 64);
  const std::byte key[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  for (auto _ : st) {
    fn(dst.data() + 2, src.data() + 1, size, key);  // payload after a header: both unaligned
    benchmark::ClobberMemory();
  }
  st.counters["payload_bytes"] = static_cast<double>(size);
  st.counters["wire_bytes"] = static_cast<double>(size);
  st.SetBytesProcessed(static_cast<std::int64_t>(size * st.iterations()));
}

// ------------------------------------------------------------ UTF-8 alone
using utf8_fn = bool (*)(ws6455::detail::utf8_state&, const std::byte*, std::size_t) noexcept;
std::vector<std::byte> utf8_corpus(const std::string& which, std::size_t size) {
  std::vector<std::byte> v;
  auto put = [&](std::uint32_t cp) {
    if (cp < 0x80) {
      v.push_back(std::byte(cp));
    } else if (cp < 0x800) {
      v.push_back(std::byte(0xC0 | (cp >> 6))); v.push_back(std::byte(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      v.push_back(std::byte(0xE0 | (cp >> 12))); v.push_back(std::byte(0x80 | ((cp >> 6) & 0x3F)));
      v.push_back(std::byte(0x80 | (cp & 0x3F)));
    } else {
      v.push_back(std::byte(0xF0 | (cp >> 18))); v.push_back(std::byte(0x80 | ((cp >> 12) & 0x3F)));
      v.push_back(std::byte(0x80 | ((cp >> 6) & 0x3F))); v.push_back(std::byte(0x80 | (cp & 0x3F)));
    }
  };
  std::uint32_t x = 12345;
  auto rnd = [&] { return x = x * 1103515245u + 12345u, (x >> 8); };
  if (which == "mixed" || which == "ascii") {
    auto p = make_payload(which == "mixed" ? payload_kind::text_mixed : payload_kind::text_ascii, size, 7);
    return p;
  }
  while (v.size() + 4 < size) {
    if (which == "greek") put(rnd() % 5 == 0 ? 0x20 : 0x3B1 + rnd() % 25);        // 2-byte heavy
    else if (which == "cjk") put(rnd() % 8 == 0 ? 0x3002 : 0x4E00 + rnd() % 20000);  // 3-byte heavy
    else if (which == "emoji") put(0x1F300 + rnd() % 0x700);                         // 4-byte only
    else if (which == "invalid_late") put(0x61 + rnd() % 26);
  }
  while (v.size() < size) v.push_back(std::byte{'.'});
  if (which == "invalid_late") v[size - 16] = std::byte{0xC0};
  return v;
}
void bm_utf8(benchmark::State& st, utf8_fn fn, const std::vector<std::byte>* text) {
  for (auto _ : st) {
    ws6455::detail::utf8_state s = 0;
    bool ok = fn(s, text->data(), text->size());
    benchmark::DoNotOptimize(ok);
  }
  st.counters["payload_bytes"] = static_cast<double>(text->size());
  st.counters["wire_bytes"] = static_cast<double>(text->size());
  st.SetBytesProcessed(static_cast<std::int64_t>(text->size() * st.iterations()));
}

void register_all() {
  register_ws6455_cases();
#if defined(WS6455_BENCH_WSLAY)
  register_wslay_cases();
#endif
#if defined(WS6455_BENCH_BEAST)
  register_beast_cases();
#endif
  for (const auto& [name, make] : recv_cases())
    benchmark::RegisterBenchmark(("recv/" + name).c_str(), [make = make](benchmark::State& st) { run_recv(st, make); })
        ->UseManualTime();
  for (std::size_t size : kSizes) {
    const std::string sz = size_label(size);
    benchmark::RegisterBenchmark(("memcpy/" + sz).c_str(), [size](benchmark::State& st) { bm_memcpy(st, size); })
        ->UseManualTime();
    const char* sends[] = {"server_writev", "server_copy", "client_masked"};
    for (int v = 0; v < 3; ++v)
      benchmark::RegisterBenchmark((std::string("send/") + sends[v] + "/" + sz).c_str(),
                                   [size, v](benchmark::State& st) { bm_send(st, size, v); })
          ->UseManualTime();
  }
  using namespace ws6455::detail;
  struct {
    const char* name;
    simd_level level;
    mask_fn fn;
  } masks[] = {{"scalar", simd_level::portable, &mask_in_place_scalar},
               {"portable", simd_level::portable, &mask_in_place_portable},
               {"sse2", simd_level::sse2, &mask_in_place_sse2},
               {"avx2", simd_level::avx2, &mask_in_place_avx2},
               {"avx512", simd_level::avx512, &mask_in_place_avx512},
               {"dispatch", simd_level::portable, &mask_in_place},
#if defined(WS6455_BENCH_NATIVE_REF)
               // References, not ours: plain loops built with -march=native (native_ref.cpp).
               {"native_bytes", simd_level::portable, &native_ref::unmask_bytes},
               {"native_words", simd_level::portable, &native_ref::unmask_words},
#endif
  };
  for (const auto& m : masks) {
    if (!simd_level_supported(m.level)) continue;
    for (std::size_t size : {std::size_t{16}, std::size_t{125}, std::size_t{1024}, std::size_t{16384},
                             std::size_t{262144}})
      benchmark::RegisterBenchmark((std::string("mask/") + m.name + "/" + size_label(size)).c_str(),
                                   [fn = m.fn, size](benchmark::State& st) { bm_mask(st, fn, size); });
  }
  struct {
    const char* name;
    simd_level level;
    mask_copy_fn fn;
  } copies[] = {{"portable", simd_level::portable, &mask_copy_portable},
                {"sse2", simd_level::sse2, &mask_copy_sse2},
                {"avx2", simd_level::avx2, &mask_copy_avx2},
                {"avx512", simd_level::avx512, &mask_copy_avx512},
                {"dispatch", simd_level::portable, &mask_copy}};
  for (const auto& m : copies) {
    if (!simd_level_supported(m.level)) continue;
    for (std::size_t size : {std::size_t{125}, std::size_t{1024}, std::size_t{16384}})
      benchmark::RegisterBenchmark((std::string("mask_copy/") + m.name + "/" + size_label(size)).c_str(),
                                   [fn = m.fn, size](benchmark::State& st) { bm_mask_copy(st, fn, size); });
  }
  struct {
    const char* name;
    simd_level level;
    utf8_fn fn;
  } validators[] = {{"scalar", simd_level::portable, &utf8_validate_scalar},
                    {"portable", simd_level::portable, &utf8_validate_portable},
                    {"ssse3", simd_level::ssse3, &utf8_validate_ssse3},
                    {"avx2", simd_level::avx2, &utf8_validate_avx2},
                    {"avx512", simd_level::avx512, &utf8_validate_avx512},
                    {"dispatch", simd_level::portable, &utf8_validate}};
  static std::vector<std::vector<std::byte>> corpora;
  corpora.reserve(8);
  for (const char* text : {"ascii", "greek", "cjk", "emoji", "mixed", "invalid_late"}) {
    corpora.push_back(utf8_corpus(text, 256 * 1024));
    const auto* corpus = &corpora.back();
    for (const auto& v : validators) {
      if (!simd_level_supported(v.level)) continue;
      benchmark::RegisterBenchmark((std::string("utf8/") + text + "/" + v.name).c_str(),
                                   [fn = v.fn, corpus](benchmark::State& st) { bm_utf8(st, fn, corpus); });
    }
  }
}

// ------------------------------------------------------------ callgrind mode
int run_ipf(const std::string& name, long passes) {
  const auto it = recv_cases().find(name);
  if (it == recv_cases().end()) {
    std::fprintf(stderr, "no receive case %s\n", name.c_str());
    return 2;
  }
  auto c = it->second();
  c->restore();
  c->pass();  // warm-up, not collected
  std::size_t frames = 0;
  for (long i = 0; i < passes; ++i) {
    c->restore();
#if defined(WS6455_HAVE_CALLGRIND)
    CALLGRIND_TOGGLE_COLLECT;
#endif
    frames += c->pass();
#if defined(WS6455_HAVE_CALLGRIND)
    CALLGRIND_TOGGLE_COLLECT;
#endif
  }
  std::printf("frames %zu\n", frames);
  return 0;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  bench::register_all();
  if (argc >= 2 && std::string(argv[1]) == "--ipf") {
    if (argc < 4) {
      std::fprintf(stderr, "usage: %s --ipf CASE PASSES\n", argv[0]);
      return 2;
    }
    return bench::run_ipf(argv[2], std::strtol(argv[3], nullptr, 10));
  }
  if (argc >= 2 && std::string(argv[1]) == "--list-recv") {
    for (const auto& [name, make] : bench::recv_cases()) std::printf("%s\n", name.c_str());
    return 0;
  }
  benchmark::AddCustomContext("ws6455_simd", ws6455::detail::to_string(ws6455::detail::detected_simd_level()));
  benchmark::AddCustomContext("clock", "CLOCK_MONOTONIC, " + std::to_string(bench::clock_ns()) +
                                           " ns per read; preempted measurements retaken");
  benchmark::AddCustomContext("clock_ns", std::to_string(bench::clock_ns()));
  benchmark::AddCustomContext("cpu_clock_ns", std::to_string(bench::cpu_clock_ns()));
#if defined(WS6455_BENCH_NATIVE_REF)
  benchmark::AddCustomContext("native_ref", "yes");
#endif
#if defined(WS6455_BENCH_WSLAY)
  benchmark::AddCustomContext("peer_wslay", "yes");
#else
  benchmark::AddCustomContext("peer_wslay", "skipped: libwslay-dev not found at configure time");
#endif
#if defined(WS6455_BENCH_BEAST)
  benchmark::AddCustomContext("peer_beast", "yes");
#else
  benchmark::AddCustomContext("peer_beast", "skipped: Boost.Beast headers not found at configure time");
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
