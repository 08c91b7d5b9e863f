#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"

// Metrics read at scrape time. kspm keeps its counters where the work happens (atomics in the
// components' stats, prometheus::Histogram for latencies) and a Source turns them into metric
// families when Prometheus asks, as a Go client's Collector would: nothing is copied between
// scrapes, and gauges such as scores are computed from the state they describe.
namespace kspm::common::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// The families of one scrape, in the order they were first named.
class Families {
 public:
  void Gauge(const std::string& name, const std::string& help, const Labels& labels, double value);
  void Counter(const std::string& name, const std::string& help, const Labels& labels,
               double value);
  void Histogram(const std::string& name, const std::string& help, const Labels& labels,
                 const prometheus::Histogram& histogram);
  // Declares a family with no sample yet (a counter nobody has bumped still shows its HELP), so
  // dashboards and alerts find every metric from the first scrape.
  void Declare(const std::string& name, const std::string& help, prometheus::MetricType type);
  std::vector<prometheus::MetricFamily> Take() { return std::move(families_); }

 private:
  prometheus::ClientMetric& Add(const std::string& name, const std::string& help,
                                prometheus::MetricType type, const Labels& labels);
  std::vector<prometheus::MetricFamily> families_;
  std::map<std::string, size_t> index_;
};

// A Collectable that fills a Families on each scrape.
class Source : public prometheus::Collectable {
 public:
  explicit Source(std::function<void(Families&)> fill) : fill_(std::move(fill)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::function<void(Families&)> fill_;
};

// Bucket bounds in seconds for durations from 1 ms to 2 minutes.
prometheus::Histogram::BucketBoundaries DurationBuckets();

}  // namespace kspm::common::metrics
