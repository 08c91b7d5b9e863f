#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "kspm/collector/server/ingest.h"
#include "kspm/collector/store/store.h"
#include "kspm/common/identity.h"
#include "kspm/v1/agent.grpc.pb.h"
#include "kspm/v1/query.grpc.pb.h"

namespace kspm::collector::server {

// Counters the service keeps for logs and health.
struct AgentServiceStats {
  std::atomic<uint64_t> streams{0};
  std::atomic<uint64_t> reports_accepted{0};
  std::atomic<uint64_t> reports_rejected{0};
  std::atomic<uint64_t> duplicates{0};
  // Times a stream stopped being read because it had too many reports in flight.
  std::atomic<uint64_t> reads_paused{0};
  // Reports refused because their node sent more than its per-minute bound.
  std::atomic<uint64_t> reports_rate_limited{0};
  // reports_rejected by reason (rate-limited reports are counted above).
  std::atomic<uint64_t> refused_not_allowed{0};  // revoked node or certificate
  std::atomic<uint64_t> refused_malformed{0};    // not a kspm.v1.AgentMessage
  std::atomic<uint64_t> refused_invalid{0};      // failed validation
};

class Fleet;

// Reports per node and minute: a bucket of `per_minute` that refills continuously, so a node
// may burst (drift) but not flood. Thread-safe.
class NodeReportRate {
 public:
  explicit NodeReportRate(int per_minute) : per_minute_(per_minute) {}
  bool Admit(const std::string& node);

 private:
  const int per_minute_;
  std::mutex mu_;
  std::map<std::string, std::pair<double, std::chrono::steady_clock::time_point>> buckets_;
};

// The collector-wide bound on report bytes read and not yet answered. A stream that finds the
// bound reached hands in a callback and stops reading; each answered report wakes one waiter
// while there is room. Thread-safe; callbacks run without the budget's lock held.
class InFlightBudget {
 public:
  explicit InFlightBudget(size_t max_bytes) : max_bytes_(max_bytes) {}
  // Counts a report that has been read (it is in memory already, so this never waits).
  void Acquire(size_t bytes);
  // Uncounts an answered report and resumes one waiting stream if there is room.
  void Release(size_t bytes);
  // Runs `resume` at once if there is room, else when a Release makes some. `resume` returns
  // whether it resumed a stream (false: the stream ended or was resumed otherwise), so a wake is
  // never spent on nothing. A `key` already waiting is not queued twice.
  void WhenRoom(const void* key, std::function<bool()> resume);
  size_t in_flight() const;
  size_t waiting() const;
  // Times a stream had to wait for room.
  uint64_t waits() const;
  // The most bytes ever in flight at once.
  size_t peak() const;

 private:
  const size_t max_bytes_;
  mutable std::mutex mu_;
  size_t used_ = 0;
  uint64_t waits_ = 0;
  size_t peak_ = 0;
  std::deque<std::pair<const void*, std::function<bool()>>> waiters_;
  std::set<const void*> queued_;
};

// Limits on what an agent may send.
struct AgentServiceLimits {
  size_t max_results_per_report = 20000;
  // Reports one node may send per minute (a bucket: bursts up to this, then this rate); the
  // excess is refused with RESOURCE_EXHAUSTED and stays in the agent's spool. 0: no bound.
  int max_reports_per_minute = 120;
  // Reports read from one stream and not yet answered: beyond it the stream is not read (gRPC's
  // flow control then holds the sender back), so a client that never waits for acks cannot
  // grow the collector. With the 16 MiB message limit, at most 64 MiB per stream.
  int max_in_flight_per_stream = 4;
  // Bytes of reports (their wire size) read from all streams together and not yet answered.
  // Beyond it no stream reads its next message until a commit frees room, so a flood on many
  // streams at once cannot grow the collector either.
  size_t max_in_flight_bytes = 32u << 20;
  // Whether a peer without an authenticated certificate is accepted (--insecure only).
  bool allow_unauthenticated = false;
  // Check ids results may carry; null accepts any.
  std::shared_ptr<const std::set<std::string, std::less<>>> known_checks;
};

// The built-in catalogue's check ids plus those of the custom rule files in `rules_dir` (empty:
// none), read by the agent's own catalogue reader, so a rule file the agent would refuse is
// refused here too. Errors name the file, line and column.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const std::set<std::string, std::less<>>>>
LoadKnownChecks(const std::string& rules_dir);

// Receives agent streams. Each stream: Hello first (identity bound to the client certificate's
// common name when TLS is on), then reports acked after commit.
class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  // `fleet` (may be null: no revocation checks) must outlive the service.
  AgentServiceImpl(Ingest& ingest, AgentServiceLimits limits, Fleet* fleet = nullptr)
      : ingest_(ingest),
        limits_(limits),
        budget_(limits.max_in_flight_bytes),
        rate_(limits.max_reports_per_minute),
        fleet_(fleet) {}
  grpc::ServerBidiReactor<v1::AgentMessage, v1::CollectorMessage>* Connect(
      grpc::CallbackServerContext* context) override;
  const AgentServiceStats& stats() const { return stats_; }
  const InFlightBudget& budget() const { return budget_; }

 private:
  Ingest& ingest_;
  AgentServiceLimits limits_;
  AgentServiceStats stats_;
  InFlightBudget budget_;
  NodeReportRate rate_;
  Fleet* fleet_;
};

// Cluster scans on demand, for QueryService.ScanCluster. The cluster module provides it
// (cluster::PeriodicClusterScan); the server holds no other tie to that module.
class ClusterScanTrigger {
 public:
  using Done = std::function<void(absl::StatusOr<v1::ScanClusterResponse>)>;
  virtual ~ClusterScanTrigger() = default;
  // The cluster name results are committed under.
  virtual const std::string& cluster() const = 0;
  // Asks for a scan that starts after this call. `done` runs exactly once: on the scan thread
  // when that scan is committed or has failed, or with UNAVAILABLE when the scanner stops first
  // (then in the caller, or in the thread that stops the scanner).
  virtual void RequestScan(Done done) = 0;
  // The trigger of `cluster` (empty: the first this collector scans); null for one it does not.
  virtual ClusterScanTrigger* For(const std::string& cluster) {
    return cluster.empty() || cluster == this->cluster() ? this : nullptr;
  }
  // The clusters it scans, for errors: `'prod'`, or `'east', 'west'`.
  virtual std::string Names() const { return "'" + cluster() + "'"; }
};

// Several clusters' triggers as one (a collector scanning several kubeconfig contexts): a request
// goes to the trigger of the cluster it names, or to the first. The triggers outlive it.
class ClusterScanRouter final : public ClusterScanTrigger {
 public:
  explicit ClusterScanRouter(std::vector<ClusterScanTrigger*> triggers)
      : triggers_(std::move(triggers)) {}
  const std::string& cluster() const override { return triggers_.front()->cluster(); }
  void RequestScan(Done done) override { triggers_.front()->RequestScan(std::move(done)); }
  ClusterScanTrigger* For(const std::string& cluster) override {
    if (cluster.empty()) return triggers_.front();
    for (auto* t : triggers_) {
      if (t->cluster() == cluster) return t;
    }
    return nullptr;
  }
  std::string Names() const override {
    std::string out;
    for (const auto* t : triggers_) out += (out.empty() ? "'" : ", '") + t->cluster() + "'";
    return out;
  }

 private:
  std::vector<ClusterScanTrigger*> triggers_;
};

// Queries for kspmctl: read-only, except ScanCluster, which asks for a cluster scan now.
class QueryServiceImpl final : public v1::QueryService::CallbackService {
 public:
  // `scan_clients`: certificate names allowed to call ScanCluster; empty: any authenticated
  // client whose name is not that of a node reporting to this collector.
  // `allow_unauthenticated`: --insecure, where callers have no certificates at all.
  explicit QueryServiceImpl(store::Store& store, std::set<std::string> scan_clients = {},
                            bool allow_unauthenticated = false)
      : store_(store),
        scan_clients_(std::move(scan_clients)),
        allow_unauthenticated_(allow_unauthenticated) {}
  // Where ScanCluster goes; null (the default) answers FAILED_PRECONDITION. The trigger must
  // outlive every call that may still use it: clear it, then stop the trigger, before shutdown.
  void SetClusterScanTrigger(ClusterScanTrigger* trigger) { cluster_scan_.store(trigger); }
  grpc::ServerUnaryReactor* ScanCluster(grpc::CallbackServerContext* context,
                                        const v1::ScanClusterRequest* request,
                                        v1::ScanClusterResponse* response) override;
  grpc::ServerUnaryReactor* Summary(grpc::CallbackServerContext* context,
                                    const v1::SummaryRequest* request,
                                    v1::SummaryResponse* response) override;
  grpc::ServerUnaryReactor* ListFindings(grpc::CallbackServerContext* context,
                                         const v1::FindingsRequest* request,
                                         v1::FindingsResponse* response) override;
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const v1::NodesRequest* request,
                                      v1::NodesResponse* response) override;
  grpc::ServerUnaryReactor* History(grpc::CallbackServerContext* context,
                                    const v1::HistoryRequest* request,
                                    v1::HistoryResponse* response) override;
  grpc::ServerUnaryReactor* ListDrift(grpc::CallbackServerContext* context,
                                      const v1::DriftRequest* request,
                                      v1::DriftResponse* response) override;

 private:
  store::Store& store_;
  const std::set<std::string> scan_clients_;
  const bool allow_unauthenticated_;
  std::atomic<ClusterScanTrigger*> cluster_scan_{nullptr};
};

// Whether the caller's role may call `rpc`: readers and operators query, operators also ask for
// cluster scans and manage the fleet (`operator_needed`). A caller without a certificate passes
// only with `allow_unauthenticated` (--insecure). PERMISSION_DENIED names the role needed.
[[nodiscard]] absl::Status AuthorizeQuery(const grpc::CallbackServerContext& context,
                                          std::string_view rpc, bool operator_needed,
                                          bool allow_unauthenticated);

// absl::Status to grpc::Status, once, at the service edge.
grpc::Status ToGrpc(const absl::Status& status);

// A unary call answered at once: finishes its reactor with `status` and returns the reactor.
inline grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                        const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

// The common name of an authenticated peer's certificate, or empty.
std::string PeerCommonName(const grpc::CallbackServerContext& context);
// The kspm identity in an authenticated peer's certificate (a subjectAltName URI), or why
// there is none. Unauthenticated peers (--insecure) have none and are judged by the caller.
absl::StatusOr<common::Identity> PeerIdentity(const grpc::CallbackServerContext& context);

}  // namespace kspm::collector::server
