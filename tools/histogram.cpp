#include "histogram.hpp"

#include <cmath>

namespace ws6455::tools {

static_assert(histogram::bucket_count == 3899);
static_assert(histogram::highest_in(histogram::bucket_count - 1) >= histogram::max_value);

std::uint64_t histogram::percentile(double p) const noexcept {
  if (total_ == 0) return 0;
  if (!(p > 0)) return min_;  // also NaN
  if (p >= 100) return max_;
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
  if (rank < 1) rank = 1;
  if (rank > total_) rank = total_;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      std::uint64_t v = highest_in(i);
      if (v > max_) v = max_;
      if (v < min_) v = min_;
      return v;
    }
  }
  return max_;
}

void histogram::merge(const histogram& other) noexcept {
  for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  sum_ += other.sum_;
  if (other.total_) {
    if (other.min_ < min_) min_ = other.min_;
    if (other.max_ > max_) max_ = other.max_;
  }
}

void histogram::reset() noexcept { *this = histogram{}; }

}  // namespace ws6455::tools
