#pragma once

// What becomes of a cluster scan: text and JSON for `kspm-collector scan-cluster`, per-namespace
// scores, and the report of the reserved pseudo-node that merges cluster results into the
// collector's posture next to the nodes' results.
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "kspm/collector/cluster/scan.h"
#include "kspm/collector/k8s/object.h"
#include "kspm/v1/query.pb.h"
#include "kspm/v1/results.pb.h"
#include "nlohmann/json.hpp"

namespace kspm::collector::cluster {

// The node name under which cluster results are stored. Agents cannot use it: the collector's
// identity binding refuses a certificate CN that differs from the name, and this name is
// reserved in the documentation.
inline constexpr char kClusterNodeName[] = "cluster";

// Where the scanned objects came from, for output headers.
struct ScanSource {
  std::string cluster;      // cluster name
  std::string description;  // `snapshot DIR` or `API https://...`
};

// Per-namespace scores with the README's formula: 100 × Σ weight(scored PASS) / Σ weight(scored
// PASS, FAIL, ERROR); severity weights info 1, low 2, medium 4, high 7, critical 10; 100 when
// nothing scored was evaluated. A result belongs to its resource's namespace (a Namespace
// object's results to that namespace); cluster-scoped results form the scope `(cluster)`.
struct NamespaceScore {
  std::string scope;
  double score = 100;
  bool evaluated = false;  // anything scored evaluated; else the score is n/a
  v1::StatusCounts counts;
  size_t accepted = 0;
};
std::vector<NamespaceScore> NamespaceScores(const std::vector<v1::CheckResult>& results);

// `{"cluster": {...}, "totals": {...}, "namespaces": [...], "results": [...]}`.
nlohmann::json ScanToJson(const ClusterScan& scan, const k8s::Snapshot& snapshot,
                          const ScanSource& source);

// A table of the results that need attention (all with `verbose`), their evidence, the
// namespace scores and a totals line.
void WriteScanText(const ClusterScan& scan, const k8s::Snapshot& snapshot, const ScanSource& source,
                   std::ostream& out, bool colour, bool verbose);

// Sections 1 (control plane) and 2 (etcd) of CIS Kubernetes 1.12 as NOT_APPLICABLE with
// `reason`, read from the agent's control-plane catalogue (data embedded at build time).
// `sections` selects "1", "2" or both.
// Only under `benchmarks` (the ones the cluster's nodes are judged by); when the catalogue maps
// none of them, under the newest CIS Kubernetes version it has.
std::vector<v1::CheckResult> ControlPlaneNotApplicable(
    const std::vector<std::string>& sections, const std::string& reason,
    const std::set<std::string>& benchmarks = {});

// A full report of the pseudo-node kClusterNodeName: the scan's results (moved, not copied). The
// store keeps one current result per (node, check id, benchmark, object), the object being
// common::ResourceKey of the result's resource; a reason that does not name the object is
// prefixed with it.
v1::NodeReport BuildClusterReport(ClusterScan&& scan, const std::string& cluster,
                                  common::Clock::time_point started,
                                  common::Clock::time_point finished, uint32_t interval_seconds,
                                  const std::string& api_version = "");

// The same report without results: what ReportWriter (store.h) starts a report in parts with.
v1::NodeReport ClusterReportHeader(const std::string& cluster, common::Clock::time_point started,
                                   common::Clock::time_point finished, uint32_t interval_seconds,
                                   const std::string& api_version = "");

// What BuildClusterReport does to each result: the object in front of a reason that does not
// name it.
void PrepareClusterResult(v1::CheckResult& result);

// Evidence that the control plane runs on the cluster's own nodes (a kube-apiserver or etcd
// static pod, or a Node labelled node-role.kubernetes.io/control-plane or master), e.g.
// `Pod kube-system/kube-apiserver-cp-1`; nothing for a managed control plane, which the API does
// not show.
std::optional<std::string> SelfHostedControlPlane(const k8s::Snapshot& snapshot);

// The sections that no reporting node covers, from the store's node list: "1" when no node has
// the control-plane role, "2" when none has the etcd role. The cluster pseudo-node is ignored.
std::vector<std::string> UncoveredControlPlaneSections(const std::vector<v1::NodeInfo>& nodes);

}  // namespace kspm::collector::cluster
