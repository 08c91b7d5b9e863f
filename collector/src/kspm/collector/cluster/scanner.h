#pragma once

// The collector's cluster scan: objects from the API (or a snapshot directory), evaluated and
// committed to the store as the report of the pseudo-node `cluster`, once at start and then
// periodically, so that `kspmctl summary` and `findings` show node and cluster findings
// together.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kspm/collector/cluster/exceptions.h"
#include "kspm/collector/cluster/scan.h"
#include "kspm/collector/cluster/workloads.h"
#include "kspm/collector/k8s/api_client.h"
#include "kspm/collector/k8s/object.h"
#include "kspm/collector/server/services.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/metrics.h"

namespace kspm::collector::cluster {

// One object changed in a watched cluster.
struct ObjectChange {
  std::string kind, ns, name;
  std::string verb;     // create, update or delete
  std::string manager;  // the field manager of its latest change (managedFields), when known
  // A controller created or deleted: objects it owns may now be reported elsewhere, so the
  // per-workload checks of its namespace are evaluated for the whole namespace.
  bool owner_change = false;
  // A RoleBinding or ClusterRoleBinding: the namespaces of the service accounts it names (before
  // and after), whose workloads' token checks it can change; other subjects reach none.
  std::optional<std::set<std::string>> reaches;
  // The workloads it belongs to (ReportedAt), before and after the change.
  std::vector<WorkloadKey> workloads;
  common::Clock::time_point seen;  // when the event arrived
  // `Pod shop/web-1 (create)`.
  std::string Describe() const;
};

// What changed since the last batch was taken.
struct ChangeBatch {
  std::vector<ObjectChange> changes;
  std::set<std::string> relisted;  // kinds listed again: every check reading them is re-evaluated
  bool empty() const { return changes.empty() && relisted.empty(); }
};

// Where one scan's objects come from.
class ObjectSource {
 public:
  virtual ~ObjectSource() = default;
  // A fresh snapshot; an error when nothing could be read. `server_version` may stay empty.
  [[nodiscard]] virtual absl::StatusOr<k8s::Snapshot> Read(std::string* server_version) = 0;
  virtual std::string Describe() const = 0;
  using Use = std::function<absl::Status(const k8s::Snapshot&, const std::string& version)>;
  // Runs `use` on the objects to scan (by default a fresh Read). A watching source hands over
  // its current objects, which do not change while `use` runs.
  [[nodiscard]] virtual absl::Status With(const Use& use);

  // Sources that watch the cluster (WatchSource). `changed` is called from their threads when a
  // batch waits in TakeChanges.
  virtual void StartWatching(std::function<void()> changed) { (void)changed; }
  virtual void StopWatching() {}
  virtual ChangeBatch TakeChanges() { return {}; }
};

// A snapshot directory, re-read at every scan. With `configmaps`, ConfigMaps are read with
// their contents (summarised: Snapshot::set_inspect_config_data).
std::unique_ptr<ObjectSource> DirectorySource(std::string dir, bool configmaps = false);
// The API; a client is made per scan (so a rotated token or CA is picked up). With
// `configmaps`, ConfigMaps are listed too.
std::unique_ptr<ObjectSource> ApiSource(k8s::Connection connection, k8s::ClientOptions options = {},
                                        bool configmaps = false);

struct ClusterScanSettings {
  std::string cluster = "default";  // cluster name the results are stored under
  std::chrono::seconds interval{600};
  // A watching source: changes gathered for this long before they are evaluated together.
  std::chrono::milliseconds settle{50};
  std::string exceptions_file;  // re-read at every scan; a broken edit keeps the last good one
  SystemPolicy policy;
  // Checks judged per workload go to the store this many workloads at a time (ScanOptions).
  size_t workloads_per_part = ScanOptions().workloads_per_part;
};

// Runs scans on its own thread. Thread-safe: Stop, Trigger and RequestScan may be called from any
// thread. On-demand requests (kspmctl scan-cluster) share scans: a request is answered by the
// first scan that starts after it, and never more than one scan runs at a time.
class PeriodicClusterScan final : public server::ClusterScanTrigger {
 public:
  // Loads the exceptions file (an error is a start-up error naming the file). No thread yet.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PeriodicClusterScan>> Create(
      std::unique_ptr<ObjectSource> source, ClusterScanSettings settings, store::Store& store);
  ~PeriodicClusterScan() override;

  // First scan at once, then every interval. With `first_inline` the first scan runs in the
  // caller before Start returns (a snapshot directory: quick, and its results are then in the
  // store before the collector announces itself); otherwise on the scan thread.
  void Start(bool first_inline = false);
  // Waits for a scan in progress to end; idempotent.
  void Stop();
  // Runs a scan now on the scan thread (SIGHUP); the interval restarts after it.
  void Trigger();
  // ClusterScanTrigger: like Trigger, and `done` gets the outcome of that scan. Outcomes that
  // are errors name the cluster and the source.
  void RequestScan(Done done) override;
  const std::string& cluster() const override { return settings_.cluster; }
  const ObjectSource* source() const { return source_.get(); }
  // One scan and commit, in the caller. Errors: nothing could be read, or the commit failed.
  [[nodiscard]] absl::StatusOr<v1::ScanClusterResponse> RunOnce();
  // A watching source's changes since the last call: the checks they can affect re-evaluated
  // (per-workload checks for the changed workloads only), and the results that changed committed
  // as a partial report whose drift events name the change and its field manager. In the
  // caller; the scan thread calls it when the source reports changes.
  struct ChangeStats {
    size_t changes = 0;
    size_t checks = 0;            // evaluated whole
    size_t workload_checks = 0;   // evaluated for the changed workloads only
    size_t namespace_checks = 0;  // evaluated for the namespaces of the changes only
    size_t workloads = 0;
    size_t results = 0;
    size_t written = 0;
    common::Clock::time_point oldest_seen;             // the first change's arrival
    std::chrono::steady_clock::duration store_time{};  // in the store's writer
  };
  [[nodiscard]] absl::StatusOr<ChangeStats> RunChanges();
  // kspm_cluster_scan_* families (README "Metrics").
  void FillMetrics(common::metrics::Families& out) const;

 private:
  PeriodicClusterScan(std::unique_ptr<ObjectSource> source, ClusterScanSettings settings,
                      store::Store& store, ExceptionSet exceptions)
      : source_(std::move(source)),
        settings_(std::move(settings)),
        store_(store),
        exceptions_(std::move(exceptions)) {}
  void Loop(bool skip_first);
  // Starts the source's watch, once (Start, then the scan thread).
  void Watch();
  bool watching_ = false;

  std::unique_ptr<ObjectSource> source_;
  ClusterScanSettings settings_;
  store::Store& store_;
  ExceptionSet exceptions_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool triggered_ = false;
  bool lease_checked_ = false;        // on the scan thread
  std::atomic<bool> leading_{false};  // holds the cluster's scan lease (for metrics)
  static constexpr std::chrono::seconds kLeaseRetry{5};
  bool changes_ = false;       // the source has changes waiting
  std::vector<Done> pending_;  // RequestScan callers waiting for the next scan
  std::thread thread_;
  // One evaluation at a time: RunOnce and RunChanges may be called from other threads than the
  // scan thread (tests, Start's first scan).
  std::mutex run_mu_;
  // RunChanges' RBAC index, kept while the snapshot's RBAC objects do not change (the snapshot's
  // address and the Generation of the four RBAC kinds). Under run_mu_.
  std::unique_ptr<Rbac> rbac_;
  std::array<uint64_t, 5> rbac_key_{};
  // For metrics.
  prometheus::Histogram scan_seconds_{common::metrics::DurationBuckets()};
  std::atomic<uint64_t> scans_ok_{0}, scans_failed_{0}, objects_{0}, change_batches_{0},
      changes_seen_{0}, last_success_ms_{0};
};

// The text of the NOT_APPLICABLE reason for sections no reporting node covers.
std::string UncoveredSectionReason(const std::string& section);

}  // namespace kspm::collector::cluster
