// tools/histogram: the log-linear latency histogram of `ws6455 load`.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "../tools/histogram.hpp"

using ws6455::tools::histogram;

TEST_CASE("histogram: buckets cover every value once, in order, within 1/128") {
  // Every bucket's range starts right after the previous one's.
  for (std::size_t i = 1; i < histogram::bucket_count; ++i) {
    REQUIRE(histogram::lowest_in(i) == histogram::highest_in(i - 1) + 1);
    REQUIRE(histogram::bucket_of(histogram::lowest_in(i)) == i);
    REQUIRE(histogram::bucket_of(histogram::highest_in(i)) == i);
  }
  CHECK(histogram::bucket_of(0) == 0);
  CHECK(histogram::bucket_of(127) == 127);
  CHECK(histogram::bucket_of(128) == 128);
  CHECK(histogram::bucket_of(histogram::max_value) == histogram::bucket_count - 1);
  CHECK(histogram::bucket_of(UINT64_MAX) == histogram::bucket_count - 1);
  CHECK(histogram::highest_in(histogram::bucket_count - 1) >= histogram::max_value);
  // Relative width of every bucket: at most 1/128.
  for (std::size_t i = histogram::sub_count; i < histogram::bucket_count; ++i) {
    const double lo = static_cast<double>(histogram::lowest_in(i));
    const double width = static_cast<double>(histogram::highest_in(i) - histogram::lowest_in(i) + 1);
    REQUIRE(width / lo <= 1.0 / 128 + 1e-12);
  }
  // Random values land in the bucket that contains them.
  std::mt19937_64 rng(42);
  for (int k = 0; k < 100000; ++k) {
    const std::uint64_t v = rng() >> (rng() % 64);
    const std::uint64_t c = std::min(v, histogram::max_value);
    const std::size_t b = histogram::bucket_of(v);
    REQUIRE(histogram::lowest_in(b) <= c);
    REQUIRE(c <= histogram::highest_in(b));
  }
}

TEST_CASE("histogram: empty, one value, min, max, mean") {
  auto h = std::make_unique<histogram>();
  CHECK(h->count() == 0);
  CHECK(h->percentile(50) == 0);
  CHECK(h->max() == 0);
  CHECK(h->min() == 0);
  h->record(12345);
  CHECK(h->count() == 1);
  CHECK(h->min() == 12345);
  CHECK(h->max() == 12345);
  CHECK(h->percentile(0) == 12345);
  CHECK(h->percentile(50) == 12345);  // clamped to [min, max]: exact for one value
  CHECK(h->percentile(100) == 12345);
  h->record(5);
  CHECK(h->min() == 5);
  CHECK(h->mean() == doctest::Approx(6175.0));
  CHECK(h->percentile(50) == 5);  // exact below 128
  h->record(histogram::max_value * 3);  // clamped
  CHECK(h->max() == histogram::max_value);
  h->reset();
  CHECK(h->count() == 0);
  CHECK(h->max() == 0);
}

TEST_CASE("histogram: percentiles against a sorted sample, within 1/128") {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(std::log(50'000.0), 1.0);  // ~50 us median
  std::vector<std::uint64_t> xs;
  auto h = std::make_unique<histogram>();
  for (int k = 0; k < 200000; ++k) {
    const auto v = static_cast<std::uint64_t>(dist(rng));
    xs.push_back(v);
    h->record(v);
  }
  std::sort(xs.begin(), xs.end());
  CHECK(h->count() == xs.size());
  CHECK(h->max() == xs.back());
  CHECK(h->min() == xs.front());
  for (const double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
    const auto rank = static_cast<std::size_t>(std::ceil(p / 100 * static_cast<double>(xs.size())));
    const double exact = static_cast<double>(xs[rank - 1]);
    const double got = static_cast<double>(h->percentile(p));
    INFO("p" << p << " exact " << exact << " got " << got);
    CHECK(got >= exact);  // the bucket's highest value
    CHECK(got <= exact * (1 + 1.0 / 128) + 1);
  }
}

TEST_CASE("histogram: merge is the same as recording everything in one") {
  std::mt19937_64 rng(3);
  auto a = std::make_unique<histogram>();
  auto b = std::make_unique<histogram>();
  auto all = std::make_unique<histogram>();
  for (int k = 0; k < 50000; ++k) {
    const std::uint64_t v = rng() % 10'000'000;
    (k % 3 ? *a : *b).record(v);
    all->record(v);
  }
  auto empty = std::make_unique<histogram>();
  a->merge(*empty);  // merging an empty one changes nothing (min stays)
  a->merge(*b);
  CHECK(a->count() == all->count());
  CHECK(a->min() == all->min());
  CHECK(a->max() == all->max());
  CHECK(a->mean() == doctest::Approx(all->mean()));
  for (const double p : {0.0, 25.0, 50.0, 99.0, 99.9, 100.0}) CHECK(a->percentile(p) == all->percentile(p));
  empty->merge(*all);
  CHECK(empty->min() == all->min());
  CHECK(empty->percentile(50) == all->percentile(50));
}
