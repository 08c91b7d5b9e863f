#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <string>

#include "kspm/collector/server/ingest.h"
#include "kspm/collector/store/store.h"
#include "kspm/v1/agent.grpc.pb.h"
#include "kspm/v1/query.grpc.pb.h"

namespace kspm::collector {
const std::vector<std::string_view>& BuiltinCheckIds();
}  // namespace kspm::collector

namespace kspm::collector::server {

// Counters the service keeps for logs and health.
struct AgentServiceStats {
  std::atomic<uint64_t> streams{0};
  std::atomic<uint64_t> reports_accepted{0};
  std::atomic<uint64_t> reports_rejected{0};
  std::atomic<uint64_t> duplicates{0};
};

// Limits on what an agent may send.
struct AgentServiceLimits {
  size_t max_results_per_report = 20000;
  // Whether a peer without an authenticated certificate is accepted (--insecure only).
  bool allow_unauthenticated = false;
  // Check ids results may carry; null accepts any.
  std::shared_ptr<const std::set<std::string, std::less<>>> known_checks;
};

// The built-in catalogue's check ids plus the ids of custom rule files in `rules_dir` (empty:
// none). Errors name the file.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const std::set<std::string, std::less<>>>>
LoadKnownChecks(const std::string& rules_dir);

// Receives agent streams. Each stream: Hello first (identity bound to the client certificate's
// common name when TLS is on), then reports acked after commit.
class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(Ingest& ingest, AgentServiceLimits limits) : ingest_(ingest), limits_(limits) {}
  grpc::ServerBidiReactor<v1::AgentMessage, v1::CollectorMessage>* Connect(
      grpc::CallbackServerContext* context) override;
  const AgentServiceStats& stats() const { return stats_; }

 private:
  Ingest& ingest_;
  AgentServiceLimits limits_;
  AgentServiceStats stats_;
};

// Read-only queries for kspmctl.
class QueryServiceImpl final : public v1::QueryService::CallbackService {
 public:
  explicit QueryServiceImpl(store::Store& store) : store_(store) {}
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
};

// absl::Status to grpc::Status, once, at the service edge.
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace kspm::collector::server
