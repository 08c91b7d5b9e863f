#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kspm/collector/store/store.h"
#include "kspm/common/metrics.h"

namespace kspm::collector::server {

// What the writer did, for metrics.
struct IngestStats {
  std::atomic<uint64_t> reports{0};  // committed (duplicates included)
  std::atomic<uint64_t> failed{0};   // not committed: the agent keeps them and retries
  std::atomic<uint64_t> results{0};  // results the committed reports carried
  std::atomic<uint64_t> written{0};  // rows written (new or changed results)
  std::atomic<uint64_t> transitions{0};
  // Wall time of each batched transaction, from BEGIN to COMMIT.
  prometheus::Histogram commit_seconds{common::metrics::DurationBuckets()};
};

// The writers: reports from every stream queue here and writer threads (the store's
// WriteConcurrency, one for sqlite) commit them in batched transactions. Reports of one node are
// committed in the order they came: a node whose report is in one writer's batch is left to
// that writer until it is done. `done` runs on a writer thread after the commit (or its
// failure); it must not block.
class Ingest {
 public:
  using Done = std::function<void(const absl::StatusOr<store::CommitStats>&)>;

  Ingest(store::Store& store, size_t max_batch = 256)
      : store_(store),
        max_batch_(max_batch),
        writers_(std::max<size_t>(1, store.WriteConcurrency())) {}
  ~Ingest() { Stop(); }

  void Start();
  // Commits everything queued, then stops the threads. Idempotent.
  void Stop();
  // Queues a report. After Stop, `done` runs at once with Unavailable.
  void Submit(std::shared_ptr<const v1::NodeReport> report, Done done);
  size_t queued() const;
  const IngestStats& stats() const { return stats_; }

 private:
  struct Item {
    std::shared_ptr<const v1::NodeReport> report;
    Done done;
    std::string node;  // NodeOf(report)
  };
  void Run();
  // Whether a queued report's node is free (under mu_): O(busy nodes), not O(queue).
  bool ReadyLocked() const;
  // A node as the store keys it (no cluster is cluster `default`).
  static std::string NodeOf(const v1::NodeReport& report) {
    return store::ClusterName(report.node().cluster()) + '/' + report.node().node_name();
  }

  store::Store& store_;
  const size_t max_batch_;
  const size_t writers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  std::set<std::string> busy_;                   // nodes in a batch being committed
  std::unordered_map<std::string, int> queued_;  // reports in queue_ by node
  bool stopping_ = false;
  bool running_ = false;
  std::vector<std::thread> threads_;
  IngestStats stats_;
};

}  // namespace kspm::collector::server
