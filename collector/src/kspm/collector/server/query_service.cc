// QueryService: who may ask what, and the answers (summary, findings page by page, nodes,
// history, drift, cluster scans on demand); and the check ids the collector accepts.
#include <algorithm>

#include "kspm/agent/checks/catalog.h"
#include "kspm/collector/server/services.h"
#include "kspm/common/identity.h"
#include "kspm/common/render.h"
#include "kspm/common/time.h"
#include "spdlog/spdlog.h"

namespace kspm::collector::server {

// Who may ask what: readers and operators query, operators also ask for cluster scans; a node's
// or the collector's certificate asks nothing. A peer without a certificate exists only with
// --insecure, where everything is allowed.
absl::Status AuthorizeQuery(const grpc::CallbackServerContext& context, std::string_view rpc,
                            bool operator_needed, bool allow_unauthenticated) {
  const auto auth = context.auth_context();
  // The collector asks for a client certificate but (for enrolment) does not require one: a
  // caller without one may only enrol, unless the whole server is --insecure.
  if (!auth || !auth->IsPeerAuthenticated()) {
    if (allow_unauthenticated) return absl::OkStatus();
    return absl::UnauthenticatedError(std::string(rpc) + " needs a client certificate");
  }
  auto id = PeerIdentity(context);
  if (!id.ok()) return id.status();
  const bool allowed = id->role == common::Role::kOperator ||
                       (id->role == common::Role::kReader && !operator_needed);
  if (allowed) return absl::OkStatus();
  return absl::PermissionDeniedError(std::string(rpc) + " needs the " +
                                     (operator_needed ? "operator" : "reader or operator") +
                                     " role; the certificate '" + id->name + "' has the " +
                                     std::string(common::RoleName(id->role)) + " role");
}

grpc::ServerUnaryReactor* QueryServiceImpl::Summary(grpc::CallbackServerContext* context,
                                                    const v1::SummaryRequest* request,
                                                    v1::SummaryResponse* response) {
  return Answer(context, [&]() -> absl::Status {
    if (auto s = AuthorizeQuery(*context, "Summary", false, allow_unauthenticated_); !s.ok()) {
      return s;
    }
    auto summary = store_.Summary(request->cluster(), common::Clock::now());
    if (summary.ok()) *response = *std::move(summary);
    return summary.status();
  }());
}

grpc::ServerUnaryReactor* QueryServiceImpl::ScanCluster(grpc::CallbackServerContext* context,
                                                        const v1::ScanClusterRequest* request,
                                                        v1::ScanClusterResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (auto s = AuthorizeQuery(*context, "ScanCluster", true, allow_unauthenticated_); !s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  ClusterScanTrigger* trigger = cluster_scan_.load();
  if (trigger == nullptr) {
    reactor->Finish(grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        "this collector does not scan a cluster: start kspm-collector serve with --kubeconfig, "
        "in a pod with its service account, or with --cluster-snapshot DIR"));
    return reactor;
  }
  ClusterScanTrigger* chosen = trigger->For(request->cluster());
  if (chosen == nullptr) {
    reactor->Finish(grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        "this collector scans cluster " + trigger->Names() + ", not '" + request->cluster() + "'"));
    return reactor;
  }
  trigger = chosen;
  const std::string cn = PeerCommonName(*context);
  if (!scan_clients_.empty() && !scan_clients_.contains(cn)) {
    spdlog::warn("refused a cluster scan requested by {} ({}): not in --scan-clients",
                 cn.empty() ? "an unauthenticated client" : cn, context->peer());
    std::string allowed;
    for (const auto& c : scan_clients_) allowed += (allowed.empty() ? "" : ", ") + c;
    reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                 "certificate '" + cn + "' may not ask for cluster scans (" +
                                     "--scan-clients: " + allowed + ")"));
    return reactor;
  }
  // A node's agent never needs a cluster scan, and a stolen node certificate must not be able to
  // drive the collector's API reads: certificates named after a reporting node are refused.
  if (!cn.empty()) {
    auto nodes = store_.Nodes("", common::Clock::now());
    if (!nodes.ok()) {
      reactor->Finish(ToGrpc(nodes.status()));
      return reactor;
    }
    for (const auto& n : *nodes) {
      if (n.identity().node_name() == cn) {
        spdlog::warn("refused a cluster scan requested with the certificate of node {} ({})", cn,
                     context->peer());
        reactor->Finish(
            grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                         "certificate '" + cn +
                             "' is a node's; cluster scans are asked for with kspmctl's "
                             "certificate (or any other that is not a reporting node's)"));
        return reactor;
      }
    }
  }
  spdlog::info("cluster scan of {} requested by {} ({})", trigger->cluster(),
               cn.empty() ? "an unauthenticated client" : cn, context->peer());
  // The reactor and the response live until Finish, which `done` calls once.
  trigger->RequestScan([reactor, response](absl::StatusOr<v1::ScanClusterResponse> outcome) {
    if (!outcome.ok()) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(outcome.status().message())));
      return;
    }
    *response = *std::move(outcome);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

namespace {

constexpr size_t kDefaultPageSize = 1000;
constexpr size_t kMaxPageSize = 5000;
constexpr size_t kMaxPageBytes = 3 << 20;

// The store's rows into a response's repeated field, or the store's error.
template <typename Rows, typename Field>
absl::Status MoveRows(absl::StatusOr<Rows> rows, Field* out) {
  if (!rows.ok()) return rows.status();
  for (auto& row : *rows) *out->Add() = std::move(row);
  return absl::OkStatus();
}

// A page token is the position of the page's last finding in the store's order (see
// store::FindingFilter::after), as a JSON array; opaque to clients.
std::string PageToken(const v1::Finding& last) {
  return nlohmann::json(store::FindingPosition(last)).dump();
}

absl::StatusOr<std::vector<std::string>> ParsePageToken(const std::string& token) {
  const auto parsed = nlohmann::json::parse(token, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array() || parsed.size() != store::kFindingPositionSize) {
    return absl::InvalidArgumentError("malformed page token (pass next_page_token unchanged)");
  }
  std::vector<std::string> out;
  for (const auto& item : parsed) {
    if (!item.is_string()) return absl::InvalidArgumentError("malformed page token");
    out.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace

grpc::ServerUnaryReactor* QueryServiceImpl::ListFindings(grpc::CallbackServerContext* context,
                                                         const v1::FindingsRequest* request,
                                                         v1::FindingsResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (auto s = AuthorizeQuery(*context, "ListFindings", false, allow_unauthenticated_); !s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  store::FindingFilter filter;
  filter.cluster = request->cluster();
  filter.node = request->node();
  for (int s : request->statuses()) filter.statuses.push_back(static_cast<v1::Status>(s));
  filter.min_severity = request->min_severity();
  filter.benchmark = request->benchmark();
  filter.id = request->id();
  filter.ns = request->namespace_();
  if (request->has_since()) filter.since = common::FromProto(request->since());
  // One page: `page` findings (fewer when `limit` asks for fewer, or the bytes run out), one
  // more read to know whether a next page exists.
  const size_t page = request->page_size() == 0
                          ? kDefaultPageSize
                          : std::min<size_t>(request->page_size(), kMaxPageSize);
  const bool limit_ends = request->limit() > 0 && request->limit() <= page;
  const size_t want = limit_ends ? request->limit() : page;
  filter.limit = want + 1;
  if (!request->page_token().empty()) {
    auto after = ParsePageToken(request->page_token());
    if (!after.ok()) {
      reactor->Finish(ToGrpc(after.status()));
      return reactor;
    }
    filter.after = *std::move(after);
  }
  auto findings = store_.Findings(filter);
  if (!findings.ok()) {
    reactor->Finish(ToGrpc(findings.status()));
    return reactor;
  }
  size_t bytes = 0, taken = 0;
  for (auto& f : *findings) {
    if (taken == want) break;
    bytes += f.ByteSizeLong();
    if (taken > 0 && bytes > kMaxPageBytes) break;
    *response->add_findings() = std::move(f);
    ++taken;
  }
  if (!limit_ends && taken < findings->size()) {
    response->set_next_page_token(PageToken(response->findings(taken - 1)));
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* QueryServiceImpl::ListNodes(grpc::CallbackServerContext* context,
                                                      const v1::NodesRequest* request,
                                                      v1::NodesResponse* response) {
  return Answer(context, [&]() -> absl::Status {
    if (auto s = AuthorizeQuery(*context, "ListNodes", false, allow_unauthenticated_); !s.ok()) {
      return s;
    }
    return MoveRows(store_.Nodes(request->cluster(), common::Clock::now()),
                    response->mutable_nodes());
  }());
}

namespace {

// The filter History and ListDrift share: cluster, node, check or item id, since, limit.
template <typename Filter, typename Request>
Filter TimeFilter(const Request& request) {
  Filter filter;
  filter.cluster = request.cluster();
  filter.node = request.node();
  filter.id = request.id();
  if (request.has_since()) filter.since = common::FromProto(request.since());
  if (request.limit() > 0) filter.limit = request.limit();
  return filter;
}

}  // namespace

grpc::ServerUnaryReactor* QueryServiceImpl::ListDrift(grpc::CallbackServerContext* context,
                                                      const v1::DriftRequest* request,
                                                      v1::DriftResponse* response) {
  return Answer(context, [&]() -> absl::Status {
    if (auto s = AuthorizeQuery(*context, "ListDrift", false, allow_unauthenticated_); !s.ok()) {
      return s;
    }
    return MoveRows(store_.Drift(TimeFilter<store::DriftFilter>(*request)),
                    response->mutable_events());
  }());
}

grpc::ServerUnaryReactor* QueryServiceImpl::History(grpc::CallbackServerContext* context,
                                                    const v1::HistoryRequest* request,
                                                    v1::HistoryResponse* response) {
  return Answer(context, [&]() -> absl::Status {
    if (auto s = AuthorizeQuery(*context, "History", false, allow_unauthenticated_); !s.ok()) {
      return s;
    }
    return MoveRows(store_.History(TimeFilter<store::HistoryFilter>(*request)),
                    response->mutable_transitions());
  }());
}

absl::StatusOr<std::shared_ptr<const std::set<std::string, std::less<>>>> LoadKnownChecks(
    const std::string& rules_dir) {
  auto catalog = agent::checks::Catalog::Builtin();
  if (!catalog.ok()) return catalog.status();
  if (!rules_dir.empty()) {
    if (auto s = catalog->AddDirectory(rules_dir); !s.ok()) return s;
  }
  auto ids = std::make_shared<std::set<std::string, std::less<>>>();
  for (const auto& c : catalog->checks()) ids->insert(c.id);
  return std::shared_ptr<const std::set<std::string, std::less<>>>(ids);
}

}  // namespace kspm::collector::server
