#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kspm/collector/server/ingest.h"
#include "kspm/collector/server/services.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/metrics.h"

namespace kspm::collector::server {

// The collector's /metrics (README "Metrics" lists every family). Posture (scores, results by
// status and severity, failing checks, nodes) is read from the store at scrape time and kept for
// `posture_ttl`, so Prometheus servers scraping every few seconds cost one read per TTL; the
// other families are counters the services keep. Thread-safe.
class CollectorMetrics {
 public:
  CollectorMetrics(store::Store& store, std::chrono::milliseconds posture_ttl)
      : store_(store), posture_ttl_(posture_ttl) {}

  // What the services count; set once before the first scrape.
  void Attach(const AgentServiceStats* agents, const InFlightBudget* budget, const Ingest* ingest) {
    agents_ = agents;
    budget_ = budget;
    ingest_ = ingest;
  }
  // Families filled on each scrape by other parts (the cluster scan, alerts). Thread-safe.
  void AddSource(std::function<void(common::metrics::Families&)> fill);
  // Counts a commit's drift events and verdict changes; the store's listener calls it.
  void Count(const store::CommitNews& news);

  void Fill(common::metrics::Families& out);
  std::shared_ptr<prometheus::Collectable> collectable();

 private:
  struct Posture {
    std::vector<std::pair<std::string, v1::SummaryResponse>> clusters;
    store::PostureCounts counts;
    std::string error;  // the last read failed: the families are left out, kspm_up says why
  };
  void FillPosture(common::metrics::Families& out);

  store::Store& store_;
  const std::chrono::milliseconds posture_ttl_;
  const AgentServiceStats* agents_ = nullptr;
  const InFlightBudget* budget_ = nullptr;
  const Ingest* ingest_ = nullptr;

  std::mutex posture_mu_;  // one read of the store at a time; later scrapes use its answer
  Posture posture_;
  std::chrono::steady_clock::time_point posture_at_{};
  bool posture_read_ = false;

  std::mutex mu_;
  std::vector<std::function<void(common::metrics::Families&)>> sources_;
  std::map<std::string, uint64_t> drift_by_source_;
  std::map<std::string, uint64_t> changes_by_status_;
};

}  // namespace kspm::collector::server
