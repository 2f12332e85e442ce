// A log-linear latency histogram in the style of HdrHistogram, in fixed memory.
//
// Values are nanoseconds. Each power of two is split into 128 equal sub-buckets
// (values below 128 ns are counted exactly), so a value is kept to within 1/128
// (0.8%: better than two significant decimal digits) of itself, from 1 ns up to
// max_value (100 s; larger values are counted as max_value). That is 3,899 counters
// (30 powers of two x 128 sub-buckets above the first 128), 31 KiB, whatever the
// number of samples.
// record() is a few instructions (no allocation, no branch on the data besides the
// clamp); percentiles walk the counters once.
//
// Not thread-safe: one histogram per thread, merge() them at the end.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace ws6455::tools {

namespace histogram_layout {
inline constexpr unsigned sub_bits = 7;                      // 128 sub-buckets per power of two
inline constexpr std::uint64_t sub_count = 1u << sub_bits;
inline constexpr std::uint64_t max_value = 100'000'000'000;  // 100 s in ns

// The bucket of a value (clamped to max_value). Below sub_count: the value itself.
// Above: group g = (highest bit) - sub_bits + 1, and the sub_bits bits after the
// highest one; bucket = g * sub_count + those bits.
constexpr std::size_t bucket_of(std::uint64_t v) noexcept {
  if (v > max_value) v = max_value;
  if (v < sub_count) return static_cast<std::size_t>(v);
  const unsigned high = static_cast<unsigned>(std::bit_width(v)) - 1;  // >= sub_bits
  const unsigned shift = high - sub_bits;
  const std::uint64_t sub = (v >> shift) - sub_count;  // 0 .. sub_count-1
  return static_cast<std::size_t>((shift + 1) * sub_count + sub);
}
constexpr std::uint64_t lowest_in(std::size_t i) noexcept {
  if (i < sub_count) return i;
  return (sub_count + i % sub_count) << (i / sub_count - 1);
}
constexpr std::uint64_t highest_in(std::size_t i) noexcept {
  if (i < sub_count) return i;
  return lowest_in(i) + (std::uint64_t{1} << (i / sub_count - 1)) - 1;
}
}  // namespace histogram_layout

class histogram {
 public:
  static constexpr unsigned sub_bits = histogram_layout::sub_bits;
  static constexpr std::uint64_t sub_count = histogram_layout::sub_count;
  static constexpr std::uint64_t max_value = histogram_layout::max_value;
  // Up to max_value's bucket: 30 powers of two above 128 ns, 3,899 counters.
  static constexpr std::size_t bucket_count = histogram_layout::bucket_of(max_value) + 1;

  // The bucket of a value (clamped to max_value).
  static constexpr std::size_t bucket_of(std::uint64_t v) noexcept { return histogram_layout::bucket_of(v); }
  // The smallest and the largest value that share bucket `i`.
  static constexpr std::uint64_t lowest_in(std::size_t i) noexcept { return histogram_layout::lowest_in(i); }
  static constexpr std::uint64_t highest_in(std::size_t i) noexcept { return histogram_layout::highest_in(i); }

  void record(std::uint64_t ns) noexcept {
    if (ns > max_value) ns = max_value;
    ++counts_[bucket_of(ns)];
    ++total_;
    sum_ += ns;
    if (ns < min_) min_ = ns;
    if (ns > max_) max_ = ns;
  }

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t min() const noexcept { return total_ ? min_ : 0; }  // exact
  std::uint64_t max() const noexcept { return max_; }               // exact (0 when empty)
  double mean() const noexcept { return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0.0; }
  // The value at percentile p (0..100): the highest value of the bucket that holds
  // the ceil(p% x count)-th smallest sample, within [min, max]. 0 when empty.
  std::uint64_t percentile(double p) const noexcept;

  void merge(const histogram& other) noexcept;
  void reset() noexcept;

 private:
  std::array<std::uint64_t, bucket_count> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t sum_ = 0;  // 2^64 ns = 584 years of summed latency
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

}  // namespace ws6455::tools
