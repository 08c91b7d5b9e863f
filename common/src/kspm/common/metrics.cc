#include "kspm/common/metrics.h"

namespace kspm::common::metrics {

prometheus::ClientMetric& Families::Add(const std::string& name, const std::string& help,
                                        prometheus::MetricType type, const Labels& labels) {
  Declare(name, help, type);
  auto& family = families_[index_[name]];
  auto& metric = family.metric.emplace_back();
  for (const auto& [key, value] : labels) metric.label.push_back({key, value});
  return metric;
}

void Families::Declare(const std::string& name, const std::string& help,
                       prometheus::MetricType type) {
  if (index_.count(name) != 0) return;
  index_[name] = families_.size();
  families_.push_back(prometheus::MetricFamily{name, help, type, {}});
}

void Families::Gauge(const std::string& name, const std::string& help, const Labels& labels,
                     double value) {
  Add(name, help, prometheus::MetricType::Gauge, labels).gauge.value = value;
}

void Families::Counter(const std::string& name, const std::string& help, const Labels& labels,
                       double value) {
  Add(name, help, prometheus::MetricType::Counter, labels).counter.value = value;
}

void Families::Histogram(const std::string& name, const std::string& help, const Labels& labels,
                         const prometheus::Histogram& histogram) {
  auto& metric = Add(name, help, prometheus::MetricType::Histogram, labels);
  metric.histogram = histogram.Collect().histogram;
}

std::vector<prometheus::MetricFamily> Source::Collect() const {
  Families families;
  fill_(families);
  return families.Take();
}

prometheus::Histogram::BucketBoundaries DurationBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

}  // namespace kspm::common::metrics
